package extent

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// BenchmarkInsertRandom4K inserts random 4 KiB writes (8 sectors at a random
// aligned LBA, fresh address) into a map that already holds a million
// extents; a quarter of them overwrite an existing extent.
func BenchmarkInsertRandom4K(b *testing.B) {
	for _, d := range []int{32, 64, 128} {
		b.Run(fmt.Sprintf("degree=%d", d), func(b *testing.B) {
			const n = 1_000_000
			m := newMap(d)
			for _, e := range random4K(n, 1) {
				m.Insert(e, nil)
			}
			rng := rand.New(rand.NewPCG(2, 0))
			var dead uint64
			addr := uint64(16 * n)
			b.ReportAllocs()
			for b.Loop() {
				m.Insert(Extent{LBA: rng.Uint64N(4*n) * 8, Len: 8, Addr: addr}, func(e Extent) { dead += uint64(e.Len) })
				addr += 16
			}
		})
	}
}

// BenchmarkLookup4K looks up random 4 KiB reads in a map of a million
// random 4 KiB extents.
func BenchmarkLookup4K(b *testing.B) {
	const n = 1_000_000
	m := randomMap(n, 1)
	rng := rand.New(rand.NewPCG(2, 0))
	var runs int
	b.ReportAllocs()
	for b.Loop() {
		m.Lookup(rng.Uint64N(4*n)*8, 8, func(Run) bool { runs++; return true })
	}
}

// BenchmarkRemap relocates one live 4 KiB extent per op, as the cleaner does.
func BenchmarkRemap(b *testing.B) {
	const n = 1_000_000
	exts := random4K(n, 1)
	m := New()
	for _, e := range exts {
		m.Insert(e, nil)
	}
	addr := uint64(16 * n)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		e := &exts[i%n]
		m.Remap(e.LBA, e.Len, e.Addr, addr)
		e.Addr, addr, i = addr, addr+16, i+1
	}
}

// BenchmarkDecode1M decodes a checkpoint of a million extents per op.
func BenchmarkDecode1M(b *testing.B) {
	const n = 1_000_000
	enc := randomMap(n, 1).AppendBinary(nil)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/extent")
	runtime.KeepAlive(enc)
}

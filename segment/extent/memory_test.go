package extent

import (
	"cmp"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// dataPerExtent is the data one random 4 KiB write stores: 8 sectors.
const dataPerExtent = 4096

// random4K returns n extents of 8 sectors at distinct random aligned LBAs,
// with addresses in write order that never continue one another, so nothing
// merges.
func random4K(n int, seed uint64) []Extent {
	rng := rand.New(rand.NewPCG(seed, 0))
	slots := rng.Perm(4 * n)[:n]
	exts := make([]Extent, n)
	for i, s := range slots {
		exts[i] = Extent{LBA: uint64(s) * 8, Len: 8, Addr: uint64(i) * 16}
	}
	return exts
}

func randomMap(n int, seed uint64) *Map {
	m := New()
	for _, e := range random4K(n, seed) {
		m.Insert(e, nil)
	}
	return m
}

// heapBytes returns the live heap after a full collection.
func heapBytes() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// perExtent returns the heap bytes per extent that the map returned by
// build holds. Whatever build allocates and drops is not counted.
func perExtent(n int, build func() *Map) float64 {
	before := heapBytes()
	m := build()
	after := heapBytes()
	runtime.KeepAlive(m)
	return float64(after-before) / float64(n)
}

// TestMemoryPer4KWrite logs the index memory per random 4 KiB write for
// several B-tree degrees, for maps built by random inserts (the target:
// <= 0.6% of the data), by inserts in LBA order, and by Decode. It asserts
// nothing: the random-insert figure for the chosen degree (about 0.58%)
// clears the target by only a few percent, and moves with the Go runtime's
// size classes and append growth.
func TestMemoryPer4KWrite(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000
	}
	exts := random4K(n, 1)
	for _, d := range []int{16, 32, 64, 128} {
		random := perExtent(n, func() *Map { return inserted(exts, d) })
		ordered := slices.SortedFunc(slices.Values(exts), func(a, b Extent) int { return cmp.Compare(a.LBA, b.LBA) })
		ascending := perExtent(n, func() *Map { return inserted(ordered, d) })
		enc := inserted(ordered, d).AppendBinary(nil)
		decoded := perExtent(n, func() *Map { return loaded(t, enc, d) })
		runtime.KeepAlive(enc)
		t.Logf("degree %3d: random inserts %4.1f B/extent (%.3f%% of data), in LBA order %4.1f B (%.3f%%), decoded %4.1f B (%.3f%%)",
			d, random, 100*random/dataPerExtent, ascending, 100*ascending/dataPerExtent, decoded, 100*decoded/dataPerExtent)
	}
}

// inserted returns a map of degree d holding exts, inserted in order.
func inserted(exts []Extent, d int) *Map {
	m := newMap(d)
	for _, e := range exts {
		m.Insert(e, nil)
	}
	return m
}

// loaded decodes enc into a map of degree d.
func loaded(t *testing.T, enc []byte, d int) *Map {
	m := newMap(d)
	if err := m.load(enc[headerSize:]); err != nil {
		t.Fatal(err)
	}
	return m
}

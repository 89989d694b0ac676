package segment_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/cryptotest"

	"cloudfs/segment"
	"cloudfs/segment/device"
	"cloudfs/segment/segtest"
)

// TestModel runs seeded random ops against a store and against a plain map
// of every volume's contents (branches included): writes of 1 sector to
// 2.5 MiB with zero sectors, write-zeroes, reads of random ranges, branches,
// deletes, flushes, checkpoints, cleaning passes, close and reopen, and
// streaming every volume to a replica store. Every read is compared with the
// map; every volume is compared whole after each reopen and at the end; the
// replica must have the same version and contents; Check passes at the end.
//
//	go test ./segment -run 'TestModel/seed=7$' -seed 7 -v
func TestModel(t *testing.T) {
	for _, seed := range seeds(50, 8) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runModel(t, seed, 250)
		})
	}
}

type modelVol struct {
	base    segment.ID
	data    []byte
	replica bool // streamed to the replica (false once its branch point is gone there)
}

type modelRun struct {
	t       *testing.T
	rng     *rand.Rand
	dev     *device.Mem
	st      *segment.Store
	replica *segment.Store
	vols    []*modelVol // in creation order
}

func runModel(t *testing.T, seed uint64, nops int) {
	cryptotest.SetGlobalRandom(t, seed)
	t.Logf("seed %d (replay: -run 'TestModel/seed=%d$' -seed %d)", seed, seed, seed)
	r := &modelRun{t: t, rng: rand.New(rand.NewPCG(seed, 0x30de1))}
	r.dev = device.NewMem(96<<20, 4096)
	r.st = segtest.Open(t, r.dev, engineOpts)
	_, r.replica = segtest.NewStore(t, 192<<20, engineOpts)
	r.create()
	for i := range nops {
		r.step(i)
	}
	r.compareAll("at the end")
	r.syncReplica()
}

func (r *modelRun) pick() *modelVol { return r.vols[r.rng.IntN(len(r.vols))] }

func (r *modelRun) vol(m *modelVol) *segment.Volume { return mustOpenVolume(r.t, r.st, m.base) }

func (r *modelRun) create() {
	size := (1 + r.rng.IntN(4)) << 20
	v := mustCreate(r.t, r.st, uint64(size))
	r.vols = append(r.vols, &modelVol{base: v.Base(), data: make([]byte, size), replica: true})
}

func (r *modelRun) step(i int) {
	t, rng := r.t, r.rng
	x := rng.IntN(1000)
	switch {
	case x < 450: // write
		m := r.pick()
		off, data, n := randWrite(rng, int64(len(m.data)))
		v := r.vol(m)
		if data == nil {
			mustZero(t, v, off, n)
			clear(m.data[off : off+n])
		} else {
			mustWriteAt(t, v, data, off)
			copy(m.data[off:], data)
		}
	case x < 700: // read a random range
		m := r.pick()
		off, _, n := randWrite(rng, int64(len(m.data)))
		got := make([]byte, n)
		if _, err := r.vol(m).ReadAt(got, off); err != nil {
			t.Fatalf("op %d: ReadAt(%d+%d): %v", i, off, n, err)
		}
		if want := m.data[off : off+n]; !bytes.Equal(got, want) {
			t.Fatalf("op %d: ReadAt(%v, %d+%d): %s", i, m.base, off, n, firstDiff(got, want))
		}
	case x < 760: // branch
		if len(r.vols) >= 10 {
			return
		}
		m := r.pick()
		b := mustBranch(t, r.st, mustInfo(t, r.vol(m)).Version)
		r.vols = append(r.vols, &modelVol{base: b.Base(), data: bytes.Clone(m.data), replica: m.replica})
	case x < 790: // delete
		if len(r.vols) < 3 {
			r.create()
			return
		}
		k := rng.IntN(len(r.vols))
		if err := r.st.Delete(r.vols[k].base); err != nil {
			t.Fatalf("op %d: Delete: %v", i, err)
		}
		if _, err := r.st.Volume(r.vols[k].base); !errors.Is(err, segment.ErrNotFound) {
			t.Fatalf("op %d: Volume(deleted) = %v, want ErrNotFound", i, err)
		}
		r.vols = slices.Delete(r.vols, k, k+1)
	case x < 810:
		if len(r.vols) < 6 {
			r.create()
		}
	case x < 850:
		if err := r.vol(r.pick()).Flush(); err != nil {
			t.Fatalf("op %d: Flush: %v", i, err)
		}
	case x < 890:
		mustCheckpoint(t, r.st)
	case x < 940:
		mustClean(t, r.st, 1+rng.IntN(3))
	case x < 970:
		if err := r.st.Close(); err != nil {
			t.Fatalf("op %d: Close: %v", i, err)
		}
		r.st = segtest.Open(t, r.dev, engineOpts)
		r.compareAll(fmt.Sprintf("op %d: after reopening", i))
	default:
		r.syncReplica()
	}
}

func (r *modelRun) compareAll(when string) {
	r.t.Helper()
	var want []segment.ID
	for _, m := range r.vols {
		want = append(want, m.base)
		if got := readAll(r.t, r.vol(m)); !bytes.Equal(got, m.data) {
			r.t.Fatalf("%s: volume %v: %s", when, m.base, firstDiff(got, m.data))
		}
	}
	var got []segment.ID
	for _, h := range r.st.Heads() {
		got = append(got, h.Base)
	}
	slices.SortFunc(want, func(a, b segment.ID) int { return bytes.Compare(a[:], b[:]) })
	if !slices.Equal(got, want) {
		r.t.Fatalf("%s: Heads() = %v, want %v", when, got, want)
	}
}

// syncReplica streams every volume to the replica, from the version the
// replica has, and compares.
func (r *modelRun) syncReplica() {
	t := r.t
	for _, m := range r.vols {
		if !m.replica {
			continue
		}
		from := segment.Position{}
		if rv, err := r.replica.Volume(m.base); err == nil {
			from = position(t, rv)
		}
		var buf bytes.Buffer
		if _, err := r.st.Stream(&buf, m.base, from); err != nil {
			if errors.Is(err, segment.ErrVersionUnavailable) {
				t.Logf("stream %v from lsn %d: %v", m.base, from.LSN, err)
				m.replica = false
				continue
			}
			t.Fatalf("Stream(%v from lsn %d): %v", m.base, from.LSN, err)
		}
		if _, err := r.replica.Apply(&buf); err != nil {
			if errors.Is(err, segment.ErrVersionUnavailable) { // a branch whose source moved on there
				t.Logf("apply %v: %v", m.base, err)
				m.replica = false
				continue
			}
			t.Fatalf("Apply(%v from lsn %d): %v", m.base, from.LSN, err)
		}
		sameVolume(t, r.st, r.replica, m.base)
	}
}

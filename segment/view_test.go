package segment_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"cloudfs/segment"
	"cloudfs/segment/device"
)

// Ownership: view change (TakeOver) and fencing (Fence), docs/FORMAT.md §6.

// mustTakeOver is TakeOver that fails the test on error.
func mustTakeOver(t testing.TB, st *segment.Store, base segment.ID, epoch uint64) segment.Position {
	t.Helper()
	pos, err := st.TakeOver(base, epoch)
	if err != nil {
		t.Fatalf("TakeOver(%v, %d): %v", base, epoch, err)
	}
	return pos
}

// wantOwner fails unless the volume's Info says owned and epoch as given.
func wantOwner(t testing.TB, name string, st *segment.Store, base segment.ID, owned bool, epoch, fenced uint64) {
	t.Helper()
	in := mustInfo(t, mustOpenVolume(t, st, base))
	if in.Owned != owned || in.Epoch != epoch || in.FencedEpoch != fenced {
		t.Fatalf("%s: Info() owned %v epoch %d fenced %d, want owned %v epoch %d fenced %d", name, in.Owned, in.Epoch, in.FencedEpoch, owned, epoch, fenced)
	}
}

// wantReadOnly fails unless a write to the volume fails with ErrReadOnly.
func wantReadOnly(t testing.TB, name string, st *segment.Store, base segment.ID) {
	t.Helper()
	if _, err := mustOpenVolume(t, st, base).WriteAt(bytes.Repeat([]byte{7}, 4096), 0); !errors.Is(err, segment.ErrReadOnly) {
		t.Fatalf("%s: write = %v, want ErrReadOnly", name, err)
	}
}

// wantStale applies stream on st and fails unless it is refused with
// ErrStaleEpoch (and ErrLink) and the volume's head did not move.
func wantStale(t testing.TB, name string, st *segment.Store, base segment.ID, stream []byte) {
	t.Helper()
	before := position(t, mustOpenVolume(t, st, base))
	stats, err := st.Apply(bytes.NewReader(stream))
	if !errors.Is(err, segment.ErrStaleEpoch) || !errors.Is(err, segment.ErrLink) {
		t.Fatalf("%s: Apply(stale stream) = %+v, %v; want ErrStaleEpoch wrapping ErrLink", name, stats, err)
	}
	if stats.Entries != 0 {
		t.Fatalf("%s: Apply(stale stream) appended %d entries", name, stats.Entries)
	}
	if after := position(t, mustOpenVolume(t, st, base)); after != before {
		t.Fatalf("%s: Apply(stale stream) moved the head from %+v to %+v", name, before, after)
	}
}

// reopenClone opens a store on a copy of dev that keeps only what was synced
// (a power cut now); the copy gets its own Check at cleanup.
func reopenClone(t testing.TB, dev *device.Mem) (*device.Mem, *segment.Store) {
	t.Helper()
	c := dev.CrashClone(device.CrashCfg{UnsyncedPercent: 0})
	return c, reopen(t, c)
}

// TestTakeOver is the failover story on three stores: A creates and writes,
// B and C follow; B takes over in epoch 2 and writes; C follows B; A, the old
// owner, follows B and stops owning; a paused copy of A that kept writing in
// epoch 1 is refused by B and C; C fenced at epoch 3 refuses B's later
// entries; ownership and fences survive a power cut.
func TestTakeOver(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	devA, a := newStore(t, 64<<20)
	devB, b := newStore(t, 64<<20)
	devC, c := newStore(t, 64<<20)
	va := mustCreate(t, a, 1<<20)
	base := va.Base()
	writeHistory(t, rng, va, 6)
	full := mustStream(t, a, base, segment.Position{})
	mustApply(t, b, full)
	mustApply(t, c, full)
	wantOwner(t, "B before", b, base, false, 1, 1)
	wantReadOnly(t, "B before", b, base)
	pre := position(t, va)

	// A paused here: a copy of it, every write kept, that goes on writing in
	// epoch 1 later
	paused := reopen(t, devA.CrashClone(device.CrashCfg{UnsyncedPercent: 100}))

	view := mustTakeOver(t, b, base, 2)
	if view.LSN != pre.LSN+1 {
		t.Fatalf("TakeOver: view at lsn %d, want %d", view.LSN, pre.LSN+1)
	}
	wantOwner(t, "B after TakeOver", b, base, true, 2, 2)
	vb := mustOpenVolume(t, b, base)
	writeHistory(t, rng, vb, 4)
	fromB := mustStream(t, b, base, pre)

	t.Run("replica follows the new owner", func(t *testing.T) {
		st := mustApply(t, c, fromB)
		if st.Entries != 5 {
			t.Fatalf("Apply(B's stream) on C: %d entries, want the view and 4 writes", st.Entries)
		}
		sameVolume(t, b, c, base)
		wantOwner(t, "C", c, base, false, 2, 2)
	})
	t.Run("old owner follows and stops owning", func(t *testing.T) {
		wantOwner(t, "A before", a, base, true, 1, 1)
		mustApply(t, a, fromB)
		sameVolume(t, b, a, base)
		wantOwner(t, "A after B's view", a, base, false, 2, 2)
		wantReadOnly(t, "A after B's view", a, base)
	})
	t.Run("a paused old owner's epoch-1 entry is refused", func(t *testing.T) {
		mustWriteAt(t, mustOpenVolume(t, paused, base), bytes.Repeat([]byte{0xa5}, 8192), 4096)
		stale := mustStream(t, paused, base, pre)
		wantStale(t, "B", b, base, stale)
		wantStale(t, "C", c, base, stale)
		// the paused copy has a divergent tail: B's history is a fork to it
		if _, err := paused.Apply(bytes.NewReader(fromB)); !errors.Is(err, segment.ErrLink) || errors.Is(err, segment.ErrStaleEpoch) {
			t.Fatalf("paused A: Apply(B's stream) = %v, want ErrLink (fork), not ErrStaleEpoch", err)
		}
		wantOwner(t, "paused A", paused, base, true, 1, 1)
	})
	t.Run("stale TakeOver", func(t *testing.T) {
		for _, st := range []*segment.Store{a, b, c} {
			for _, e := range []uint64{0, 1, 2} {
				if _, err := st.TakeOver(base, e); !errors.Is(err, segment.ErrStaleEpoch) {
					t.Fatalf("TakeOver(%d) at epoch 2 = %v, want ErrStaleEpoch", e, err)
				}
			}
		}
		if _, err := b.TakeOver(segment.RandomID(), 5); !errors.Is(err, segment.ErrNotFound) {
			t.Fatalf("TakeOver(unknown volume) = %v, want ErrNotFound", err)
		}
		sameVolume(t, b, c, base)
	})

	// C is told epoch 3 exists before any entry of it arrives
	if err := c.Fence(base, 3); err != nil {
		t.Fatalf("Fence(3) on C: %v", err)
	}
	wantOwner(t, "C fenced", c, base, false, 2, 3)
	if err := c.Fence(base, 2); err != nil { // monotone: lower changes nothing
		t.Fatalf("Fence(2) after Fence(3): %v", err)
	}
	wantOwner(t, "C fenced again lower", c, base, false, 2, 3)
	atC := position(t, mustOpenVolume(t, c, base))
	writeHistory(t, rng, vb, 2)
	laterB := mustStream(t, b, base, atC)
	t.Run("fenced replica refuses the old epoch", func(t *testing.T) {
		wantStale(t, "C fenced at 3", c, base, laterB)
		if _, err := c.TakeOver(base, 2); !errors.Is(err, segment.ErrStaleEpoch) {
			t.Fatalf("TakeOver(2) below the fence = %v, want ErrStaleEpoch", err)
		}
	})
	t.Run("fenced owner stops writing", func(t *testing.T) {
		if err := b.Fence(base, 3); err != nil {
			t.Fatalf("Fence(3) on B: %v", err)
		}
		wantOwner(t, "B fenced", b, base, false, 2, 3)
		wantReadOnly(t, "B fenced", b, base)
	})
	t.Run("power cut keeps ownership and fences", func(t *testing.T) {
		_, a2 := reopenClone(t, devA)
		wantOwner(t, "A reopened", a2, base, false, 2, 2)
		wantReadOnly(t, "A reopened", a2, base)
		_, b2 := reopenClone(t, devB)
		wantOwner(t, "B reopened", b2, base, false, 2, 3)
		wantReadOnly(t, "B reopened", b2, base)
		devC2, c2 := reopenClone(t, devC)
		wantOwner(t, "C reopened", c2, base, false, 2, 3)
		wantStale(t, "C reopened", c2, base, laterB)
		// C takes over at the fenced epoch; after a cut it still owns the
		// volume and its chain goes on from the view entry
		mustTakeOver(t, c2, base, 3)
		_, c3 := reopenClone(t, devC2)
		wantOwner(t, "C reopened after TakeOver", c3, base, true, 3, 3)
		writeHistory(t, rng, mustOpenVolume(t, c3, base), 3)
		_, d := newStore(t, 64<<20)
		mustApply(t, d, mustStream(t, c3, base, segment.Position{}))
		sameVolume(t, c3, d, base)
		// the old owner A follows C across both view changes
		mustApply(t, a2, mustStream(t, c3, base, position(t, mustOpenVolume(t, a2, base))))
		sameVolume(t, c3, a2, base)
		wantOwner(t, "A after C's view", a2, base, false, 3, 3)
	})
}

// TestTakeOverRacesOldOwnerWrites: the old owner keeps writing while it
// applies the new owner's view entry. Either one of its writes lands first
// (the view then does not link: ErrLink, a fork for the daemon to keep) or
// the view lands first and every later write fails with ErrReadOnly; never
// both a write acknowledged after the view and the view applied.
func TestTakeOverRacesOldOwnerWrites(t *testing.T) {
	for round := range 4 {
		rng := rand.New(rand.NewPCG(71, uint64(round)))
		_, a := newStore(t, 32<<20)
		_, b := newStore(t, 32<<20)
		va := mustCreate(t, a, 1<<20)
		base := va.Base()
		writeHistory(t, rng, va, 3)
		pre := position(t, va)
		mustApply(t, b, mustStream(t, a, base, segment.Position{}))
		mustTakeOver(t, b, base, 2)
		writeHistory(t, rng, mustOpenVolume(t, b, base), 2)
		fromB := mustStream(t, b, base, pre)

		// the writes' callbacks run on A's writer goroutine: they must not block
		var mu sync.Mutex
		var last segment.Position // the last acknowledged write
		var failures []error
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				done := make(chan struct{})
				va.WriteAsyncAt(bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i%16)*4096, false, func(p segment.Position, err error) {
					mu.Lock()
					if err != nil {
						failures = append(failures, err)
					} else {
						last = p
					}
					mu.Unlock()
					close(done)
				})
				<-done
			}
		}()
		_, err := a.Apply(bytes.NewReader(fromB))
		close(stop)
		<-stopped
		switch {
		case err == nil:
			if last.LSN > pre.LSN {
				t.Fatalf("round %d: view applied, yet a write was acknowledged at lsn %d after lsn %d", round, last.LSN, pre.LSN)
			}
			sameVolume(t, b, a, base)
			wantOwner(t, "A", a, base, false, 2, 2)
			wantReadOnly(t, "A", a, base)
		case errors.Is(err, segment.ErrLink) && !errors.Is(err, segment.ErrStaleEpoch):
			if last.LSN <= pre.LSN {
				t.Fatalf("round %d: Apply = %v, but no write of A's after lsn %d", round, err, pre.LSN)
			}
			wantOwner(t, "A (forked)", a, base, true, 1, 1)
		default:
			t.Fatalf("round %d: Apply(B's stream) on A = %v", round, err)
		}
		for _, err := range failures {
			if !errors.Is(err, segment.ErrReadOnly) {
				t.Fatalf("round %d: A's write failed with %v, want ErrReadOnly", round, err)
			}
		}
		t.Logf("round %d: Apply = %v; last write acknowledged at lsn %d (view at %d), %d writes refused", round, err, last.LSN, pre.LSN+1, len(failures))
	}
}

// TestApplyLiveRefusesStaleEpoch: ApplyLive (a replica following an old
// owner) refuses its entries once the replica is fenced, keeping what came
// before.
func TestApplyLiveRefusesStaleEpoch(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	_, a := newStore(t, 32<<20)
	_, c := newStore(t, 32<<20)
	va := mustCreate(t, a, 1<<20)
	base := va.Base()
	writeHistory(t, rng, va, 3)
	mustApply(t, c, mustStream(t, a, base, segment.Position{}))
	pre := position(t, va)
	writeHistory(t, rng, va, 2)
	if err := c.Fence(base, 2); err != nil {
		t.Fatal(err)
	}
	var got []segment.Position
	_, err := c.ApplyLive(bytes.NewReader(mustStream(t, a, base, pre)), func(p segment.Position) { got = append(got, p) })
	if !errors.Is(err, segment.ErrStaleEpoch) || !errors.Is(err, segment.ErrLink) || len(got) != 0 {
		t.Fatalf("ApplyLive(epoch-1 stream) after Fence(2) = %v after %d appends, want ErrStaleEpoch and ErrLink, no append", err, len(got))
	}
	if p := position(t, mustOpenVolume(t, c, base)); p != pre {
		t.Fatalf("fenced replica moved from %+v to %+v", pre, p)
	}
	if err := a.Fence(base, 1); err != nil { // not above the owner's epoch: nothing
		t.Fatal(err)
	}
	wantOwner(t, "A", a, base, true, 1, 1)
	if err := a.Fence(segment.RandomID(), 2); !errors.Is(err, segment.ErrNotFound) {
		t.Fatalf("Fence(unknown volume) = %v, want ErrNotFound", err)
	}
}

// TestTakeOverSurvivesCleaning: the cleaner copies a view entry (never folds
// it into a gap), and the history across it still streams, verifies and
// recovers after compaction.
func TestTakeOverSurvivesCleaning(t *testing.T) {
	rng := rand.New(rand.NewPCG(91, 92))
	dev, a := newStore(t, 64<<20)
	va := mustCreate(t, a, 256<<10)
	base := va.Base()
	big := func(seed byte) {
		for off := int64(0); off < 256<<10; off += 64 << 10 {
			mustWriteAt(t, va, bytes.Repeat([]byte{seed}, 64<<10), off)
		}
	}
	big(1)
	mustTakeOver(t, a, base, 2)
	big(2)
	mustTakeOver(t, a, base, 5)
	for i := range 30 { // overwrite everything many times: segments to clean
		big(byte(10 + i))
	}
	writeHistory(t, rng, va, 4)
	if res := compact(t, a); res.Segments == 0 {
		t.Fatalf("compact cleaned nothing: %+v", res)
	}
	wantOwner(t, "after cleaning", a, base, true, 5, 5)
	_, d := newStore(t, 64<<20)
	mustApply(t, d, mustStream(t, a, base, segment.Position{}))
	sameVolume(t, a, d, base)
	wantOwner(t, "receiver", d, base, false, 5, 5)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a2 := reopen(t, dev)
	wantOwner(t, "reopened", a2, base, true, 5, 5)
	mustWriteAt(t, mustOpenVolume(t, a2, base), bytes.Repeat([]byte{0x77}, 4096), 0)
	mustApply(t, d, mustStream(t, a2, base, position(t, mustOpenVolume(t, d, base))))
	sameVolume(t, a2, d, base)
}

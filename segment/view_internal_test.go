package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"cloudfs/segment/device"
)

// ckptBodyV1 rewrites a checkpoint body of version 2 as version 1, as a
// build before view entries wrote it: the old magic, and each volume without
// its fence and epoch lsn. It walks the layout of docs/FORMAT.md §8.
func ckptBodyV1(tb testing.TB, b []byte) []byte {
	tb.Helper()
	le := binary.LittleEndian
	out := append([]byte(nil), ckptMagicV1[:]...)
	p := 8
	take := func(n int) { out = append(out, b[p:p+n]...); p += n }
	count := func() int { n := int(le.Uint32(b[p:])); take(4); return n }
	extentMap := func() { n := int(le.Uint64(b[p:])); take(8 + 16*n) }
	take(8 + 8) // generation, next segment sequence
	take(25 * count())
	for range count() { // snapshots
		take(3*IDSize + 8 + 8)
		extentMap()
	}
	for range count() { // volumes
		take(4*IDSize + 4*8 + 1)
		p += 8 + 8 // fence, epoch lsn
		take(20 * count())
		take(8 * count())
		extentMap()
	}
	if p != len(b) {
		tb.Fatalf("ckptBodyV1: walked %d of %d bytes", p, len(b))
	}
	return out
}

// TestDecodeCheckpointV1: a body of version 1 (no fences, one epoch per
// volume) still decodes, to the state of version 2 without fences, with each
// volume's epoch starting at lsn 1; FuzzDecodeCheckpoint gets it as a seed.
func TestDecodeCheckpointV1(t *testing.T) {
	bodies, nsegs := checkpointSeeds(t)
	for i, b := range bodies {
		v2, err := decodeCheckpoint(b, nsegs)
		if err != nil {
			t.Fatalf("body %d: decodeCheckpoint(v2) = %v", i, err)
		}
		old := ckptBodyV1(t, b)
		v1, err := decodeCheckpoint(old, nsegs)
		if err != nil {
			t.Fatalf("body %d: decodeCheckpoint(v1 %.64x) = %v", i, old, err)
		}
		for _, v := range v2.vols {
			v.fence, v.epochLSN = 0, min(v.lsn, 1)
			v.owned = v.owned && v.epoch >= v.fence
		}
		if got, want := ckptString(v1), ckptString(v2); got != want {
			t.Fatalf("body %d as v1:\n got %s\nwant %s", i, got, want)
		}
		if _, err := decodeCheckpoint(old[:len(old)-1], nsegs); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("body %d as v1, truncated: %v, want ErrCorrupt", i, err)
		}
	}
}

// TestCheckpointEpochLSN: a v2 body whose volume says its epoch starts after
// its head is corrupt.
func TestCheckpointEpochLSN(t *testing.T) {
	bodies, nsegs := checkpointSeeds(t)
	b := bytes.Clone(bodies[len(bodies)-1])
	st, err := decodeCheckpoint(b, nsegs)
	if err != nil || len(st.vols) == 0 {
		t.Fatalf("decodeCheckpoint = %v, %d volumes", err, len(st.vols))
	}
	v := st.vols[0]
	v.epochLSN = v.lsn + 1
	bad := reencodeCheckpoint(st)
	if _, err := decodeCheckpoint(bad, nsegs); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("decodeCheckpoint(epoch lsn %d > lsn %d) = %v, want ErrCorrupt", v.epochLSN, v.lsn, err)
	}
}

// FuzzOwnership drives three stores holding one volume through ownership
// changes: writes, TakeOver and Fence of fuzzed epochs, streams applied from
// one store to another, and power cuts (only what was synced survives). Each
// op is 2 bytes: op and store, argument. Nothing panics, every error wraps a
// documented sentinel, each store's epoch and fenced epoch never go down
// (a power cut included: TakeOver and Apply sync, Fence checkpoints), an owner
// is never below its fence, and every store passes Check at the end.
func FuzzOwnership(f *testing.F) {
	f.Add([]byte{})
	// B (1) takes over in 2, writes, C (2) follows B; A (0) follows B
	f.Add([]byte{0, 1, 1 + 3*5, 2, 0 + 1*5, 3, 3 + 2*5, 1, 3 + 0*5, 1, 0, 2})
	// A writes after B's takeover; C fenced at 3; B's stream to C and A's to C
	f.Add([]byte{1 + 1*5, 2, 0, 5, 2 + 2*5, 3, 0 + 1*5, 6, 3 + 2*5, 1, 3 + 2*5, 0, 4 + 2*5, 0, 3 + 1*5, 0})
	// power cuts around a takeover and a fence
	f.Add([]byte{1 + 2*5, 4, 4 + 2*5, 0, 2 + 1*5, 5, 4 + 1*5, 0, 3 + 0*5, 2, 1 + 0*5, 6, 4, 0, 3 + 1*5, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 64 {
			ops = ops[:64]
		}
		var devs [3]*device.Mem
		var sts [3]*Store
		for i := range sts {
			devs[i], sts[i] = newMemStore(t, 32<<20)
		}
		base := ID{0xf0}
		createVolume(t, sts[0], base, 256<<10)
		for i := 1; i < 3; i++ {
			if _, err := sts[i].Apply(bytes.NewReader(mustStream(t, sts[0], base, Position{}))); err != nil {
				t.Fatal(err)
			}
		}
		var seen [3][2]uint64 // epoch, fenced epoch
		for k := 0; k+1 < len(ops); k += 2 {
			op, i, arg := ops[k]%5, int(ops[k]/5)%3, ops[k+1]
			s := sts[i]
			var err error
			switch op {
			case 0:
				_, err = (&Volume{s: s, base: base}).WriteAt(bytes.Repeat([]byte{arg | 1}, 4096), int64(arg%64)*4096)
			case 1:
				_, err = s.TakeOver(base, uint64(arg%8))
			case 2:
				err = s.Fence(base, uint64(arg%8))
			case 3:
				from := sts[int(arg)%3]
				var buf bytes.Buffer
				pos := Position{}
				if in, err := (&Volume{s: s, base: base}).Info(); err == nil && arg&4 != 0 {
					pos = Position{LSN: in.LSN, Version: in.Version}
				}
				if _, err = from.Stream(&buf, base, pos); err == nil {
					_, err = s.Apply(&buf)
				}
			case 4:
				if err := s.Close(); err != nil {
					t.Fatalf("op %d: Close: %v", k/2, err)
				}
				devs[i] = devs[i].CrashClone(device.CrashCfg{UnsyncedPercent: 0})
				if s, err = Open(devs[i], Options{NoBackground: true}); err != nil {
					t.Fatalf("op %d: Open after a power cut: %v", k/2, err)
				}
				sts[i] = s
			}
			if err != nil && !isApplyError(err) && !errors.Is(err, ErrReadOnly) && !errors.Is(err, ErrNotFound) {
				t.Fatalf("op %d (%d on store %d, %d): %v wraps no documented sentinel", k/2, op, i, arg, err)
			}
			for j, st := range sts {
				in, err := (&Volume{s: st, base: base}).Info()
				if err != nil {
					t.Fatalf("op %d: store %d: Info: %v", k/2, j, err)
				}
				if in.Epoch < seen[j][0] || in.FencedEpoch < seen[j][1] {
					t.Fatalf("op %d (%d on store %d, %d): store %d went from epoch %d fenced %d to %d fenced %d",
						k/2, op, i, arg, j, seen[j][0], seen[j][1], in.Epoch, in.FencedEpoch)
				}
				if in.Owned && in.FencedEpoch > in.Epoch {
					t.Fatalf("op %d: store %d owns the volume in epoch %d, fenced at %d", k/2, j, in.Epoch, in.FencedEpoch)
				}
				seen[j] = [2]uint64{in.Epoch, in.FencedEpoch}
			}
		}
		for i, s := range sts {
			if err := s.Close(); err != nil {
				t.Fatalf("store %d: Close: %v", i, err)
			}
			if rep, err := Check(devs[i]); err != nil {
				t.Fatalf("store %d: Check = %v (%v)", i, err, rep.Problems)
			}
		}
	})
}

package segment_test

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/cryptotest"

	"cloudfs/segment"
	"cloudfs/segment/device"
	"cloudfs/segment/segtest"
)

// engineOpts are the options of the engine tests: no background work, so that
// checkpoints and cleaning happen exactly where a test calls them.
var engineOpts = segment.Options{NoBackground: true, CleanerRate: -1}

func mustCreate(t testing.TB, st *segment.Store, size uint64) *segment.Volume {
	t.Helper()
	v, err := st.Create(size)
	if err != nil {
		t.Fatalf("Create(%d): %v", size, err)
	}
	return v
}

func mustWriteAt(t testing.TB, v *segment.Volume, p []byte, off int64) {
	t.Helper()
	if _, err := v.WriteAt(p, off); err != nil {
		t.Fatalf("WriteAt(%v, %d bytes at %d): %v", v.Base(), len(p), off, err)
	}
}

func mustZero(t testing.TB, v *segment.Volume, off, n int64) {
	t.Helper()
	if err := v.WriteZeroes(off, n); err != nil {
		t.Fatalf("WriteZeroes(%v, %d at %d): %v", v.Base(), n, off, err)
	}
}

func mustInfo(t testing.TB, v *segment.Volume) segment.Info {
	t.Helper()
	in, err := v.Info()
	if err != nil {
		t.Fatalf("Info(%v): %v", v.Base(), err)
	}
	return in
}

func mustBranch(t testing.TB, st *segment.Store, version segment.ID) *segment.Volume {
	t.Helper()
	b, err := st.Branch(version)
	if err != nil {
		t.Fatalf("Branch(%v): %v", version, err)
	}
	return b
}

func mustCheckpoint(t testing.TB, st *segment.Store) {
	t.Helper()
	if err := st.Checkpoint(); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
}

func mustClean(t testing.TB, st *segment.Store, n int) segment.CleanResult {
	t.Helper()
	res, err := st.Clean(n)
	if err != nil {
		t.Fatalf("Clean(%d): %v", n, err)
	}
	return res
}

// compact is what "let the cleaner run" means in these tests: a checkpoint,
// a pass over every segment worth cleaning, and a checkpoint that frees the
// emptied segments.
func compact(t testing.TB, st *segment.Store) segment.CleanResult {
	t.Helper()
	mustCheckpoint(t, st)
	res := mustClean(t, st, 1000)
	mustCheckpoint(t, st)
	return res
}

func mustStream(t testing.TB, st *segment.Store, base segment.ID, from segment.Position) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := st.Stream(&buf, base, from); err != nil {
		t.Fatalf("Stream(%v from lsn %d): %v", base, from.LSN, err)
	}
	return buf.Bytes()
}

func mustApply(t testing.TB, st *segment.Store, stream []byte) segment.ApplyStats {
	t.Helper()
	stats, err := st.Apply(bytes.NewReader(stream))
	if err != nil {
		t.Fatalf("Apply(%d bytes): %v", len(stream), err)
	}
	return stats
}

// position returns where v is now, as a stream's From.
func position(t testing.TB, v *segment.Volume) segment.Position {
	in := mustInfo(t, v)
	return segment.Position{LSN: in.LSN, Version: in.Version}
}

// sameVolume fails unless volume base reads the same and has the same head on
// both stores.
func sameVolume(t testing.TB, a, b *segment.Store, base segment.ID) {
	t.Helper()
	va, vb := mustOpenVolume(t, a, base), mustOpenVolume(t, b, base)
	ia, ib := mustInfo(t, va), mustInfo(t, vb)
	if ia.Version != ib.Version || ia.LSN != ib.LSN || ia.Size != ib.Size {
		t.Fatalf("volume %v: receiver at lsn %d version %v size %d, sender at lsn %d version %v size %d",
			base, ib.LSN, ib.Version, ib.Size, ia.LSN, ia.Version, ia.Size)
	}
	if got, want := readAll(t, vb), readAll(t, va); !bytes.Equal(got, want) {
		t.Fatalf("volume %v at the same version %v reads differently on the receiver: %s", base, ia.Version, firstDiff(got, want))
	}
}

// writeHistory writes n random writes (some with zero sectors, some
// write-zeroes) to v.
func writeHistory(t testing.TB, rng *rand.Rand, v *segment.Volume, n int) {
	t.Helper()
	size := int64(mustInfo(t, v).Size)
	for range n {
		off, data, k := randWrite(rng, size)
		if data == nil {
			mustZero(t, v, off, k)
		} else {
			mustWriteAt(t, v, data, off)
		}
	}
}

// ---- streams ----------------------------------------------------------------

func TestStreamFromStartAndFromMidVersion(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	_, a := segtest.NewStore(t, 64<<20, engineOpts)
	_, b := segtest.NewStore(t, 64<<20, engineOpts)
	_, c := segtest.NewStore(t, 64<<20, engineOpts)
	v := mustCreate(t, a, 4<<20)
	writeHistory(t, rng, v, 30)
	mid := position(t, v)
	midStream := mustStream(t, a, v.Base(), segment.Position{})
	writeHistory(t, rng, v, 30)

	// from the start, to a store that has never seen the volume
	st := mustApply(t, b, mustStream(t, a, v.Base(), segment.Position{}))
	if want := int(mustInfo(t, v).LSN); st.Entries != want || st.Skipped != 0 {
		t.Errorf("Apply(whole stream) = %+v, want %d entries, none skipped", st, want)
	}
	sameVolume(t, a, b, v.Base())

	// from a mid version, to a store that is at that version
	mustApply(t, c, midStream)
	if got := position(t, mustOpenVolume(t, c, v.Base())); got != mid {
		t.Fatalf("receiver after the first stream at %+v, want %+v", got, mid)
	}
	delta := mustStream(t, a, v.Base(), mid)
	st = mustApply(t, c, delta)
	if want := int(mustInfo(t, v).LSN - mid.LSN); st.Entries != want {
		t.Errorf("Apply(delta from lsn %d) = %+v, want %d entries", mid.LSN, st, want)
	}
	sameVolume(t, a, c, v.Base())
	if len(delta) >= len(mustStream(t, a, v.Base(), segment.Position{})) {
		t.Errorf("delta from lsn %d is %d bytes, no smaller than the whole stream", mid.LSN, len(delta))
	}
}

// TestStreamOfBranch streams a branch after its source: the receiver then
// has both, at the same versions, with the same contents.
func TestStreamOfBranch(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	rng := rand.New(rand.NewPCG(3, 4))
	_, a := segtest.NewStore(t, 64<<20, engineOpts)
	_, b := segtest.NewStore(t, 64<<20, engineOpts)
	v := mustCreate(t, a, 2<<20)
	writeHistory(t, rng, v, 10)
	vStream := mustStream(t, a, v.Base(), segment.Position{})
	br := mustBranch(t, a, mustInfo(t, v).Version)
	writeHistory(t, rng, br, 10)
	writeHistory(t, rng, v, 10)

	mustApply(t, b, vStream) // the receiver has the branch point
	mustApply(t, b, mustStream(t, a, br.Base(), segment.Position{}))
	sameVolume(t, a, b, br.Base())
	mustApply(t, b, mustStream(t, a, v.Base(), position(t, mustOpenVolume(t, b, v.Base()))))
	sameVolume(t, a, b, v.Base())
	sameVolume(t, a, b, br.Base())
}

func TestStreamCorruptBodyChangesNothing(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	_, a := segtest.NewStore(t, 64<<20, engineOpts)
	_, b := segtest.NewStore(t, 64<<20, engineOpts)
	v := mustCreate(t, a, 1<<20)
	writeHistory(t, rng, v, 5)
	mustApply(t, b, mustStream(t, a, v.Base(), segment.Position{}))
	from := position(t, v)
	mustWriteAt(t, v, randData(rng, 64<<10, 0), 0)
	mustWriteAt(t, v, randData(rng, 64<<10, 0), 128<<10)
	delta := mustStream(t, a, v.Base(), from)

	heads := b.Heads()
	before := readAll(t, mustOpenVolume(t, b, v.Base()))
	// The stream is a 512-byte header, then records: header, body. Flip a
	// byte in the body of the last record.
	bad := bytes.Clone(delta)
	bad[len(bad)-100] ^= 0x40
	if _, err := b.Apply(bytes.NewReader(bad)); !errors.Is(err, segment.ErrCorrupt) {
		t.Fatalf("Apply(stream with a flipped body byte) = %v, want ErrCorrupt", err)
	}
	if got := b.Heads(); !slices.Equal(got, heads) {
		t.Errorf("Heads after a rejected stream = %v, want %v", got, heads)
	}
	if got := readAll(t, mustOpenVolume(t, b, v.Base())); !bytes.Equal(got, before) {
		t.Errorf("contents after a rejected stream changed: %s", firstDiff(got, before))
	}
	// and the good stream still applies
	mustApply(t, b, delta)
	sameVolume(t, a, b, v.Base())
}

// TestStreamForgedBodyRejected: an entry whose body was replaced and whose
// checksum was recomputed (a buggy or malicious peer) no longer matches its
// entropy E(n), which the version id derives from. Applying it would give the
// receiver the sender's version ids with other contents: the hash chain must
// bind the data (DESIGN.md §4: equal ids mean equal replicas).
func TestStreamForgedBodyRejected(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	rng := rand.New(rand.NewPCG(7, 8))
	_, a := segtest.NewStore(t, 64<<20, engineOpts)
	_, b := segtest.NewStore(t, 64<<20, engineOpts)
	v := mustCreate(t, a, 1<<20)
	mustWriteAt(t, v, randData(rng, 4096, 0), 0)
	stream := mustStream(t, a, v.Base(), segment.Position{})
	// stream header, create record (header only), data record: header + 8 sectors
	const recOff = 2 * segment.HeaderSize
	forged := bytes.Clone(stream)
	forged[recOff+segment.HeaderSize+10] ^= 0xff
	resealWire(forged[recOff:recOff+segment.HeaderSize], forged[recOff+segment.HeaderSize:recOff+segment.HeaderSize+4096])
	if _, err := b.Apply(bytes.NewReader(forged)); err == nil {
		got := readAll(t, mustOpenVolume(t, b, v.Base()))
		t.Fatalf("Apply(stream with a forged body and a recomputed sum) = nil: the receiver is at version %v like the sender but reads %s",
			mustInfo(t, mustOpenVolume(t, b, v.Base())).Version, firstDiff(got, readAll(t, v)))
	}
}

// resealWire recomputes a wire record's sum, crc32c(body || header[52:512])
// (docs/FORMAT.md), after its body changed.
func resealWire(hdr, body []byte) {
	sum := crc32c(crc32c(0, body), hdr[52:segment.HeaderSize])
	hdr[48], hdr[49], hdr[50], hdr[51] = byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24)
}

func TestStreamAppliedTwiceSkips(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	rng := rand.New(rand.NewPCG(9, 10))
	_, a := segtest.NewStore(t, 64<<20, engineOpts)
	_, b := segtest.NewStore(t, 64<<20, engineOpts)
	v := mustCreate(t, a, 1<<20)
	writeHistory(t, rng, v, 8)
	stream := mustStream(t, a, v.Base(), segment.Position{})
	first := mustApply(t, b, stream)
	second := mustApply(t, b, stream)
	if second.Entries != 0 || second.Skipped != first.Entries {
		t.Errorf("second Apply = %+v, want 0 entries and %d skipped", second, first.Entries)
	}
	sameVolume(t, a, b, v.Base())
}

// TestStreamFork makes the receiver's history diverge from the sender's: the
// sender loses its unsynced writes in a crash and then writes other data at
// the same lsns. Applying either way round fails with ErrLink and changes
// nothing.
func TestStreamFork(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	rng := rand.New(rand.NewPCG(11, 12))
	devA, a := segtest.NewStore(t, 64<<20, engineOpts)
	_, b := segtest.NewStore(t, 64<<20, engineOpts)
	v := mustCreate(t, a, 1<<20)
	mustWriteAt(t, v, randData(rng, 4096, 0), 0)
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	mustWriteAt(t, v, randData(rng, 4096, 0), 4096) // lost in the crash
	mustApply(t, b, mustStream(t, a, v.Base(), segment.Position{}))
	atB := position(t, mustOpenVolume(t, b, v.Base()))

	crashed := devA.CrashClone(device.CrashCfg{UnsyncedPercent: 0})
	a2 := segtest.Open(t, crashed, engineOpts)
	v2 := mustOpenVolume(t, a2, v.Base())
	if got := mustInfo(t, v2).LSN; got != atB.LSN-1 {
		t.Fatalf("after the crash the sender is at lsn %d, want %d", got, atB.LSN-1)
	}
	mustWriteAt(t, v2, randData(rng, 4096, 0), 8192) // same lsn, other entry: a fork
	if got := position(t, v2); got.LSN != atB.LSN || got.Version == atB.Version {
		t.Fatalf("fork at %+v, receiver at %+v: want the same lsn and another version", got, atB)
	}

	// The receiver asks for a delta from its version: the sender does not have it.
	if _, err := a2.Stream(new(bytes.Buffer), v.Base(), atB); !errors.Is(err, segment.ErrLink) {
		t.Errorf("Stream(from the receiver's forked version) = %v, want ErrLink", err)
	}
	// The sender pushes its whole history: the receiver refuses the fork.
	before := readAll(t, mustOpenVolume(t, b, v.Base()))
	heads := b.Heads()
	if _, err := b.Apply(bytes.NewReader(mustStream(t, a2, v.Base(), segment.Position{}))); !errors.Is(err, segment.ErrLink) {
		t.Errorf("Apply(forked history) = %v, want ErrLink", err)
	}
	if got := b.Heads(); !slices.Equal(got, heads) {
		t.Errorf("Heads after a refused fork = %v, want %v", got, heads)
	}
	if got := readAll(t, mustOpenVolume(t, b, v.Base())); !bytes.Equal(got, before) {
		t.Errorf("contents after a refused fork changed: %s", firstDiff(got, before))
	}
}

// TestStreamAfterCompaction streams a volume whose history the cleaner has
// compacted (overwritten data shrinks to gap entries) to a store that has
// nothing and to stores at older versions: each ends at the sender's version
// with the sender's contents, or (a delta from inside a compacted range) is
// refused with ErrVersionUnavailable.
func TestStreamAfterCompaction(t *testing.T) {
	for _, zeros := range []bool{false, true} {
		name := map[bool]string{false: "data", true: "zeroes"}[zeros]
		t.Run(name, func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, 1)
			rng := rand.New(rand.NewPCG(13, 14))
			devA, a := newStore(t, 64<<20)
			v := mustCreate(t, a, 4<<20)
			var olds []segment.Position
			var oldStreams [][]byte
			for round := range 4 {
				for off := int64(0); off < 4<<20; off += 512 << 10 {
					mustWriteAt(t, v, randData(rng, 512<<10, 20), off)
					if zeros && off%(1<<20) == 0 {
						mustZero(t, v, off+int64(round)*4096, 8192)
					}
				}
				olds = append(olds, position(t, v))
				oldStreams = append(oldStreams, mustStream(t, a, v.Base(), segment.Position{}))
			}
			if zeros {
				// the last entry zeroes what every older entry wrote there
				mustZero(t, v, 0, 1<<20)
			}
			res := compact(t, a)
			if res.Segments == 0 {
				t.Fatalf("compact: %+v, want segments cleaned", res)
			}
			segtest.CheckImage(t, devA)
			_, fresh := segtest.NewStore(t, 64<<20, engineOpts)
			mustApply(t, fresh, mustStream(t, a, v.Base(), segment.Position{}))
			sameVolume(t, a, fresh, v.Base())
			for i, from := range olds {
				_, r := segtest.NewStore(t, 64<<20, engineOpts)
				mustApply(t, r, oldStreams[i])
				var buf bytes.Buffer
				_, err := a.Stream(&buf, v.Base(), from)
				if errors.Is(err, segment.ErrVersionUnavailable) {
					t.Logf("delta from lsn %d: %v (compacted)", from.LSN, err)
					continue
				}
				if err != nil {
					t.Fatalf("Stream(from lsn %d) = %v", from.LSN, err)
				}
				mustApply(t, r, buf.Bytes())
				sameVolume(t, a, r, v.Base())
			}
		})
	}
}

// TestStreamAfterCompactionKeepsZeroSectors: an entry whose data sectors were
// all overwritten but whose zero sector (a bitmap bit) is still what the
// volume reads must not shrink to a gap: a receiver at an older version, where
// that sector holds data, would keep the data and read differently from the
// sender at the same version id.
func TestStreamAfterCompactionKeepsZeroSectors(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	rng := rand.New(rand.NewPCG(27, 28))
	dev, a := newStore(t, 64<<20)
	_, r := newStore(t, 64<<20)
	v := mustCreate(t, a, 1<<20)
	mustWriteAt(t, v, randData(rng, 512, 0), 512) // sector 1 = X
	mustApply(t, r, mustStream(t, a, v.Base(), segment.Position{}))
	from := position(t, v)
	mustWriteAt(t, v, randData(rng, 512, 0), 100*512)                         // stays live: keeps the gaps apart
	mustWriteAt(t, v, append(randData(rng, 512, 0), make([]byte, 512)...), 0) // R: sector 0 data, sector 1 zero
	mustWriteAt(t, v, randData(rng, 512, 0), 0)                               // R's data is dead, its zero is not
	filler := mustCreate(t, a, 2<<20)
	for range 4 {
		mustWriteAt(t, filler, randData(rng, 2<<20, 0), 0)
	}
	if res := compact(t, a); res.Segments == 0 {
		t.Fatalf("compact: %+v, want segments cleaned", res)
	}
	segtest.CheckImage(t, dev)
	var buf bytes.Buffer
	if _, err := a.Stream(&buf, v.Base(), from); errors.Is(err, segment.ErrVersionUnavailable) {
		return // refusing the delta is correct too
	} else if err != nil {
		t.Fatalf("Stream(from lsn %d) = %v", from.LSN, err)
	}
	mustApply(t, r, buf.Bytes())
	sameVolume(t, a, r, v.Base())
}

// ---- branches ---------------------------------------------------------------

// TestBranchIsO1: a branch of a volume with many extents copies none of them.
func TestBranchIsO1(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	_, st := newStore(t, 64<<20)
	v := mustCreate(t, st, 8<<20)
	rng := rand.New(rand.NewPCG(15, 16))
	for i := range 2000 {
		mustWriteAt(t, v, randData(rng, 512, 0), int64(i)*4096)
	}
	if n := mustInfo(t, v).Extents; n < 2000 {
		t.Fatalf("source has %d extents, want 2000", n)
	}
	want := readAll(t, v)
	b := mustBranch(t, st, mustInfo(t, v).Version)
	in := mustInfo(t, b)
	if in.Extents != 0 || in.MappedBytes != 0 || in.Parent != mustInfo(t, v).Version {
		t.Errorf("branch Info = %+v, want no extents of its own and parent %v", in, mustInfo(t, v).Version)
	}
	if got := readAll(t, b); !bytes.Equal(got, want) {
		t.Errorf("branch reads %s", firstDiff(got, want))
	}
}

func TestBranchOfBranch(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	dev, st := newStore(t, 64<<20)
	rng := rand.New(rand.NewPCG(17, 18))
	v := mustCreate(t, st, 1<<20)
	writeHistory(t, rng, v, 10)
	b1 := mustBranch(t, st, mustInfo(t, v).Version)
	writeHistory(t, rng, b1, 10)
	b2 := mustBranch(t, st, mustInfo(t, b1).Version)
	writeHistory(t, rng, b2, 10)
	b2Now := readAll(t, b2)
	writeHistory(t, rng, b1, 5)
	writeHistory(t, rng, v, 5)
	b1Now, vNow := readAll(t, b1), readAll(t, v)

	b3 := mustBranch(t, st, mustInfo(t, b2).Version)
	check := func(when string) {
		t.Helper()
		for _, c := range []struct {
			name string
			v    *segment.Volume
			want []byte
		}{{"v", v, vNow}, {"b1", b1, b1Now}, {"b2", b2, b2Now}, {"b3", b3, b2Now}} {
			vol := mustOpenVolume(t, st, c.v.Base())
			if got := readAll(t, vol); !bytes.Equal(got, c.want) {
				t.Errorf("%s: %s reads %s", when, c.name, firstDiff(got, c.want))
			}
		}
	}
	check("live")
	compact(t, st)
	check("after compaction")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = reopen(t, dev)
	check("after reopen")
}

// TestBranchKeepsDataOfDeletedSource deletes the volume a branch was taken
// of: the branch keeps reading the source's data through compaction, a
// reopen and Check.
func TestBranchKeepsDataOfDeletedSource(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	dev, st := newStore(t, 64<<20)
	rng := rand.New(rand.NewPCG(19, 20))
	v := mustCreate(t, st, 4<<20)
	writeHistory(t, rng, v, 40)
	b := mustBranch(t, st, mustInfo(t, v).Version)
	writeHistory(t, rng, b, 5)
	writeHistory(t, rng, v, 5)
	want := readAll(t, b)
	if err := st.Delete(v.Base()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Info(); !errors.Is(err, segment.ErrNotFound) {
		t.Errorf("Info of the deleted source = %v, want ErrNotFound", err)
	}
	// Fill the log so that the source's segments get cleaned. (Data without
	// zero sectors: see TestCleanerFreesSegments for why.)
	filler := mustCreate(t, st, 8<<20)
	for range 3 {
		for range 8 {
			mustWriteAt(t, filler, randData(rng, 1<<20, 0), int64(rng.IntN(8))<<20)
		}
		compact(t, st)
	}
	if got := readAll(t, b); !bytes.Equal(got, want) {
		t.Errorf("branch after compaction reads %s", firstDiff(got, want))
	}
	segtest.CheckImage(t, dev)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = reopen(t, dev)
	if got := readAll(t, mustOpenVolume(t, st, b.Base())); !bytes.Equal(got, want) {
		t.Errorf("branch after reopen reads %s", firstDiff(got, want))
	}
}

func TestBranchZeroesMaskParent(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	_, st := newStore(t, 64<<20)
	v := mustCreate(t, st, 1<<20)
	data := bytes.Repeat([]byte{0xab}, 64<<10)
	mustWriteAt(t, v, data, 0)
	b := mustBranch(t, st, mustInfo(t, v).Version)
	mustZero(t, b, 4096, 8192)                                         // write-zeroes
	mustWriteAt(t, b, make([]byte, 4096), 32768)                       // a write of zero sectors
	mustWriteAt(t, b, append(make([]byte, 512), data[:512]...), 40960) // one zero sector, one not
	want := bytes.Clone(data)
	clear(want[4096 : 4096+8192])
	clear(want[32768 : 32768+4096])
	clear(want[40960 : 40960+512])
	got := make([]byte, len(want))
	if _, err := b.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("branch reads %s", firstDiff(got, want))
	}
	if _, err := v.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("source reads %v %s", err, firstDiff(got, data))
	}
	compact(t, st)
	if _, err := b.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Errorf("branch after compaction reads %v %s", err, firstDiff(got, want))
	}
}

func TestBranchOldVersionUnavailable(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	_, st := newStore(t, 64<<20)
	v := mustCreate(t, st, 1<<20)
	old := mustInfo(t, v).Version
	mustWriteAt(t, v, make([]byte, 512), 0)
	if _, err := st.Branch(old); !errors.Is(err, segment.ErrVersionUnavailable) {
		t.Errorf("Branch(old version) = %v, want ErrVersionUnavailable", err)
	}
	if _, err := st.Branch(segment.RandomID()); !errors.Is(err, segment.ErrVersionUnavailable) {
		t.Errorf("Branch(unknown version) = %v, want ErrVersionUnavailable", err)
	}
	// a version a branch was taken of stays available
	at := mustInfo(t, v).Version
	mustBranch(t, st, at)
	mustWriteAt(t, v, make([]byte, 512), 512)
	mustBranch(t, st, at)
	if n := len(st.Heads()); n != 3 {
		t.Errorf("%d volumes, want 3", n)
	}
}

// ---- cleaner ----------------------------------------------------------------

// TestCleanerFreesSegments overwrites a volume many times: compaction frees
// segments (fewer in use, as Check counts them; the store exports no free
// space figure) and the data stays intact.
func TestCleanerFreesSegments(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	dev, st := newStore(t, 128<<20)
	rng := rand.New(rand.NewPCG(21, 22))
	v := mustCreate(t, st, 4<<20)
	for range 10 {
		mustWriteAt(t, v, randData(rng, 4<<20, 10), 0)
	}
	want := readAll(t, v)
	before := segtest.CheckImage(t, dev).UsedSegments
	res := compact(t, st)
	after := segtest.CheckImage(t, dev).UsedSegments
	t.Logf("compact: %+v; segments in use %d -> %d", res, before, after)
	if after >= before || after > 4 {
		t.Errorf("segments in use %d -> %d after compaction of a 4 MiB volume, want at most 4", before, after)
	}
	if got := readAll(t, v); !bytes.Equal(got, want) {
		t.Errorf("after compaction: %s", firstDiff(got, want))
	}
}

// TestCleanerKeepsUpWithOverwrites overwrites a 4 MiB volume on a 32 MiB
// store (7 segments) 60 times 1 MiB, compacting (checkpoint, clean every
// segment worth it, checkpoint) every 4 writes: 4 MiB of live data never
// fills the store. Data with some zero
// sectors (as every file system writes) must clean as well as data without.
func TestCleanerKeepsUpWithOverwrites(t *testing.T) {
	for _, zeroPct := range []int{0, 10} {
		t.Run(fmt.Sprintf("zero-sectors=%d%%", zeroPct), func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, 1)
			_, st := newStore(t, 32<<20)
			rng := rand.New(rand.NewPCG(1, 1))
			v := mustCreate(t, st, 4<<20)
			want := make([]byte, 4<<20)
			for i := range 60 {
				off := int64(rng.IntN(4)) << 20
				p := randData(rng, 1<<20, zeroPct)
				if _, err := v.WriteAt(p, off); err != nil {
					t.Fatalf("write %d of 60: %v", i, err)
				}
				copy(want[off:], p)
				if i%4 == 3 {
					mustCheckpoint(t, st)
					if _, err := st.Clean(100); err != nil {
						t.Fatalf("Clean after write %d of 60: %v", i, err)
					}
					mustCheckpoint(t, st)
				}
			}
			if got := readAll(t, v); !bytes.Equal(got, want) {
				t.Errorf("%s", firstDiff(got, want))
			}
		})
	}
}

// TestCleanerSnapshotDataWithZeroSectors: a record whose data a branch's
// snapshot holds, and whose zero sectors the source's own map (written after
// the branch) also reads as zeros. The cleaner must move the data in the
// snapshot's map, or the victim segment keeps live data forever and Check
// finds its headers twice.
func TestCleanerSnapshotDataWithZeroSectors(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	dev, st := newStore(t, 64<<20)
	rng := rand.New(rand.NewPCG(23, 24))
	v := mustCreate(t, st, 1<<20)
	// record R: sector 0 data, sector 1 zeros (a bitmap bit, no body)
	mustWriteAt(t, v, append(randData(rng, 512, 0), make([]byte, 512)...), 0)
	mustBranch(t, st, mustInfo(t, v).Version) // R's data now belongs to the snapshot
	mustZero(t, v, 512, 512)                  // v's own map: sector 1 zeroed
	want := readAll(t, v)
	// Fill the first segment with data that dies, so that it is sealed and
	// worth cleaning.
	filler := mustCreate(t, st, 2<<20)
	for range 4 {
		mustWriteAt(t, filler, randData(rng, 2<<20, 0), 0)
	}
	before := segtest.CheckImage(t, dev)
	res := compact(t, st)
	t.Logf("compact: %+v", res)
	after := segtest.CheckImage(t, dev)
	if after.UsedSegments >= before.UsedSegments {
		t.Errorf("segments in use %d -> %d: compaction freed nothing", before.UsedSegments, after.UsedSegments)
	}
	if got := readAll(t, v); !bytes.Equal(got, want) {
		t.Errorf("after compaction: %s", firstDiff(got, want))
	}
}

// ---- helpers ----------------------------------------------------------------

// newStore is segtest.NewStore with engineOpts.
func newStore(t testing.TB, size int64) (*device.Mem, *segment.Store) {
	return segtest.NewStore(t, size, engineOpts)
}

func reopen(t testing.TB, dev *device.Mem) *segment.Store {
	return segtest.Open(t, dev, engineOpts)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

// ---- writer -----------------------------------------------------------------

// TestBatchFillingSegmentStaysLive: one write larger than a segment is one
// batch that fills a segment from its start to its end. That segment holds
// live data and must not be freed by the next checkpoint (and then reused,
// overwriting the data).
func TestBatchFillingSegmentStaysLive(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	dev, st := newStore(t, 64<<20)
	rng := rand.New(rand.NewPCG(25, 26))
	v := mustCreate(t, st, 12<<20)
	want := randData(rng, 12<<20, 10)
	mustWriteAt(t, v, want, 0) // 12 MiB: segment 1 is filled within this one batch
	mustCheckpoint(t, st)
	image := dev.CrashClone(device.CrashCfg{UnsyncedPercent: 100})
	other := mustCreate(t, st, 8<<20)
	mustWriteAt(t, other, randData(rng, 8<<20, 10), 0) // lands in free segments
	if got := readAll(t, v); !bytes.Equal(got, want) {
		t.Errorf("after a checkpoint and another write: %s", firstDiff(got, want))
	}
	segtest.MustCheck(t, image) // the store as the checkpoint left it
}

// TestCleanerLeavesRoomForCheckpoint: when the store is full, cleaning
// passes copy live data into the segments kept in reserve, and the victims are
// free only after the next checkpoint. Cleaning must leave that checkpoint
// room to land, or the store wedges: no checkpoint, so nothing is ever freed,
// deletes fail with ErrNoSpace, and Close fails.
func TestCleanerLeavesRoomForCheckpoint(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	_, st := newStore(t, 64<<20)
	rng := rand.New(rand.NewPCG(1, 1))
	var vols []*segment.Volume
	for range 3 {
		vols = append(vols, mustCreate(t, st, 4<<20))
	}
	for i := range 400 {
		v := vols[rng.IntN(len(vols))]
		off, data, n := randWrite(rng, 4<<20)
		var err error
		if data == nil {
			err = v.WriteZeroes(off, n)
		} else {
			_, err = v.WriteAt(data, off)
		}
		if errors.Is(err, segment.ErrNoSpace) {
			for range 3 {
				if _, err := st.Clean(2); err != nil {
					t.Logf("op %d: the store is full; Clean: %v", i, err)
				}
			}
			if err := st.Checkpoint(); err != nil {
				t.Fatalf("op %d: the store is full; after cleaning, Checkpoint = %v; Delete = %v", i, err, st.Delete(vols[0].Base()))
			}
		} else if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		if rng.IntN(10) == 0 {
			if _, err := st.Clean(1 + rng.IntN(2)); err != nil && !errors.Is(err, segment.ErrNoSpace) {
				t.Fatalf("op %d: Clean: %v", i, err)
			}
		}
		if rng.IntN(12) == 0 {
			mustCheckpoint(t, st)
		}
	}
}

// ---- errors -------------------------------------------------------------------

// TestVolumeErrors checks the sentinel each misuse returns.
func TestVolumeErrors(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	_, st := newStore(t, 64<<20)
	_, replica := newStore(t, 64<<20)
	v := mustCreate(t, st, 1<<20)
	mustApply(t, replica, mustStream(t, st, v.Base(), segment.Position{}))
	rv := mustOpenVolume(t, replica, v.Base())
	gone := mustCreate(t, st, 1<<20)
	if err := st.Delete(gone.Base()); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4096)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"create of size 0", second(st.Create(0)), segment.ErrOutOfRange},
		{"create of an unaligned size", second(st.Create(1000)), segment.ErrOutOfRange},
		{"write at an unaligned offset", second(v.WriteAt(p, 100)), segment.ErrOutOfRange},
		{"write of an unaligned length", second(v.WriteAt(p[:1000], 0)), segment.ErrOutOfRange},
		{"write beyond the end", second(v.WriteAt(p, 1<<20-512)), segment.ErrOutOfRange},
		{"read beyond the end", second(v.ReadAt(p, 1<<20)), segment.ErrOutOfRange},
		{"zeroes beyond the end", v.WriteZeroes(1<<20-512, 4096), segment.ErrOutOfRange},
		{"write to a deleted volume", second(gone.WriteAt(p, 0)), segment.ErrNotFound},
		{"read of a deleted volume", second(gone.ReadAt(p, 0)), segment.ErrNotFound},
		{"delete of a deleted volume", st.Delete(gone.Base()), segment.ErrNotFound},
		{"stream of a deleted volume", second(st.Stream(new(bytes.Buffer), gone.Base(), segment.Position{})), segment.ErrNotFound},
		{"write to a replica", second(rv.WriteAt(p, 0)), segment.ErrReadOnly},
		{"zeroes to a replica", rv.WriteZeroes(0, 4096), segment.ErrReadOnly},
		{"stream from beyond the head", second(st.Stream(new(bytes.Buffer), v.Base(), segment.Position{LSN: 5, Version: segment.RandomID()})), segment.ErrLink},
		{"apply of garbage", second(replica.Apply(bytes.NewReader(make([]byte, 1024)))), segment.ErrCorrupt},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"write", second(v.WriteAt(p, 0))},
		{"flush", v.Flush()},
		{"create", second(st.Create(1 << 20))},
		{"branch", second(st.Branch(segment.RandomID()))},
		{"checkpoint", st.Checkpoint()},
		{"clean", second(st.Clean(1))},
		{"close", st.Close()},
	} {
		if !errors.Is(tc.err, segment.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", tc.name, tc.err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestFlushAlone: a flush with nothing else in its group commit (no record,
// so no device write, only a sync) completes, and so does the IO behind it.
// (A hang here shows as the test binary's timeout.)
func TestFlushAlone(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	_, st := newStore(t, 64<<20)
	v := mustCreate(t, st, 1<<20)
	mustWriteAt(t, v, make([]byte, 4096), 0)
	for range 3 {
		if err := v.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	mustWriteAt(t, v, bytes.Repeat([]byte{1}, 4096), 0)
	if got := readAll(t, v)[:4096]; !bytes.Equal(got, bytes.Repeat([]byte{1}, 4096)) {
		t.Errorf("after flushes: %s", firstDiff(got, bytes.Repeat([]byte{1}, 4096)))
	}
}

// TestStreamBranchAfterSourceMovedOn: a replica that already follows a volume
// past the version a branch was taken of must still be able to receive the
// branch (DESIGN.md §4: branches of replicated volumes replicate). The
// sender holds the branch point as a snapshot; the receiver has no way to get
// it once its copy of the source moved on.
func TestStreamBranchAfterSourceMovedOn(t *testing.T) {
	t.Skip("known gap (issue 2 note, for issue 5): Apply of a branch needs its branch point as a head or " +
		"retained snapshot on the receiver; a replica past the branch point cannot rebuild the old version yet")
	cryptotest.SetGlobalRandom(t, 1)
	rng := rand.New(rand.NewPCG(41, 42))
	_, a := newStore(t, 64<<20)
	_, b := newStore(t, 64<<20)
	v := mustCreate(t, a, 1<<20)
	writeHistory(t, rng, v, 5)
	br := mustBranch(t, a, mustInfo(t, v).Version)
	writeHistory(t, rng, br, 3)
	writeHistory(t, rng, v, 3)
	mustApply(t, b, mustStream(t, a, v.Base(), segment.Position{})) // the replica follows v past the branch point
	var buf bytes.Buffer
	if _, err := a.Stream(&buf, br.Base(), segment.Position{}); err != nil {
		t.Fatalf("Stream(branch): %v", err)
	}
	if _, err := b.Apply(&buf); err != nil {
		t.Fatalf("Apply(branch) on a replica of its source that is past the branch point: %v", err)
	}
	sameVolume(t, a, b, br.Base())
}

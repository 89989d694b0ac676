package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"

	"cloudfs/segment/device"
	"cloudfs/segment/extent"
)

// Fuzzers for everything the store parses from its device or from a peer.
// docs/FORMAT.md describes the bytes. Each fuzz function's seeds also run as
// ordinary subtests under `go test`.
//
// The checksummed structures (superblock, slots, record headers, streams) take
// a reseal flag: when set, the harness recomputes the checksums after the
// fuzzer's changes, so that the fuzzer reaches the field checks behind them.
// Without it almost every mutation stops at the crc compare. An input that
// fails only with reseal set models a writer bug or a CRC32C collision, not
// random media corruption.

// testUUID is the store uuid the decoder tests seal headers and slots with.
var testUUID = [16]byte{0: 0xc1, 1: 0x0d, 2: 0xf5, 15: 0x01}

// testSegmentSize keeps test devices small: the minimum segment size.
const testSegmentSize = MinSegmentSize

// testSecret is the store secret of newMemStore's stores.
var testSecret = [32]byte{0: 0x5e, 1: 0xc7, 31: 0x01}

// newMemStore formats a Mem of size bytes with testSegmentSize segments and
// opens it without background work. The superblock gets testUUID, testSecret
// and a fixed creation time instead of Format's random ones, so that with
// createVolume and branchVolume every byte the store writes depends only on
// what the test does, and a fuzzer's saved input replays on the same bytes.
func newMemStore(tb testing.TB, size int64) (*device.Mem, *Store) {
	tb.Helper()
	dev := device.NewMem(size, BlockSize)
	sb, err := Format(dev, FormatOptions{SegmentSize: testSegmentSize})
	if err != nil {
		tb.Fatalf("Format: %v", err)
	}
	sb.UUID, sb.Secret, sb.Created = testUUID, testSecret, 1
	if _, err := dev.WriteAt(sb.Encode(), superblockOff); err != nil {
		tb.Fatal(err)
	}
	s, err := Open(dev, Options{NoBackground: true})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return dev, s
}

// pattern returns n bytes of a recognisable pattern; every sector whose index
// (from 0) is in zeros stays all zero, so it is a bitmap hole.
func pattern(n int, seed byte, zeros ...int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i/SectorSize) + byte(i)
	}
	for _, z := range zeros {
		clear(p[z*SectorSize : (z+1)*SectorSize])
	}
	return p
}

// createVolume is Create with a chosen base id (Create draws a random one).
func createVolume(tb testing.TB, s *Store, base ID, size uint64) *Volume {
	tb.Helper()
	if err := s.run(&op{kind: opCreate, size: size, sync: true, recs: []*rec{{h: Header{Base: base}}}}); err != nil {
		tb.Fatalf("create %v: %v", base, err)
	}
	return &Volume{s: s, base: base}
}

// branchVolume is Branch with a chosen base id for the new volume.
func branchVolume(tb testing.TB, s *Store, base, version ID) *Volume {
	tb.Helper()
	if err := s.run(&op{kind: opBranch, version: version, sync: true, recs: []*rec{{h: Header{Base: base}}}}); err != nil {
		tb.Fatalf("branch %v of %v: %v", base, version, err)
	}
	return &Volume{s: s, base: base}
}

func mustWrite(tb testing.TB, v *Volume, p []byte, off int64) {
	tb.Helper()
	if _, err := v.WriteAt(p, off); err != nil {
		tb.Fatalf("write %d bytes at %d: %v", len(p), off, err)
	}
}

func mustInfo(tb testing.TB, v *Volume) Info {
	tb.Helper()
	in, err := v.Info()
	if err != nil {
		tb.Fatalf("Info: %v", err)
	}
	return in
}

func mustStream(tb testing.TB, s *Store, base ID, from Position) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := s.Stream(&buf, base, from); err != nil {
		tb.Fatalf("Stream(%v, %+v): %v", base, from, err)
	}
	return buf.Bytes()
}

// resealHeader recomputes the header crc of the record header b[:512].
func resealHeader(b []byte, uuid [16]byte) {
	binary.LittleEndian.PutUint32(b[4:], seededCRC(uuid, b[8:HeaderSize]))
}

// resealRecord recomputes the sum of the record header b[:512] over body,
// then its header crc.
func resealRecord(b, body []byte, uuid [16]byte) {
	binary.LittleEndian.PutUint32(b[48:], crc32.Update(crcOf(body), crcTable, b[sumCoverOff:HeaderSize]))
	resealHeader(b, uuid)
}

func resealSuperblock(b []byte) {
	binary.LittleEndian.PutUint32(b[BlockSize-4:], crcOf(b[:BlockSize-4]))
}

func resealSlot(b []byte, uuid [16]byte) {
	binary.LittleEndian.PutUint32(b[BlockSize-4:], seededCRC(uuid, b[:BlockSize-4]))
}

// FuzzDecodeSuperblock: DecodeSuperblock never panics, fails only with its
// three sentinels, and a superblock it accepts re-encodes to the same bytes.
func FuzzDecodeSuperblock(f *testing.F) {
	dev := device.NewMem(32<<20, BlockSize)
	if _, err := Format(dev, FormatOptions{SegmentSize: testSegmentSize}); err != nil {
		f.Fatal(err)
	}
	real := make([]byte, BlockSize)
	if _, err := dev.ReadAt(real, 0); err != nil {
		f.Fatal(err)
	}
	f.Add(real, false)
	v2 := bytes.Clone(real)
	binary.LittleEndian.PutUint32(v2[8:], 2)
	f.Add(v2, true)
	f.Add(real[:BlockSize-1], false)
	f.Add(make([]byte, BlockSize), true)
	f.Fuzz(func(t *testing.T, b []byte, reseal bool) {
		if reseal && len(b) >= BlockSize {
			b = bytes.Clone(b)
			resealSuperblock(b)
		}
		sb, err := DecodeSuperblock(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotStore) && !errors.Is(err, ErrUnsupportedFormat) {
				t.Fatalf("DecodeSuperblock(%.128x) = %v, want an error wrapping a segment sentinel", b, err)
			}
			return
		}
		if got := sb.Encode(); !bytes.Equal(got, b[:BlockSize]) {
			t.Fatalf("DecodeSuperblock(%.128x) = %+v, which re-encodes differently at bytes %v",
				b, *sb, diffRanges(got, b[:BlockSize]))
		}
	})
}

// FuzzDecodeSlot: decodeSlot never panics, fails only with ErrCorrupt, and a
// slot it accepts re-encodes to the same bytes (the all-zero slot decodes to
// generation 0).
func FuzzDecodeSlot(f *testing.F) {
	sl := slot{Generation: 7, BodyAddr: 2048 + 80, BodyGSeq: 1234, BodyChunks: 2, BodyBytes: 1 << 20,
		BodyCRC: 0xdeadbeef, ReplayAddr: 2048 + 16, ReplayGSeq: 1200}
	f.Add(sl.encode(testUUID), false)
	f.Add(sl.encode([16]byte{1}), false) // another store's slot
	f.Add(make([]byte, BlockSize), false)
	f.Add(make([]byte, BlockSize), true)
	sl.Generation = 0
	f.Add(sl.encode(testUUID), false)

	// a slot a real checkpoint wrote
	dev, s := newMemStore(f, 32<<20)
	mustWrite(f, createVolume(f, s, ID{0xa}, 1<<20), pattern(8192, 1), 0)
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	real := make([]byte, BlockSize)
	if _, err := dev.ReadAt(real, slotAOff); err != nil {
		f.Fatal(err)
	}
	if _, err := decodeSlot(real, testUUID); err != nil {
		f.Fatalf("decodeSlot(slot A after Close) = %v", err)
	}
	f.Add(real, false)

	f.Fuzz(func(t *testing.T, b []byte, reseal bool) {
		if reseal && len(b) >= BlockSize {
			b = bytes.Clone(b)
			resealSlot(b, testUUID)
		}
		got, err := decodeSlot(b, testUUID)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeSlot(%.64x) = %v, want an error wrapping ErrCorrupt", b, err)
			}
			return
		}
		if got.Generation == 0 {
			if *got != (slot{}) || !allZero(b[:BlockSize]) {
				t.Fatalf("decodeSlot(%.64x) = %+v: generation 0 from a slot that is not all zero", b, *got)
			}
			return
		}
		if enc := got.encode(testUUID); !bytes.Equal(enc, b[:BlockSize]) {
			t.Fatalf("decodeSlot(%.64x) = %+v, which re-encodes differently at bytes %v", b, *got, diffRanges(enc, b[:BlockSize]))
		}
	})
}

// sampleHeaders returns one valid header of each shape the writer and the
// cleaner produce, with sums sealed; bodies are all-zero sectors.
func sampleHeaders() []Header {
	base, link, src := ID{1, 2, 3}, ID{4, 5, 6}, ID{7, 8, 9}
	data := Header{GSeq: 10, Kind: KindData, NSect: 16, NBody: 5, LBA: 64, LSN: 3, Epoch: 1, Base: base, Link: link,
		ID: ID{0xaa}, Entropy: ID{0xee}}
	for _, i := range []int{0, 1, 2, 3, 9} {
		data.setPresent(i)
	}
	hs := []Header{
		data,
		{GSeq: 11, Kind: KindData, Flags: FlagZero, NSect: MaxZeroSectors, LBA: 1 << 30, LSN: 4, Epoch: 1, Base: base, Link: link, ID: ID{0xab}, Entropy: ID{0xef}},
		{GSeq: 1, Kind: KindCreate, LSN: 1, Epoch: 1, Aux: 1 << 30, Base: base, ID: ID{0xac}, Entropy: ID{0xf0}, LFlags: lflagOwned},
		{GSeq: 2, Kind: KindBranch, LSN: 1, Epoch: 1, Aux: 1 << 30, Base: ID{9}, Link: ID{0xaa}, Source: src, ID: ID{0xad}, Entropy: ID{0xf1}, LFlags: lflagOwned},
		{GSeq: 3, Kind: KindDelete, Base: base},
		{GSeq: 4, Kind: KindPad, NBody: 6},
		{GSeq: 5, Kind: KindNext, Aux: 3},
		{GSeq: 6, Kind: KindCheckpoint, Aux: 2, LSN: 1, NBody: MaxEntrySectors},
		{GSeq: 7, Kind: KindGap, LSN: 9, FirstLSN: 5, Epoch: 1, Base: base, Link: link, ID: ID{0xae}, Entropy: ID{0xf2},
			LFlags: lflagRelocated, From: 2048 + 8},
		{GSeq: 8, Kind: KindView, LSN: 10, Epoch: 7, Base: base, Link: ID{0xae}, ID: ID{0xaf}, Entropy: ID{0xf3}, LFlags: lflagOwned},
	}
	reloc := data
	reloc.LFlags, reloc.Owner, reloc.From = lflagRelocated, ID{0x55}, 4096
	hs = append(hs, reloc)
	setGapCount(&hs[8], 5)
	scratch := make([]byte, HeaderSize)
	for i := range hs {
		body := make([]byte, int(hs[i].NBody)*SectorSize)
		hs[i].sealSum(crcOf(body), scratch)
	}
	return hs
}

func encodeHeader(h *Header, uuid [16]byte) []byte {
	b := make([]byte, HeaderSize)
	h.encode(b, uuid)
	return b
}

// wireBytes is the header as writeWire sends it.
func wireBytes(h *Header) []byte {
	var buf bytes.Buffer
	if err := writeWire(&buf, h, nil); err != nil {
		panic(err) // bytes.Buffer does not fail
	}
	return buf.Bytes()
}

// FuzzDecodeHeader: decodeHeader and DecodeWireHeader never panic and fail
// only with ErrCorrupt or ErrUnsupportedFormat. A header decodeHeader accepts
// re-encodes (local and portable fields) to the same 512 bytes; a header
// DecodeWireHeader accepts has zero local fields and goes back on the wire as
// the same bytes with [4, 48) zeroed, which is what a sender writes.
func FuzzDecodeHeader(f *testing.F) {
	for _, h := range sampleHeaders() {
		f.Add(encodeHeader(&h, testUUID), false)
	}
	f.Add(make([]byte, HeaderSize), true)
	f.Add([]byte("CFR1"), false)
	f.Fuzz(func(t *testing.T, b []byte, reseal bool) {
		if reseal && len(b) >= HeaderSize {
			b = bytes.Clone(b)
			resealHeader(b, testUUID)
		}
		h, err := decodeHeader(b, testUUID)
		checkHeaderErr(t, "decodeHeader", b, err)
		if err == nil {
			if got := encodeHeader(h, testUUID); !bytes.Equal(got, b[:HeaderSize]) {
				t.Fatalf("decodeHeader(%.256x) = %+v, which re-encodes differently at bytes %v", b, *h, diffRanges(got, b[:HeaderSize]))
			}
			_ = h.checkBody(b[:HeaderSize], b[HeaderSize:]) // any error is fine; no panic
		}
		wh, err := DecodeWireHeader(b)
		checkHeaderErr(t, "DecodeWireHeader", b, err)
		if err != nil {
			return
		}
		if wh.GSeq != 0 || wh.Owner != (ID{}) || wh.LFlags != 0 || wh.From != 0 {
			t.Fatalf("DecodeWireHeader(%.256x) = %+v: local fields set", b, *wh)
		}
		want := bytes.Clone(b[:HeaderSize])
		clear(want[4:portableOff])
		if got := wireBytes(wh); !bytes.Equal(got, want) {
			t.Fatalf("DecodeWireHeader(%.256x) = %+v, which goes on the wire differently at bytes %v", b, *wh, diffRanges(got, want))
		}
		if h != nil {
			h.GSeq, h.Owner, h.LFlags, h.From = 0, ID{}, 0, 0
			if *h != *wh {
				t.Fatalf("header %.256x: decodeHeader = %+v, DecodeWireHeader = %+v", b, *h, *wh)
			}
		}
	})
}

func checkHeaderErr(t *testing.T, fn string, b []byte, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("%s(%.256x) = %v, want nil or an error wrapping ErrCorrupt or ErrUnsupportedFormat", fn, b, err)
	}
}

// checkpointSeeds returns real checkpoint bodies: one of an empty store and
// one after a history with writes, zero writes, branches (snapshots), a
// delete, sealed segments and a cleaning pass. nsegs is the stores' segment
// count.
func checkpointSeeds(tb testing.TB) (bodies [][]byte, nsegs int) {
	_, s := newMemStore(tb, 32<<20)
	defer s.Close()
	body := func() []byte {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.encodeCheckpointLocked(s.ckptGen+1, s.applied)
	}
	bodies = append(bodies, body())
	runHistory(tb, s)
	bodies = append(bodies, body())
	return bodies, len(s.segs)
}

// runHistory drives s through a short history that leaves every record kind
// in the log: creates, data with bitmap holes, write-zeroes, branches, a
// delete, checkpoints, sealed segments and a cleaning pass (relocated and gap
// records). It needs a store of at least 7 segments of testSegmentSize.
func runHistory(tb testing.TB, s *Store) (a, b *Volume) {
	tb.Helper()
	a = createVolume(tb, s, ID{0xa}, 1<<20)
	writeMiB := func(seed byte, zeros ...int) { // four records of 512 sectors
		for off := 0; off < 1<<20; off += 256 << 10 {
			mustWrite(tb, a, pattern(256<<10, seed, zeros...), int64(off))
		}
	}
	writeMiB(1, 5, 6, 200)
	if err := a.WriteZeroes(64<<10, 32<<10); err != nil {
		tb.Fatal(err)
	}
	if err := s.Checkpoint(); err != nil {
		tb.Fatal(err)
	}
	b = branchVolume(tb, s, ID{0xb}, mustInfo(tb, a).Version)
	mustWrite(tb, b, pattern(8192, 2), 4096)
	if err := b.WriteZeroes(0, 4096); err != nil { // masks the parent
		tb.Fatal(err)
	}
	c := createVolume(tb, s, ID{0xc}, 64<<10)
	mustWrite(tb, c, pattern(4096, 3), 0)
	if err := s.Delete(c.Base()); err != nil {
		tb.Fatal(err)
	}
	// ownership: a is fenced at epoch 2 (read-only here; Fence checkpoints),
	// then taken over in epoch 3
	if err := s.Fence(a.Base(), 2); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.TakeOver(a.Base(), 3); err != nil {
		tb.Fatal(err)
	}
	for i := range 4 { // overwrite a: seals segment 0, leaves it mostly dead
		writeMiB(byte(10 + i))
	}
	if err := s.Checkpoint(); err != nil {
		tb.Fatal(err)
	}
	if res, err := s.Clean(1); err != nil || res.Segments != 1 {
		tb.Fatalf("Clean(1) = %+v, %v; want one segment cleaned", res, err)
	}
	if err := s.Checkpoint(); err != nil {
		tb.Fatal(err)
	}
	// after the last checkpoint: work for roll-forward, including a record of
	// the largest size (1 + 2048 sectors), which spans the reader's 1 MiB
	// read-ahead
	mustWrite(tb, a, pattern(16<<10, 20, 3), 128<<10)
	mustWrite(tb, a, pattern(1<<20, 22), 0)
	mustWrite(tb, b, pattern(4096, 21), 0)
	if _, err := s.TakeOver(b.Base(), 2); err != nil { // a view entry to roll forward
		tb.Fatal(err)
	}
	mustWrite(tb, b, pattern(4096, 23), 8192)
	if err := b.Flush(); err != nil {
		tb.Fatal(err)
	}
	return a, b
}

// FuzzDecodeCheckpoint: decodeCheckpoint never panics and fails only with
// ErrCorrupt. A body it accepts has nsegs segments and distinct volumes, its
// state encodes to a body that decodes, and encoding and decoding again gives
// the same state.
func FuzzDecodeCheckpoint(f *testing.F) {
	bodies, nsegs := checkpointSeeds(f)
	for _, b := range bodies {
		f.Add(b, uint8(nsegs))
		f.Add(b, uint8(nsegs+1))
		f.Add(ckptBodyV1(f, b), uint8(nsegs)) // the version before view entries
	}
	f.Add(ckptMagic[:], uint8(0))
	f.Add(ckptMagicV1[:], uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, n uint8) {
		nsegs := int(n % 32)
		st, err := decodeCheckpoint(b, nsegs)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeCheckpoint(%.64x, %d) = %v, want an error wrapping ErrCorrupt", b, nsegs, err)
			}
			return
		}
		if len(st.segs) != nsegs {
			t.Fatalf("decodeCheckpoint(%.64x, %d): %d segments", b, nsegs, len(st.segs))
		}
		seen := map[ID]bool{}
		for _, v := range st.vols {
			if seen[v.base] {
				t.Fatalf("decodeCheckpoint(%.64x, %d) = nil error for a body that lists volume %v twice", b, nsegs, v.base)
			}
			seen[v.base] = true
		}
		// The encoder writes segments as of the replay position, so a state
		// the writer cannot produce (a segment opened after it) may change
		// once; from then on encoding and decoding must be a fixpoint.
		st2 := decodeAgain(t, b, nsegs, reencodeCheckpoint(st))
		st3 := decodeAgain(t, b, nsegs, reencodeCheckpoint(st2))
		if got, want := ckptString(st3), ckptString(st2); got != want {
			t.Fatalf("decodeCheckpoint(%.64x, %d) round trip:\n got %s\nwant %s", b, nsegs, got, want)
		}
	})
}

// decodeAgain decodes the re-encoding of the body b decoded to.
func decodeAgain(t *testing.T, b []byte, nsegs int, again []byte) *ckptState {
	t.Helper()
	st, err := decodeCheckpoint(again, nsegs)
	if err != nil {
		t.Fatalf("decodeCheckpoint(%.64x, %d) = ok, but its re-encoding %.64x fails: %v", b, nsegs, again, err)
	}
	return st
}

// reencodeCheckpoint encodes a decoded checkpoint with the store's encoder.
func reencodeCheckpoint(st *ckptState) []byte {
	s := &Store{cat: newCatalog(), segs: make([]segInfo, len(st.segs))}
	for i := range st.segs {
		g, from := &s.segs[i], &st.segs[i]
		g.state, g.seq, g.live, g.emptiedAt = from.state, from.seq, from.live, from.emptiedAt
	}
	for _, sn := range st.snaps {
		s.cat.putSnapshot(sn)
	}
	for _, v := range st.vols {
		s.cat.putVolume(v)
	}
	return s.encodeCheckpointLocked(st.gen, writerPos{segSq: st.segSq})
}

// ckptString is a canonical text form of a decoded checkpoint: snapshots and
// volumes sorted by id, header counts by segment.
func ckptString(st *ckptState) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "gen %d segsq %d segs", st.gen, st.segSq)
	for i := range st.segs {
		g := &st.segs[i]
		fmt.Fprintf(&sb, " %d/%d/%d/%d", g.state, g.seq, g.live, g.emptiedAt)
	}
	var snaps, vols []string
	for _, sn := range st.snaps {
		snaps = append(snaps, fmt.Sprintf("snap %v owner %v parent %v lsn %d size %d map %x",
			sn.version, sn.owner, versionOf(sn.parent), sn.lsn, sn.size, sn.m.AppendBinary(nil)))
	}
	for _, v := range st.vols {
		segs := make([]uint32, 0, len(v.hdrs))
		for seg := range v.hdrs {
			segs = append(segs, seg)
		}
		slices.Sort(segs)
		hdrs := make([]string, len(segs))
		for i, seg := range segs {
			hdrs[i] = fmt.Sprintf("%d:%d", seg, v.hdrs[seg])
		}
		vols = append(vols, fmt.Sprintf("vol %v parent %v head %v entropy %v size %d created %d lsn %d epoch %d from %d fence %d owned %v runs %v hdrs %v map %x",
			v.base, versionOf(v.parent), v.head, v.entropy, v.size, v.created, v.lsn, v.epoch, v.epochLSN, v.fence, v.owned, v.runs, hdrs, v.m.AppendBinary(nil)))
	}
	sort.Strings(snaps)
	sort.Strings(vols)
	for _, x := range append(snaps, vols...) {
		sb.WriteString("\n  " + x)
	}
	return sb.String()
}

// streamFixture is what FuzzDecodeStream applies its inputs on top of.
type streamFixture struct {
	prelude []byte   // stream of volume a from the start, applied before every input
	seeds   [][]byte // real streams that apply after the prelude
}

// newStreamFixture runs a source store: volume a with writes (bitmap holes,
// zeros), the prelude taken at a's version X, then a branch b of X with
// writes, and more writes to a.
func newStreamFixture(tb testing.TB) streamFixture {
	_, src := newMemStore(tb, 32<<20)
	defer src.Close()
	a := createVolume(tb, src, ID{0xa}, 256<<10)
	mustWrite(tb, a, pattern(8192, 1), 0)
	mustWrite(tb, a, pattern(4096, 2, 3), 16<<10)
	if err := a.WriteZeroes(64<<10, 32<<10); err != nil {
		tb.Fatal(err)
	}
	var fx streamFixture
	fx.prelude = mustStream(tb, src, a.Base(), Position{})
	in := mustInfo(tb, a)
	x := Position{LSN: in.LSN, Version: in.Version}
	b := branchVolume(tb, src, ID{0xb}, x.Version)
	mustWrite(tb, b, pattern(4096, 3), 0)
	mustWrite(tb, a, pattern(4096, 4), 8192)
	if _, err := src.TakeOver(a.Base(), 2); err != nil { // a view entry, and entries after it
		tb.Fatal(err)
	}
	mustWrite(tb, a, pattern(4096, 5), 12288)
	head := mustInfo(tb, a)
	fx.seeds = [][]byte{
		fx.prelude,
		mustStream(tb, src, a.Base(), x),
		mustStream(tb, src, a.Base(), Position{}),
		mustStream(tb, src, b.Base(), Position{}),
		mustStream(tb, src, a.Base(), Position{LSN: head.LSN, Version: head.Version}),
	}
	return fx
}

// resealStream recomputes the crc of the stream header and the sum of every
// complete record that follows it.
func resealStream(b []byte) {
	if len(b) < HeaderSize {
		return
	}
	binary.LittleEndian.PutUint32(b[508:], crcOf(b[:508]))
	for p := b[HeaderSize:]; len(p) >= HeaderSize; {
		n := int(min(binary.LittleEndian.Uint32(p[60:]), maxBodySectors)) * SectorSize
		if len(p) < HeaderSize+n {
			return
		}
		resealRecord(p[:HeaderSize], p[HeaderSize:HeaderSize+n], [16]byte{})
		clear(p[4:8]) // the wire has no header crc
		p = p[HeaderSize+n:]
	}
}

// FuzzDecodeStream: DecodeStreamHeader never panics, and a header it accepts
// re-encodes to the same bytes. Apply of the whole input, on a fresh store
// holding the prelude, never panics and returns nil or an error; either way
// the store stays consistent: volumes map nothing beyond their size, reads
// work, Check finds no problem after Close, and the state survives Open.
func FuzzDecodeStream(f *testing.F) {
	fx := newStreamFixture(f)
	for _, s := range fx.seeds {
		f.Add(s, false)
	}
	f.Add(fx.seeds[1][:HeaderSize+100], false) // truncated record
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, reseal bool) {
		if reseal {
			b = bytes.Clone(b)
			resealStream(b)
		}
		if sh, err := DecodeStreamHeader(b); err == nil {
			if got := sh.encode(); !bytes.Equal(got, b[:HeaderSize]) {
				t.Fatalf("DecodeStreamHeader(%.64x) = %+v, which re-encodes differently at bytes %v", b, *sh, diffRanges(got, b[:HeaderSize]))
			}
		} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedFormat) {
			t.Fatalf("DecodeStreamHeader(%.64x) = %v, want an error wrapping ErrCorrupt or ErrUnsupportedFormat", b, err)
		}

		dev, s := newMemStore(t, 64<<20)
		if _, err := s.Apply(bytes.NewReader(fx.prelude)); err != nil {
			t.Fatalf("Apply(prelude) = %v", err)
		}
		st, err := s.Apply(bytes.NewReader(b))
		if err != nil && !isApplyError(err) {
			t.Errorf("Apply(%.64x) = %+v, %v: error wraps no segment sentinel", b, st, err)
		}
		checkVolumes(t, s)
		heads := s.Heads()
		if err := s.Close(); err != nil {
			t.Fatalf("Close after Apply(%.64x): %v", b, err)
		}
		if rep, err := Check(dev); err != nil {
			t.Fatalf("Check after Apply(%.64x) and Close = %v (%v)", b, err, rep)
		}
		s2, err := Open(dev, Options{NoBackground: true})
		if err != nil {
			t.Fatalf("Open after Apply(%.64x) and Close: %v", b, err)
		}
		defer s2.Close()
		if got := s2.Heads(); !slices.Equal(got, heads) {
			t.Fatalf("after Apply(%.64x), Close and Open: heads %v, want %v", b, got, heads)
		}
	})
}

// isApplyError reports whether err is one Apply documents, or a stream that
// ends inside its header (io.EOF and io.ErrUnexpectedEOF from the reader).
func isApplyError(err error) bool {
	for _, e := range []error{ErrCorrupt, ErrLink, ErrStaleEpoch, ErrUnsupportedFormat, ErrVersionUnavailable, ErrNoSpace, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// checkVolumes reads every volume of s whole and checks that its extent map
// holds nothing beyond its size.
func checkVolumes(t *testing.T, s *Store) {
	t.Helper()
	s.mu.RLock()
	for _, v := range s.cat.volumes() {
		end := v.size / SectorSize
		v.m.Ascend(func(e extent.Extent) bool {
			if e.LBA+uint64(e.Len) > end {
				t.Errorf("volume %v of %d sectors maps extent %v", v.base, end, e)
			}
			return true
		})
	}
	s.mu.RUnlock()
	for _, h := range s.Heads() {
		v, err := s.Volume(h.Base)
		if err != nil {
			t.Fatalf("Volume(%v) listed by Heads: %v", h.Base, err)
		}
		in := mustInfo(t, v)
		// A stream or a resealed record can declare any size: read 16 pieces
		// spread over the volume (all of it when it is small).
		buf := make([]byte, 64<<10)
		step := max(in.Size/16, uint64(len(buf))) &^ (SectorSize - 1)
		for off := uint64(0); off < in.Size && off <= math.MaxInt64; off += step {
			n := min(uint64(len(buf)), in.Size-off)
			_, _ = v.ReadAt(buf[:n], int64(off)) // a read may fail on a damaged store, never panic
		}
	}
}

// recoverImage returns a store after runHistory, not closed (a copy taken
// while it was open), and its volumes' heads: its log holds every record
// kind, three checkpoints and records to roll forward. Its uuid is testUUID.
func recoverImage(tb testing.TB) (*device.Mem, []Head) {
	dev, s := newMemStore(tb, 32<<20)
	runHistory(tb, s)
	img := dev.CrashClone(device.CrashCfg{UnsyncedPercent: 100})
	heads := s.Heads()
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	return img, heads
}

// recoverRegion is where FuzzRecover patches: the superblock and slots, and
// the first three segments (where runHistory's log lives).
const recoverRegion = segmentAreaOff + 3*testSegmentSize

// patchDevice applies the patches encoded in p to dev: each is a 4-byte
// little-endian offset (taken modulo recoverRegion), a length byte (1 to 16)
// and that many bytes; at most 8 patches. It returns the sector addresses
// touched.
func patchDevice(t *testing.T, dev *device.Mem, p []byte) []int64 {
	var touched []int64
	blk := make([]byte, 2*BlockSize)
	for i := 0; i < 8 && len(p) >= 6; i++ {
		off := int64(binary.LittleEndian.Uint32(p) % recoverRegion)
		n := min(int(p[4]%16)+1, len(p)-5)
		data := p[5 : 5+n]
		p = p[5+n:]
		start := off &^ (BlockSize - 1)
		if _, err := dev.ReadAt(blk, start); err != nil {
			t.Fatal(err)
		}
		copy(blk[off-start:], data)
		if _, err := dev.WriteAt(blk, start); err != nil {
			t.Fatal(err)
		}
		for a := off / SectorSize; a <= (off+int64(n)-1)/SectorSize; a++ {
			touched = append(touched, a)
		}
	}
	return touched
}

// resealDevice recomputes the checksums of what the touched sectors belong
// to: the superblock, a slot, or a record whose header is one of them.
func resealDevice(t *testing.T, dev *device.Mem, uuid [16]byte, touched []int64) {
	blk := make([]byte, BlockSize)
	rec := make([]byte, ((1+maxBodySectors)*SectorSize+2*BlockSize-1)&^(BlockSize-1)) // a whole record from any sector of a block
	for _, a := range touched {
		off := a * SectorSize
		switch {
		case off < slotAOff:
			rw(t, dev, blk, 0, resealSuperblock)
		case off < slotBOff+BlockSize:
			rw(t, dev, blk, off&^(BlockSize-1), func(b []byte) { resealSlot(b, uuid) })
		case off >= segmentAreaOff:
			start := off &^ (BlockSize - 1)
			end := min(start+int64(len(rec)), dev.Size())
			buf := rec[:end-start]
			if _, err := dev.ReadAt(buf, start); err != nil {
				t.Fatal(err)
			}
			h := buf[off-start:]
			if [4]byte(h[:4]) != recordMagic {
				continue
			}
			n := int(min(binary.LittleEndian.Uint32(h[60:]), maxBodySectors)) * SectorSize
			if len(h) < HeaderSize+n {
				continue
			}
			resealRecord(h[:HeaderSize], h[HeaderSize:HeaderSize+n], uuid)
			if _, err := dev.WriteAt(buf, start); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// rw reads the block at off, applies fn and writes it back.
func rw(t *testing.T, dev *device.Mem, blk []byte, off int64, fn func([]byte)) {
	if _, err := dev.ReadAt(blk, off); err != nil {
		t.Fatal(err)
	}
	fn(blk)
	if _, err := dev.WriteAt(blk, off); err != nil {
		t.Fatal(err)
	}
}

// recordAddrs returns the sector address of every record header on dev that
// verifies with uuid, in address order.
func recordAddrs(tb testing.TB, dev device.Device, uuid [16]byte, from, to int64) []int64 {
	var out []int64
	buf := make([]byte, 1<<20)
	for off := from; off < to; off += int64(len(buf)) {
		if _, err := dev.ReadAt(buf, off); err != nil {
			tb.Fatal(err)
		}
		for i := 0; i < len(buf); i += SectorSize {
			if _, err := decodeHeader(buf[i:i+SectorSize], uuid); err == nil {
				out = append(out, (off+int64(i))/SectorSize)
			}
		}
	}
	return out
}

// FuzzRecover: Open of a store whose first few MiB the fuzzer overwrote in a
// few places never panics. It returns an error, or a store whose volumes map
// nothing beyond their size and read without panicking, which closes, which
// Check reads without panicking (it may report the damage), and which opens
// again with the same heads.
func FuzzRecover(f *testing.F) {
	img, imgHeads := recoverImage(f)
	uuid := testUUID
	patch := func(off int64, data ...byte) []byte {
		p := binary.LittleEndian.AppendUint32(nil, uint32(off))
		return append(append(p, byte(len(data)-1)), data...)
	}
	f.Add([]byte{}, false)
	f.Add(patch(8, 2), false)                         // superblock version 2
	f.Add(patch(8, 2), true)                          // the same, crc resealed
	f.Add(patch(slotAOff+8, 0xff), false)             // torn slot A
	f.Add(patch(slotBOff+48, 0xff, 0xff, 0x7f), true) // slot B replay address
	addrs := recordAddrs(f, img, uuid, segmentAreaOff, recoverRegion)
	checkImageKinds(f, img, uuid, addrs)
	for i, a := range addrs {
		if i%7 != 0 {
			continue
		}
		off := a * SectorSize
		f.Add(patch(off+52, byte(KindGap)), true)    // kind
		f.Add(patch(off+8, 0x7f), false)             // gseq, unsealed: end of log
		f.Add(patch(off+88, 0x40, 0, 0, 0, 1), true) // aux
	}
	f.Fuzz(func(t *testing.T, p []byte, reseal bool) {
		dev := img.CrashClone(device.CrashCfg{UnsyncedPercent: 100})
		touched := patchDevice(t, dev, p)
		if reseal {
			resealDevice(t, dev, uuid, touched)
		}
		s, err := Open(dev, Options{NoBackground: true})
		if len(touched) == 0 {
			// no patch: recovery must find every acknowledged write
			if err != nil {
				t.Fatalf("Open(unpatched image) = %v", err)
			}
			if got := s.Heads(); !slices.Equal(got, imgHeads) {
				t.Errorf("Open(unpatched image): heads %v, want %v", got, imgHeads)
			}
		}
		if err != nil {
			return
		}
		checkVolumes(t, s)
		heads := s.Heads()
		if err := s.Close(); err != nil {
			return
		}
		_, _ = Check(dev) // damage from before the checkpoint is reported, never a panic
		s2, err := Open(dev, Options{NoBackground: true})
		if err != nil {
			t.Fatalf("patches %x: Open after a clean Close: %v", p, err)
		}
		defer s2.Close()
		if got := s2.Heads(); !slices.Equal(got, heads) {
			t.Fatalf("patches %x: heads after Close and Open %v, want %v", p, got, heads)
		}
	})
}

// checkImageKinds fails unless the records at addrs include every kind, a
// relocated data record and a gap standing for several records, so that the
// fixture keeps covering what FORMAT.md describes.
func checkImageKinds(tb testing.TB, dev device.Device, uuid [16]byte, addrs []int64) {
	seen := map[string]int{}
	hb := make([]byte, BlockSize)
	for _, a := range addrs {
		off := a * SectorSize
		if _, err := dev.ReadAt(hb, off&^(BlockSize-1)); err != nil {
			tb.Fatal(err)
		}
		h, err := decodeHeader(hb[off%BlockSize:], uuid)
		if err != nil {
			tb.Fatal(err)
		}
		seen[h.Kind.String()]++
		if h.LFlags&lflagRelocated != 0 {
			seen["relocated "+h.Kind.String()]++
		}
		if h.Kind == KindGap && gapCount(h) > 1 {
			seen["merged gap"]++
		}
	}
	for _, k := range []string{"data", "create", "branch", "delete", "pad", "next", "checkpoint", "gap", "view", "relocated data", "merged gap"} {
		if seen[k] == 0 {
			tb.Errorf("fixture log has no %s record; has %v", k, seen)
		}
	}
	if testing.Verbose() {
		tb.Logf("fixture log records: %v", seen)
	}
}

// diffRanges lists the byte ranges [lo, hi) where a and b differ.
func diffRanges(a, b []byte) []string {
	var out []string
	for i := 0; i < len(a) && i < len(b); {
		if a[i] == b[i] {
			i++
			continue
		}
		j := i
		for j < len(a) && j < len(b) && a[j] != b[j] {
			j++
		}
		out = append(out, fmt.Sprintf("[%d,%d)", i, j))
		i = j
	}
	return out
}

// TestFuzzFixturesDeterministic: the stores the fuzzers start from are the
// same bytes in every process, so an input saved under testdata/fuzz replays
// against what the fuzzer saw.
func TestFuzzFixturesDeterministic(t *testing.T) {
	imgA, _ := recoverImage(t)
	imgB, _ := recoverImage(t)
	a, b := readAll(t, imgA), readAll(t, imgB)
	if !bytes.Equal(a, b) {
		t.Errorf("recoverImage differs between two builds at %v", diffRanges(a, b))
	}
	fa, fb := newStreamFixture(t), newStreamFixture(t)
	for i := range fa.seeds {
		if !bytes.Equal(fa.seeds[i], fb.seeds[i]) {
			t.Errorf("stream seed %d differs between two builds at %v", i, diffRanges(fa.seeds[i], fb.seeds[i]))
		}
	}
}

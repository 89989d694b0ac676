package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"cloudfs/segment/device"
)

// Table tests for the decoders of format v1 (docs/FORMAT.md): every rule a
// decoder enforces, and the sentinel it reports.

// mutated returns a copy of b changed by mut, then resealed by reseal if set.
func mutated(b []byte, mut func([]byte), reseal func([]byte)) []byte {
	b = bytes.Clone(b)
	if mut != nil {
		mut(b)
	}
	if reseal != nil {
		reseal(b)
	}
	return b
}

func put32(off int, v uint32) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint32(b[off:], v) }
}

func put64(off int, v uint64) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint64(b[off:], v) }
}

func flip(off int) func([]byte) { return func(b []byte) { b[off] ^= 0x01 } }

func testSuperblock() *Superblock {
	return &Superblock{Version: FormatVersion, UUID: testUUID, SegmentSize: 4 << 20, Segments: 7,
		DeviceSize: 32 << 20, Created: 1700000000e9, Secret: [32]byte{1, 2, 3, 31: 0xff}}
}

func TestDecodeSuperblock(t *testing.T) {
	good := testSuperblock().Encode()
	tests := []struct {
		name   string
		b      []byte
		reseal bool
		want   error
	}{
		{"valid", good, false, nil},
		{"short", good[:BlockSize-1], false, ErrCorrupt},
		{"empty", nil, false, ErrCorrupt},
		{"all zero", make([]byte, BlockSize), false, ErrNotStore},
		{"wrong magic", mutated(good, flip(0), nil), true, ErrNotStore},
		{"magic without its NUL", mutated(good, func(b []byte) { b[7] = ' ' }, nil), true, ErrNotStore},
		{"version 2", mutated(good, put32(8, 2), nil), true, ErrUnsupportedFormat},
		{"version 2, crc not updated", mutated(good, put32(8, 2), nil), false, ErrUnsupportedFormat},
		{"version 0", mutated(good, put32(8, 0), nil), true, ErrUnsupportedFormat},
		{"version 2^32-1", mutated(good, put32(8, math.MaxUint32), nil), true, ErrUnsupportedFormat},
		{"flipped crc byte", mutated(good, flip(BlockSize-1), nil), false, ErrCorrupt},
		{"flipped uuid byte", mutated(good, flip(24), nil), false, ErrCorrupt},
		{"flipped secret byte", mutated(good, flip(100), nil), false, ErrCorrupt},
		{"sector size 4096", mutated(good, put32(12, 4096), nil), true, ErrCorrupt},
		{"block size 512", mutated(good, put32(16, 512), nil), true, ErrCorrupt},
		{"segment area at 2 MiB", mutated(good, put64(56, 2<<20), nil), true, ErrCorrupt},
		{"segment size 1 MiB", mutated(good, put64(40, 1<<20), nil), true, ErrCorrupt},
		{"segment size 2 GiB", mutated(good, put64(40, 2<<30), nil), true, ErrCorrupt},
		{"segment size not block aligned", mutated(good, put64(40, 4<<20+512), nil), true, ErrCorrupt},
		{"3 segments", mutated(good, put64(48, 3), nil), true, ErrCorrupt},
		{"2^31+1 segments", mutated(good, put64(48, 1<<31+1), nil), true, ErrCorrupt},
		{"segments beyond the device", mutated(good, put64(48, 8), nil), true, ErrCorrupt},
		{"negative device size", mutated(good, put64(64, 1<<63), nil), true, ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			if tc.reseal {
				b = mutated(b, nil, resealSuperblock)
			}
			sb, err := DecodeSuperblock(b)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("DecodeSuperblock(%.128x) = %v, want %v", b, err, tc.want)
			}
			if err == nil && *sb != *testSuperblock() {
				t.Fatalf("DecodeSuperblock(%.128x) = %+v, want %+v", b, *sb, *testSuperblock())
			}
		})
	}
}

func TestDecodeSlot(t *testing.T) {
	want := slot{Generation: 3, BodyAddr: 2048 + 4096, BodyGSeq: 77, BodyChunks: 1, BodyBytes: 900,
		BodyCRC: 0x01020304, ReplayAddr: 2048 + 4000, ReplayGSeq: 70}
	good := want.encode(testUUID)
	reseal := func(b []byte) { resealSlot(b, testUUID) }
	tests := []struct {
		name string
		b    []byte
		want error
		gen  uint64
	}{
		{"valid", good, nil, 3},
		{"never written (all zero)", make([]byte, BlockSize), nil, 0},
		{"short", good[:BlockSize-1], ErrCorrupt, 0},
		{"another store's slot", want.encode([16]byte{0xaa}), ErrCorrupt, 0},
		{"flipped crc byte", mutated(good, flip(BlockSize-2), nil), ErrCorrupt, 0},
		{"flipped replay address byte", mutated(good, flip(48), nil), ErrCorrupt, 0},
		{"torn: second half zero", mutated(good, func(b []byte) { clear(b[2048:]) }, nil), ErrCorrupt, 0},
		{"wrong magic", mutated(good, flip(7), reseal), ErrCorrupt, 0},
		{"zero except the crc", mutated(make([]byte, BlockSize), nil, reseal), ErrCorrupt, 0},
		{"generation 0", mutated(good, put64(8, 0), reseal), ErrCorrupt, 0},
		{"no body chunks", mutated(good, put32(32, 0), reseal), ErrCorrupt, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeSlot(tc.b, testUUID)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("decodeSlot(%.64x) = %v, want %v", tc.b, err, tc.want)
			}
			if err != nil {
				return
			}
			if got.Generation != tc.gen {
				t.Fatalf("decodeSlot(%.64x) = generation %d, want %d", tc.b, got.Generation, tc.gen)
			}
			if tc.gen != 0 && *got != want {
				t.Fatalf("decodeSlot(%.64x) = %+v, want %+v", tc.b, *got, want)
			}
		})
	}
}

// headerCase is a header given as a struct (encoded and sealed with
// testUUID), then optionally changed byte-wise (and resealed).
type headerCase struct {
	name  string
	h     Header
	bytes func([]byte) // applied to the encoded header, which is then resealed
	want  error
}

func (tc *headerCase) encode() []byte {
	b := encodeHeader(&tc.h, testUUID)
	if tc.bytes != nil {
		tc.bytes(b)
		resealHeader(b, testUUID)
	}
	return b
}

func dataHeader(nsect int, present ...int) Header {
	h := Header{Kind: KindData, NSect: uint32(nsect), LBA: 1000, LSN: 5, Epoch: 1, Base: ID{1}, Link: ID{2}, ID: ID{3}, Entropy: ID{4}}
	for _, i := range present {
		h.setPresent(i)
		h.NBody++
	}
	return h
}

func withHeader(h Header, fn func(*Header)) Header {
	fn(&h)
	return h
}

func headerCases() []headerCase {
	d := dataHeader(16, 0, 1, 2, 9)
	zero := Header{Kind: KindData, Flags: FlagZero, NSect: 4096, LBA: 8, LSN: 6, Epoch: 1, Base: ID{1}, Link: ID{2}}
	create := Header{Kind: KindCreate, LSN: 1, Epoch: 1, Aux: 1 << 20, Base: ID{1}, ID: ID{3}, Entropy: ID{4}, LFlags: lflagOwned}
	gap := Header{Kind: KindGap, FirstLSN: 3, LSN: 7, Epoch: 1, Base: ID{1}, Link: ID{2}, LFlags: lflagRelocated, From: 4096}
	view := Header{Kind: KindView, LSN: 8, Epoch: 3, Base: ID{1}, Link: ID{5}, ID: ID{6}, Entropy: ID{7}, LFlags: lflagOwned}
	var cases []headerCase
	for _, h := range sampleHeaders() {
		cases = append(cases, headerCase{name: "valid " + h.Kind.String(), h: h})
	}
	cases = append(cases, []headerCase{
		{name: "valid data, all sectors zero (no body, no flag)", h: dataHeader(8)},
		{name: "valid data, full bitmap", h: withHeader(dataHeader(0), func(h *Header) {
			h.NSect, h.NBody = MaxEntrySectors, MaxEntrySectors
			for i := range h.Bitmap {
				h.Bitmap[i] = 0xff
			}
		})},
		{name: "valid data, extent ending at 2^43", h: withHeader(d, func(h *Header) { h.LBA = maxVolumeSectors - 16 })},
		{name: "valid pad without body", h: Header{Kind: KindPad}},
		{name: "valid gap of one entry", h: withHeader(gap, func(h *Header) { h.FirstLSN = h.LSN })},

		{name: "bad magic", h: d, bytes: flip(0), want: ErrCorrupt},
		{name: "kind 0", h: withHeader(d, func(h *Header) { h.Kind = 0 }), want: ErrCorrupt},
		{name: "kind 10", h: withHeader(d, func(h *Header) { h.Kind = kindMax + 1 }), want: ErrCorrupt},
		{name: "kind 255", h: withHeader(d, func(h *Header) { h.Kind = 255 }), want: ErrCorrupt},
		{name: "record version 3", h: d, bytes: func(b []byte) { b[53] = 3 }, want: ErrUnsupportedFormat},
		{name: "data record of record version 2", h: d, bytes: func(b []byte) { b[53] = 2 }, want: ErrCorrupt},
		{name: "view record of record version 1", h: view, bytes: func(b []byte) { b[53] = 1 }, want: ErrCorrupt},
		{name: "record version 0", h: d, bytes: func(b []byte) { b[53] = 0 }, want: ErrUnsupportedFormat},
		{name: "reserved byte 204 set", h: d, bytes: func(b []byte) { b[204] = 1 }, want: ErrCorrupt},
		{name: "reserved byte 255 set", h: d, bytes: func(b []byte) { b[bitmapOff-1] = 0x80 }, want: ErrCorrupt},
		{name: "body over 2048 sectors", h: Header{Kind: KindPad, NBody: maxBodySectors + 1}, want: ErrCorrupt},

		{name: "data: nsect 0", h: dataHeader(0), want: ErrCorrupt},
		{name: "data: nsect 2049", h: dataHeader(MaxEntrySectors+1, 0), want: ErrCorrupt},
		{name: "data: body shorter than the bitmap says", h: withHeader(d, func(h *Header) { h.NBody-- }), want: ErrCorrupt},
		{name: "data: body longer than the bitmap says", h: withHeader(d, func(h *Header) { h.NBody++ }), want: ErrCorrupt},
		{name: "data: bit beyond the extent", h: dataHeader(8, 0, 8), want: ErrCorrupt},
		{name: "data: last bitmap bit beyond the extent", h: dataHeader(8, 0, MaxEntrySectors-1), want: ErrCorrupt},
		{name: "data: unknown flag", h: withHeader(d, func(h *Header) { h.Flags |= 1 << 1 }), want: ErrCorrupt},
		{name: "data: extent beyond 2^43 sectors", h: withHeader(d, func(h *Header) { h.LBA = maxVolumeSectors - 15 }), want: ErrCorrupt},
		{name: "data: extent wraps around", h: withHeader(d, func(h *Header) { h.LBA = math.MaxUint64 - 3 }), want: ErrCorrupt},

		{name: "valid FlagZero", h: zero},
		{name: "FlagZero with a body", h: withHeader(zero, func(h *Header) { h.NBody = 1 }), want: ErrCorrupt},
		{name: "FlagZero with a bitmap", h: withHeader(zero, func(h *Header) { h.setPresent(0) }), want: ErrCorrupt},
		{name: "FlagZero with a bitmap and a matching body", h: withHeader(zero, func(h *Header) { h.setPresent(0); h.NBody = 1 }), want: ErrCorrupt},
		{name: "FlagZero nsect 0", h: withHeader(zero, func(h *Header) { h.NSect = 0 }), want: ErrCorrupt},
		{name: "FlagZero nsect 2^20", h: withHeader(zero, func(h *Header) { h.NSect = MaxZeroSectors + 1 }), want: ErrCorrupt},
		{name: "FlagZero extent beyond 2^43 sectors", h: withHeader(zero, func(h *Header) { h.LBA = maxVolumeSectors - 1 }), want: ErrCorrupt},

		{name: "create: nsect set", h: withHeader(create, func(h *Header) { h.NSect = 1 }), want: ErrCorrupt},
		{name: "create: flags set", h: withHeader(create, func(h *Header) { h.Flags = FlagZero }), want: ErrCorrupt},
		{name: "create: bitmap set", h: withHeader(create, func(h *Header) { h.setPresent(3) }), want: ErrCorrupt},
		{name: "create: body", h: withHeader(create, func(h *Header) { h.NBody = 1 }), want: ErrCorrupt},
		{name: "branch: body", h: Header{Kind: KindBranch, LSN: 1, NBody: 2}, want: ErrCorrupt},
		{name: "delete: body", h: Header{Kind: KindDelete, Base: ID{1}, NBody: 1}, want: ErrCorrupt},
		{name: "next: body", h: Header{Kind: KindNext, Aux: 1, NBody: 7}, want: ErrCorrupt},
		{name: "pad: bitmap set", h: withHeader(Header{Kind: KindPad, NBody: 3}, func(h *Header) { h.setPresent(0) }), want: ErrCorrupt},
		{name: "checkpoint: nsect set", h: Header{Kind: KindCheckpoint, NBody: 1, NSect: 1}, want: ErrCorrupt},
		{name: "gap: body", h: withHeader(gap, func(h *Header) { h.NBody = 1 }), want: ErrCorrupt},
		{name: "gap: first lsn 0", h: withHeader(gap, func(h *Header) { h.FirstLSN = 0 }), want: ErrCorrupt},
		{name: "gap: first lsn after lsn", h: withHeader(gap, func(h *Header) { h.FirstLSN = h.LSN + 1 }), want: ErrCorrupt},
		{name: "valid view at lsn 2 of epoch 2", h: withHeader(view, func(h *Header) { h.LSN, h.Epoch = 2, 2 })},
		{name: "view: lsn 1", h: withHeader(view, func(h *Header) { h.LSN = 1 }), want: ErrCorrupt},
		{name: "view: epoch 1", h: withHeader(view, func(h *Header) { h.Epoch = 1 }), want: ErrCorrupt},
		{name: "view: aux set", h: withHeader(view, func(h *Header) { h.Aux = 1 << 20 }), want: ErrCorrupt},
		{name: "view: body", h: withHeader(view, func(h *Header) { h.NBody = 1 }), want: ErrCorrupt},
		{name: "view: nsect set", h: withHeader(view, func(h *Header) { h.NSect = 1 }), want: ErrCorrupt},
	}...)
	return cases
}

func TestDecodeHeader(t *testing.T) {
	for _, tc := range headerCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.encode()
			h, err := decodeHeader(b, testUUID)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("decodeHeader(%.256x) = %v, want %v", b, err, tc.want)
			}
			if err == nil && *h != tc.h {
				t.Fatalf("decodeHeader(%.256x) = %+v, want %+v", b, *h, tc.h)
			}
		})
	}
}

func TestDecodeHeaderChecksum(t *testing.T) {
	h := sampleHeaders()[0]
	good := encodeHeader(&h, testUUID)
	tests := []struct {
		name string
		b    []byte
	}{
		{"short", good[:HeaderSize-1]},
		{"another store's header", encodeHeader(&h, [16]byte{0xaa})},
		{"flipped crc byte", mutated(good, flip(4), nil)},
		{"flipped gseq byte", mutated(good, flip(8), nil)},
		{"flipped owner byte", mutated(good, flip(20), nil)},
		{"flipped sum byte", mutated(good, flip(48), nil)},
		{"flipped bitmap byte", mutated(good, flip(HeaderSize-1), nil)},
		{"all zero", make([]byte, HeaderSize)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeHeader(tc.b, testUUID); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeHeader(%.64x) = %v, want %v", tc.b, err, ErrCorrupt)
			}
		})
	}
}

func TestDecodeWireHeader(t *testing.T) {
	for _, tc := range headerCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.encode()
			want := tc.want
			if want == nil && !tc.h.Kind.chained() {
				want = ErrCorrupt // pad, next, checkpoint, delete never travel
			}
			clear(b[4:portableOff]) // a sender zeroes the local fields
			h, err := DecodeWireHeader(b)
			if !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Fatalf("DecodeWireHeader(%.256x) = %v, want %v", b, err, want)
			}
			if err != nil {
				return
			}
			wantH := tc.h
			wantH.GSeq, wantH.Owner, wantH.LFlags, wantH.From = 0, ID{}, 0, 0
			if *h != wantH {
				t.Fatalf("DecodeWireHeader(%.256x) = %+v, want %+v (local fields cleared)", b, *h, wantH)
			}
		})
	}
	t.Run("local bytes must be zero", func(t *testing.T) {
		h := sampleHeaders()[0]
		b := encodeHeader(&h, testUUID)
		clear(b[4:portableOff])
		if _, err := DecodeWireHeader(b); err != nil {
			t.Fatalf("DecodeWireHeader(%.64x) = %v, want nil", b, err)
		}
		for _, i := range []int{4, 8, 20, portableOff - 1} { // hdr crc, gseq, owner, from
			bad := bytes.Clone(b)
			bad[i] = 0xa5
			if _, err := DecodeWireHeader(bad); !errors.Is(err, ErrCorrupt) {
				t.Errorf("DecodeWireHeader with local byte %d set = %v, want ErrCorrupt", i, err)
			}
		}
	})
}

func TestCheckBody(t *testing.T) {
	body := pattern(5*SectorSize, 9)
	h := dataHeader(16, 0, 1, 2, 3, 9)
	h.sealSum(crcOf(body), make([]byte, HeaderSize))
	hb := encodeHeader(&h, testUUID)
	if err := h.checkBody(hb, body); err != nil {
		t.Fatalf("checkBody(valid) = %v, want nil", err)
	}
	tests := []struct {
		name     string
		hdr, bod []byte
	}{
		{"flipped body byte", hb, mutated(body, flip(700), nil)},
		{"flipped id byte (covered by the sum)", mutated(hb, flip(140), nil), body},
		{"flipped source byte", mutated(hb, flip(180), nil), body},
		{"flipped bitmap byte", mutated(hb, flip(HeaderSize-1), nil), body},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.checkBody(tc.hdr, tc.bod); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("checkBody(%.64x) = %v, want %v", tc.hdr[48:], err, ErrCorrupt)
			}
		})
	}
	t.Run("pad bodies are not checked", func(t *testing.T) {
		pad := Header{Kind: KindPad, NBody: 1, Sum: 0x12345678}
		if err := pad.checkBody(encodeHeader(&pad, testUUID), pattern(SectorSize, 1)); err != nil {
			t.Fatalf("pad checkBody = %v, want nil", err)
		}
	})
}

func TestDecodeStreamHeader(t *testing.T) {
	sh := StreamHeader{Base: ID{1, 2}, From: Position{LSN: 9, Version: ID{3}}}
	good := sh.encode()
	reseal := func(b []byte) { binary.LittleEndian.PutUint32(b[508:], crcOf(b[:508])) }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"valid", good, nil},
		{"valid from the start", (&StreamHeader{Base: ID{1}}).encode(), nil},
		{"short", good[:HeaderSize-1], ErrCorrupt},
		{"wrong magic", mutated(good, flip(0), reseal), ErrCorrupt},
		{"version 2", mutated(good, put32(8, 2), reseal), ErrUnsupportedFormat},
		{"version 2, crc not updated", mutated(good, put32(8, 2), nil), ErrUnsupportedFormat},
		{"version 0", mutated(good, put32(8, 0), reseal), ErrUnsupportedFormat},
		{"flipped crc byte", mutated(good, flip(510), nil), ErrCorrupt},
		{"flipped base byte", mutated(good, flip(12), nil), ErrCorrupt},
		{"reserved byte set", mutated(good, func(b []byte) { b[100] = 1 }, reseal), ErrCorrupt},
		{"lsn without version", mutated(good, func(b []byte) { clear(b[40:60]) }, reseal), ErrCorrupt},
		{"version without lsn", mutated(good, put64(32, 0), reseal), ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeStreamHeader(tc.b)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("DecodeStreamHeader(%.64x) = %v, want %v", tc.b, err, tc.want)
			}
			if tc.name == "valid" && *got != sh {
				t.Fatalf("DecodeStreamHeader(%.64x) = %+v, want %+v", tc.b, *got, sh)
			}
		})
	}
}

func TestDecodeCheckpoint(t *testing.T) {
	bodies, nsegs := checkpointSeeds(t)
	good := bodies[len(bodies)-1]
	const segsOff = 8 + 8 + 8 + 4 // magic, generation, next segment sequence, segment count
	tests := []struct {
		name  string
		b     []byte
		nsegs int
		want  error
	}{
		{"valid", good, nsegs, nil},
		{"valid, empty store", bodies[0], nsegs, nil},
		{"empty", nil, nsegs, ErrCorrupt},
		{"bad magic", mutated(good, flip(0), nil), nsegs, ErrCorrupt},
		{"truncated by one byte", good[:len(good)-1], nsegs, ErrCorrupt},
		{"truncated in the segment table", good[:segsOff+30], nsegs, ErrCorrupt},
		{"one trailing byte", append(bytes.Clone(good), 0), nsegs, ErrCorrupt},
		{"store with one segment more", good, nsegs + 1, ErrCorrupt},
		{"segment count 2^32-1", mutated(good, put32(segsOff-4, math.MaxUint32), nil), nsegs, ErrCorrupt},
		{"segment state 4", mutated(good, func(b []byte) { b[segsOff] = 4 }, nil), nsegs, ErrCorrupt},
		{"negative live count", mutated(good, put64(segsOff+1+8, 1<<63), nil), nsegs, ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := decodeCheckpoint(tc.b, tc.nsegs)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("decodeCheckpoint(%.64x, %d) = %v, want %v", tc.b, tc.nsegs, err, tc.want)
			}
			if err == nil && len(st.segs) != tc.nsegs {
				t.Fatalf("decodeCheckpoint(%.64x, %d): %d segments", tc.b, tc.nsegs, len(st.segs))
			}
		})
	}
}

// countingDev counts the writes and syncs that reach a device.
type countingDev struct {
	device.Device
	writes, syncs int
}

func (d *countingDev) WriteAt(p []byte, off int64) (int, error) {
	d.writes++
	return d.Device.WriteAt(p, off)
}

func (d *countingDev) Sync() error {
	d.syncs++
	return d.Device.Sync()
}

func readAll(t *testing.T, dev device.Device) []byte {
	t.Helper()
	b := make([]byte, dev.Size())
	if _, err := dev.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// tornTailStore returns a store whose log ends inside a block: Open would pad
// the tail (a device write). The pad record of the last batch is destroyed.
func tornTailStore(t *testing.T) *device.Mem {
	dev, s := newMemStore(t, 32<<20)
	v, err := s.Create(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, v, pattern(4096, 1), 0)
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	img := dev.CrashClone(device.CrashCfg{UnsyncedPercent: 100})
	s.Close()
	addrs := recordAddrs(t, img, s.sb.UUID, segmentAreaOff, segmentAreaOff+testSegmentSize)
	last := addrs[len(addrs)-1] * SectorSize
	if last%BlockSize == 0 {
		t.Fatalf("last record at %d starts a block; the test needs a pad inside one", last)
	}
	blk := make([]byte, BlockSize)
	rw(t, img, blk, last&^(BlockSize-1), func(b []byte) { b[last%BlockSize] ^= 0xff }) // its magic
	return img
}

// TestOpenNewerFormat: a store of another format version is refused with
// ErrUnsupportedFormat, and Open writes nothing to it, even where a v1 store
// would have had its log tail padded.
func TestOpenNewerFormat(t *testing.T) {
	dev := tornTailStore(t)
	{ // control: the same store at version 1 is written to by Open
		clone := &countingDev{Device: dev.CrashClone(device.CrashCfg{UnsyncedPercent: 100})}
		s, err := Open(clone, Options{NoBackground: true})
		if err != nil {
			t.Fatalf("Open(v1 store with a torn tail) = %v", err)
		}
		if clone.writes == 0 {
			t.Fatalf("Open(v1 store with a torn tail) wrote nothing; the test cannot tell a refusal from a no-op")
		}
		s.Close()
	}
	for _, version := range []uint32{2, 0, math.MaxUint32} {
		blk := make([]byte, BlockSize)
		rw(t, dev, blk, 0, func(b []byte) { put32(8, version)(b); resealSuperblock(b) })
		before := readAll(t, dev)
		cd := &countingDev{Device: dev}
		s, err := Open(cd, Options{NoBackground: true})
		if !errors.Is(err, ErrUnsupportedFormat) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("Open(store of format version %d) = %v, want %v", version, err, ErrUnsupportedFormat)
		}
		if cd.writes != 0 || cd.syncs != 0 || !bytes.Equal(readAll(t, dev), before) {
			t.Fatalf("Open(store of format version %d): %d writes, %d syncs; want the device untouched", version, cd.writes, cd.syncs)
		}
	}
}

// TestOpenNotAStore: a device without the superblock magic is ErrNotStore
// and is not written to.
func TestOpenNotAStore(t *testing.T) {
	mem := device.NewMem(32<<20, BlockSize)
	blk := pattern(BlockSize, 7)
	if _, err := mem.WriteAt(blk, 0); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, mem)
	cd := &countingDev{Device: mem}
	if _, err := Open(cd, Options{NoBackground: true}); !errors.Is(err, ErrNotStore) {
		t.Fatalf("Open(device without a store) = %v, want %v", err, ErrNotStore)
	}
	if cd.writes != 0 || cd.syncs != 0 || !bytes.Equal(readAll(t, mem), before) {
		t.Fatalf("Open(device without a store): %d writes, %d syncs; want the device untouched", cd.writes, cd.syncs)
	}
}

// TestFormatLayout pins the device layout Format writes: the superblock in
// block 0, two zero slots, nothing else.
func TestFormatLayout(t *testing.T) {
	mem := device.NewMem(32<<20, BlockSize)
	sb, err := Format(mem, FormatOptions{SegmentSize: testSegmentSize})
	if err != nil {
		t.Fatal(err)
	}
	b := readAll(t, mem)
	if got, err := DecodeSuperblock(b[:BlockSize]); err != nil || *got != *sb {
		t.Fatalf("DecodeSuperblock(block 0) = %+v, %v; want %+v", got, err, *sb)
	}
	if sb.Segments != (32<<20-segmentAreaOff)/testSegmentSize || sb.SegmentAreaOffset() != 1<<20 {
		t.Fatalf("Format: %d segments at %d, want %d at %d", sb.Segments, sb.SegmentAreaOffset(), (32<<20-segmentAreaOff)/testSegmentSize, 1<<20)
	}
	if !allZero(b[BlockSize:]) {
		t.Fatalf("Format wrote beyond the superblock")
	}
	for _, off := range []int{slotAOff, slotBOff} {
		if sl, err := decodeSlot(b[off:off+BlockSize], sb.UUID); err != nil || sl.Generation != 0 {
			t.Fatalf("decodeSlot(slot at %d after Format) = %+v, %v; want generation 0", off, sl, err)
		}
	}
}

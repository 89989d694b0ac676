package posixshim

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"syscall"
	"testing"
)

// sampleRecords has one record of every kind.
func sampleRecords() []*record {
	return []*record{
		{Kind: recCreate, Ino: 2, Parent: 1, Mode: syscall.S_IFREG | 0o644, UID: 1, GID: 2, Time: 5, Name: "f", Name2: ""},
		{Kind: recCreate, Ino: 3, Parent: 1, Mode: syscall.S_IFLNK | 0o777, Time: -5, Name: "l", Name2: "target/x"},
		{Kind: recLink, Ino: 2, Parent: 1, Time: 6, Name: "g"},
		{Kind: recUnlink, Parent: 1, Time: 7, Name: "g"},
		{Kind: recRename, Parent: 1, Parent2: 1, Flags: renameExchange, Time: 8, Name: "f", Name2: "l"},
		{Kind: recSetattr, Ino: 2, Mask: attrSize | attrMtime, Size: 1 << 40, Mtime: 9, Time: 9},
		{Kind: recMap, Ino: 2, Maps: []chunkMap{{File: 0, Data: 3}, {File: 1 << 20, Data: 1<<32 - 1}}},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range sampleRecords() {
		got, err := decodeRecord(r.encode(nil))
		if r.Kind == recMap || r.Maps == nil {
			// decode makes an empty slice where encode had nil
			if got != nil && len(got.Maps) == 0 {
				got.Maps = r.Maps
			}
		}
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("decodeRecord(encode(%+v)) = %+v, %v", r, got, err)
		}
	}
	if _, err := decodeRecord([]byte{99}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decodeRecord(kind 99) = %v, want ErrCorrupt", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(r.encode(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := decodeRecord(r.encode(nil))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-decode of %+v = %+v, %v", r, again, err)
		}
	})
}

func TestFrames(t *testing.T) {
	var b []byte
	for i, r := range sampleRecords() {
		b = appendFrame(b, 7, uint64(i), r.encode(nil))
	}
	seq := uint64(0)
	for len(b) > 0 {
		p, n, ok := nextFrame(b, 7, seq)
		if !ok {
			t.Fatalf("frame %d did not decode", seq)
		}
		if _, err := decodeRecord(p); err != nil {
			t.Fatal(err)
		}
		b, seq = b[n:], seq+1
	}
	good := appendFrame(nil, 7, 0, []byte{recUnlink, 1, 0, 1, 'x'})
	for i := range good {
		torn := bytes.Clone(good)
		torn[i] ^= 0x40
		if _, _, ok := nextFrame(torn, 7, 0); ok {
			t.Errorf("frame with byte %d flipped decodes", i)
		}
	}
	if _, _, ok := nextFrame(good, 8, 0); ok {
		t.Error("frame of generation 7 decodes as generation 8")
	}
	if _, _, ok := nextFrame(good[:len(good)-1], 7, 0); ok {
		t.Error("short frame decodes")
	}
}

func TestSuperblock(t *testing.T) {
	const size = 256 << 20
	sb, err := newSuperblock(size)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeSuperblock(sb.encode(), size)
	if err != nil || !reflect.DeepEqual(got, sb) {
		t.Fatalf("decodeSuperblock(encode) = %+v, %v; want %+v", got, err, sb)
	}
	if _, err := newSuperblock(4 << 20); !errors.Is(err, ErrTooSmall) {
		t.Errorf("newSuperblock(4 MiB) = %v, want ErrTooSmall", err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		size int64
		want error
	}{
		{"zeros", make([]byte, 512), size, ErrForeign},
		{"ext4-ish", append([]byte("\x53\xef"), make([]byte, 510)...), size, ErrForeign},
		{"other size", sb.encode(), size * 2, ErrCorrupt},
		{"flipped", func() []byte { b := sb.encode(); b[20] ^= 1; return b }(), size, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeSuperblock(tc.b, tc.size); !errors.Is(err, tc.want) {
				t.Errorf("decodeSuperblock = %v, want %v", err, tc.want)
			}
		})
	}
}

func FuzzDecodeSuperblock(f *testing.F) {
	sb, _ := newSuperblock(256 << 20)
	f.Add(sb.encode(), int64(256<<20))
	f.Add(make([]byte, 104), int64(1<<30))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		sb, err := decodeSuperblock(b, size)
		if err == nil && uint64(sb.chunkOff(sb.DataChunks-1))+chunkSize > uint64(size) {
			t.Fatalf("decoded superblock %+v overruns %d", sb, size)
		}
	})
}

// sampleState builds a state through apply, as the journal would.
func sampleState(t testing.TB) *state {
	s := newState(64, 1, 0, 0)
	for _, r := range []*record{
		{Kind: recCreate, Ino: 2, Parent: 1, Mode: syscall.S_IFDIR | 0o755, Time: 2, Name: "d"},
		{Kind: recCreate, Ino: 3, Parent: 2, Mode: syscall.S_IFREG | 0o644, Time: 3, Name: "f"},
		{Kind: recSetattr, Ino: 3, Mask: attrSize, Size: 3 * chunkSize},
		{Kind: recMap, Ino: 3, Maps: []chunkMap{{File: 0, Data: 5}, {File: 2, Data: 9}}},
		{Kind: recLink, Ino: 3, Parent: 1, Time: 4, Name: "hard"},
		{Kind: recCreate, Ino: 4, Parent: 1, Mode: syscall.S_IFLNK | 0o777, Time: 5, Name: "sym", Name2: "d/f"},
	} {
		if err := s.apply(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckpointRoundTrip(t *testing.T) {
	s := sampleState(t)
	b := encodeCheckpoint(s, 42)
	got, gen, err := decodeCheckpoint(b, 64)
	if err != nil || gen != 42 {
		t.Fatalf("decodeCheckpoint = gen %d, %v", gen, err)
	}
	if !reflect.DeepEqual(got.inodes, s.inodes) || got.nextIno != s.nextIno || !reflect.DeepEqual(got.alloc, s.alloc) {
		t.Errorf("decoded state differs")
	}
	b[40] ^= 1
	if _, _, err := decodeCheckpoint(b, 64); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flipped checkpoint: %v, want ErrCorrupt", err)
	}
}

func FuzzDecodeCheckpoint(f *testing.F) {
	f.Add(encodeCheckpoint(sampleState(f), 3))
	f.Add(encodeCheckpoint(newState(16, 0, 0, 0), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, gen, err := decodeCheckpoint(b, 64)
		if err != nil {
			return
		}
		if err := s.check(); err != nil {
			t.Fatalf("decoded state fails check: %v", err)
		}
		if _, _, err := decodeCheckpoint(encodeCheckpoint(s, gen), 64); err != nil {
			t.Fatalf("re-encoded checkpoint: %v", err)
		}
	})
}

// FuzzReplay mounts a namespace whose journal holds the fuzzer's bytes:
// replay must stop cleanly or refuse the
// namespace with ErrCorrupt, never panic or leave a state failing check.
func FuzzReplay(f *testing.F) {
	var valid []byte
	for i, r := range []*record{
		{Kind: recCreate, Ino: 2, Parent: 1, Mode: syscall.S_IFREG | 0o644, Time: 3, Name: "f"},
		{Kind: recSetattr, Ino: 2, Mask: attrSize, Size: 100},
		{Kind: recMap, Ino: 2, Maps: []chunkMap{{File: 0, Data: 1}}},
	} {
		valid = appendFrame(valid, 1, uint64(i), r.encode(nil))
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(appendFrame(nil, 1, 0, []byte{recUnlink, 1, 0, 1, 'x'}))
	f.Fuzz(func(t *testing.T, journal []byte) {
		d := newMemDisk(16 << 20)
		v, err := openVolFS("fuzz", d, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if len(journal) > 1<<20 {
			journal = journal[:1<<20]
		}
		buf := make([]byte, roundUp(uint64(len(journal)), sectorSize))
		copy(buf, journal)
		if len(buf) > 0 {
			if _, err := d.WriteAt(buf, int64(v.sb.JournalOff)); err != nil {
				t.Fatal(err)
			}
		}
		v2, err := openVolFS("fuzz", d, slog.New(slog.DiscardHandler))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("replay refused with %v, want ErrCorrupt", err)
			}
			return
		}
		if err := v2.st.check(); err != nil {
			t.Fatal(err)
		}
	})
}

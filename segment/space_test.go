package segment_test

import (
	"bytes"
	"errors"
	"testing"

	"cloudfs/segment"
	"cloudfs/segment/segtest"
)

// TestOverwriteBeyondFreeSpace writes ten times a volume's size into a store
// that holds the volume only a few times over: with the background running,
// the space the overwrites free must be reclaimed (checkpoint, cleaner) in
// time, so no write fails and every byte reads back.
func TestOverwriteBeyondFreeSpace(t *testing.T) {
	_, st := segtest.NewStore(t, 64<<20, segment.Options{CleanerRate: -1})
	v, err := st.Create(16 << 20)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for round := 0; round < 10; round++ {
		for off := int64(0); off < 16<<20; off += 1 << 20 {
			for i := range buf {
				buf[i] = byte(round + 1)
			}
			buf[0] = byte(off >> 20)
			if _, err := v.WriteAt(buf, off); err != nil {
				t.Fatalf("round %d offset %d: %v", round, off, err)
			}
		}
	}
	got := make([]byte, 1<<20)
	for off := int64(0); off < 16<<20; off += 1 << 20 {
		if _, err := v.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if got[0] != byte(off>>20) || !bytes.Equal(got[1:], bytes.Repeat([]byte{10}, 1<<20-1)) {
			t.Fatalf("offset %d: read %d %d, want %d 10", off, got[0], got[1], off>>20)
		}
	}
}

// TestFullStore fills a store with live data: writes then fail with
// ErrNoSpace (after the background tried to reclaim), and everything
// acknowledged before reads back.
func TestFullStore(t *testing.T) {
	_, st := segtest.NewStore(t, 64<<20, segment.Options{CleanerRate: -1})
	v, err := st.Create(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{7}, 1<<20) // no zero sectors: they would cost nothing
	var n int64
	for ; n < 1<<30; n += 1 << 20 {
		buf[0], buf[1] = byte(n>>20), 1
		if _, err := v.WriteAt(buf, n); err != nil {
			if !errors.Is(err, segment.ErrNoSpace) {
				t.Fatalf("write at %d: %v, want ErrNoSpace", n, err)
			}
			break
		}
	}
	if n == 1<<30 || n < 32<<20 {
		t.Fatalf("store of 64 MiB took %d MiB before ErrNoSpace", n>>20)
	}
	t.Logf("full after %d MiB", n>>20)
	got := make([]byte, 1<<20)
	for off := int64(0); off < n; off += 1 << 20 {
		if _, err := v.ReadAt(got, off); err != nil || got[0] != byte(off>>20) || got[1] != 1 {
			t.Fatalf("offset %d after ErrNoSpace: %v %d", off, err, got[0])
		}
	}
}

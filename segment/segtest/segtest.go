package segtest

import (
	"errors"
	"log/slog"
	"testing"

	"cloudfs/segment"
	"cloudfs/segment/device"
)

// SegmentSize is the segment size Open formats with: the smallest the format
// allows, so that small test devices have many segments and the cleaner work.
const SegmentSize = segment.MinSegmentSize

// Logger returns a logger writing to t's output (shown with -v or on failure).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// Format formats dev as an empty store with segments of segSize bytes (0:
// SegmentSize), failing the test on error.
func Format(t testing.TB, dev device.Device, segSize int64) *segment.Superblock {
	t.Helper()
	if segSize == 0 {
		segSize = SegmentSize
	}
	sb, err := segment.Format(dev, segment.FormatOptions{SegmentSize: segSize})
	if err != nil {
		t.Fatalf("segtest: Format: %v", err)
	}
	return sb
}

// HasStore reports whether dev holds a superblock of this format (of any
// validity other than "no magic").
func HasStore(t testing.TB, dev device.Device) bool {
	t.Helper()
	buf := device.AlignedBuf(segment.BlockSize)
	if _, err := dev.ReadAt(buf, 0); err != nil {
		t.Fatalf("segtest: read superblock: %v", err)
	}
	_, err := segment.DecodeSuperblock(buf)
	return !errors.Is(err, segment.ErrNotStore)
}

// Open opens the store on dev, formatting dev first (with SegmentSize
// segments) if it holds no store. A nil opts.Logger logs to t's output. The
// cleanup it registers closes the store (a store already closed is fine) and
// then checks dev with segment.Check, failing the test with the report's
// problems.
func Open(t testing.TB, dev device.Device, opts segment.Options) *segment.Store {
	t.Helper()
	if !HasStore(t, dev) {
		Format(t, dev, 0)
	}
	if opts.Logger == nil {
		opts.Logger = Logger(t)
	}
	st, err := segment.Open(dev, opts)
	if err != nil {
		t.Fatalf("segtest: Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil && !errors.Is(err, segment.ErrClosed) {
			t.Errorf("segtest: Close: %v", err)
		}
		MustCheck(t, dev)
	})
	return st
}

// MustCheck runs segment.Check on dev (the store must not be open) and fails
// the test, listing every problem, if it reports any. It returns the report.
func MustCheck(t testing.TB, dev device.Device) *segment.Report {
	t.Helper()
	rep, err := segment.Check(dev)
	if err != nil {
		if rep != nil {
			for _, p := range rep.Problems {
				t.Errorf("segtest: check: %s", p)
			}
		}
		t.Fatalf("segtest: Check: %v", err)
	}
	return rep
}

// CheckImage checks an image of dev as it is now, every write kept, while a
// store may still be running on it (Check needs the store closed, an image
// needs nothing). It returns the report, which also says how many segments
// are in use.
func CheckImage(t testing.TB, dev *device.Mem) *segment.Report {
	t.Helper()
	return MustCheck(t, dev.CrashClone(device.CrashCfg{UnsyncedPercent: 100}))
}

// NewStore formats a Mem of size bytes (4096-byte blocks, SegmentSize
// segments) and opens a store on it with opts, as Open does.
func NewStore(t testing.TB, size int64, opts segment.Options) (*device.Mem, *segment.Store) {
	t.Helper()
	dev := device.NewMem(size, 4096)
	return dev, Open(t, dev, opts)
}

package devicetest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"cloudfs/segment/device"
)

// MinBlocks is the smallest device, in blocks, that Run can exercise.
const MinBlocks = 64

// Run runs the conformance suite as subtests of t. open must return a
// fresh device each time it is called: freshly created, so every block
// reads as zeros, at least MinBlocks blocks long, and not shared with any
// other call. open may register cleanups with t (to remove files or detach
// loop devices); Run closes each device it opens, before those cleanups
// run.
func Run(t *testing.T, open func(t *testing.T) device.Device) {
	tests := []struct {
		name string
		fn   func(t *testing.T, dev device.Device)
	}{
		{"Geometry", testGeometry},
		{"UnwrittenReadsZero", testUnwrittenReadsZero},
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"OutOfRange", testOutOfRange},
		{"Unaligned", testUnaligned},
		{"Sync", testSync},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Discard", testDiscard},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, openChecked(t, open))
		})
	}
}

// openChecked opens a device, checks it is big enough for the suite and
// arranges for it to be closed.
func openChecked(t *testing.T, open func(t *testing.T) device.Device) device.Device {
	t.Helper()
	dev := open(t)
	t.Cleanup(func() {
		if err := dev.Close(); err != nil && !errors.Is(err, device.ErrClosed) {
			t.Errorf("Close() = %v", err)
		}
	})
	if bs := dev.BlockSize(); bs <= 0 || dev.Size()/int64(bs) < MinBlocks {
		t.Fatalf("device of %d bytes with block size %d; the suite needs at least %d blocks", dev.Size(), bs, MinBlocks)
	}
	return dev
}

// extent is a named range of a device, in bytes.
type extent struct {
	name string
	off  int64
	n    int
}

// extents returns ranges to exercise on dev: the first blocks, a run of
// many blocks, a middle block and the last blocks.
func extents(dev device.Device) []extent {
	bs, size := dev.BlockSize(), dev.Size()
	return []extent{
		{"first block", 0, bs},
		{"second block", int64(bs), bs},
		{"many blocks", 3 * int64(bs), 17 * bs},
		{"middle block", size / 2 / int64(bs) * int64(bs), bs},
		{"last block", size - int64(bs), bs},
		{"last blocks", size - 8*int64(bs), 8 * bs},
	}
}

func testGeometry(t *testing.T, dev device.Device) {
	bs := dev.BlockSize()
	if bs != 512 && bs != 4096 {
		t.Errorf("BlockSize() = %d, want 512 or 4096", bs)
	}
	if size := dev.Size(); size <= 0 || size%int64(bs) != 0 {
		t.Errorf("Size() = %d, want a positive multiple of BlockSize() %d", size, bs)
	}
}

func testUnwrittenReadsZero(t *testing.T, dev device.Device) {
	for _, e := range extents(dev) {
		buf := device.AlignedBuf(e.n)
		fill(buf, 0xa5)
		readExpect(t, e.name, dev, buf, e.off, make([]byte, e.n))
	}
}

func testRoundTrip(t *testing.T, dev device.Device) {
	for _, e := range extents(dev) {
		want := device.AlignedBuf(e.n)
		pattern(want, e.off, 1 /* seed */)
		writeOK(t, e.name, dev, want, e.off)
		readExpect(t, e.name, dev, device.AlignedBuf(e.n), e.off, want)
	}
}

func testOverwrite(t *testing.T, dev device.Device) {
	bs := dev.BlockSize()
	first := device.AlignedBuf(4 * bs)
	pattern(first, 0, 1 /* seed */)
	writeOK(t, "first write", dev, first, 0)
	second := device.AlignedBuf(2 * bs)
	pattern(second, int64(bs), 2 /* seed */)
	writeOK(t, "overwrite", dev, second, int64(bs))
	want := bytes.Clone(first)
	copy(want[bs:], second)
	readExpect(t, "after overwrite", dev, device.AlignedBuf(4*bs), 0, want)
}

func testOutOfRange(t *testing.T, dev device.Device) {
	bs, size := int64(dev.BlockSize()), dev.Size()
	tests := []struct {
		name string
		off  int64
		n    int
	}{
		{"at size", size, int(bs)},
		{"past size", size + 4*bs, int(bs)},
		{"straddling end", size - bs, 2 * int(bs)},
		{"negative offset", -bs, int(bs)},
	}
	for _, tc := range tests {
		buf := device.AlignedBuf(tc.n)
		if n, err := dev.ReadAt(buf, tc.off); n != 0 || !errors.Is(err, device.ErrOutOfRange) {
			t.Errorf("%s: ReadAt(len %d, %d) = %d, %v, want 0, ErrOutOfRange", tc.name, tc.n, tc.off, n, err)
		}
		if n, err := dev.WriteAt(buf, tc.off); n != 0 || !errors.Is(err, device.ErrOutOfRange) {
			t.Errorf("%s: WriteAt(len %d, %d) = %d, %v, want 0, ErrOutOfRange", tc.name, tc.n, tc.off, n, err)
		}
	}
	readExpect(t, "last block after failed writes", dev, device.AlignedBuf(int(bs)), size-bs, make([]byte, bs))
}

func testUnaligned(t *testing.T, dev device.Device) {
	bs := dev.BlockSize()
	tests := []struct {
		name string
		off  int64
		n    int
	}{
		{"offset 1", 1, bs},
		{"offset half block", int64(bs / 2), bs},
		{"length 1", 0, 1},
		{"length block plus 1", 0, bs + 1},
		{"offset and length", int64(bs) + 7, 3},
	}
	for _, tc := range tests {
		buf := device.AlignedBuf(tc.n)
		if n, err := dev.ReadAt(buf, tc.off); n != 0 || !errors.Is(err, device.ErrUnaligned) {
			t.Errorf("%s: ReadAt(len %d, %d) = %d, %v, want 0, ErrUnaligned", tc.name, tc.n, tc.off, n, err)
		}
		fill(buf, 0xff)
		if n, err := dev.WriteAt(buf, tc.off); n != 0 || !errors.Is(err, device.ErrUnaligned) {
			t.Errorf("%s: WriteAt(len %d, %d) = %d, %v, want 0, ErrUnaligned", tc.name, tc.n, tc.off, n, err)
		}
	}
	readExpect(t, "after failed writes", dev, device.AlignedBuf(2*bs), 0, make([]byte, 2*bs))
}

func testSync(t *testing.T, dev device.Device) {
	if err := dev.Sync(); err != nil {
		t.Errorf("Sync() on a fresh device = %v, want nil", err)
	}
	want := device.AlignedBuf(2 * dev.BlockSize())
	pattern(want, 0, 3 /* seed */)
	writeOK(t, "before sync", dev, want, 0)
	if err := dev.Sync(); err != nil {
		t.Errorf("Sync() after a write = %v, want nil", err)
	}
	readExpect(t, "after sync", dev, device.AlignedBuf(len(want)), 0, want)
}

// writers and rounds size testConcurrentWriters: enough goroutines to
// interleave on two cores, each rewriting its range a few times.
const (
	writers = 8
	rounds  = 4
)

func testConcurrentWriters(t *testing.T, dev device.Device) {
	bs := dev.BlockSize()
	span := int(dev.Size()/writers) / bs * bs // bytes per writer
	n := min(span, 4*bs)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() { writeRounds(t, dev, int64(w*span), n) })
	}
	wg.Wait()
	if err := dev.Sync(); err != nil {
		t.Errorf("Sync() = %v", err)
	}
	for w := range writers {
		wg.Go(func() {
			off := int64(w * span)
			want := device.AlignedBuf(n)
			pattern(want, off, rounds)
			readExpect(t, fmt.Sprintf("writer %d", w), dev, device.AlignedBuf(n), off, want)
		})
	}
	wg.Wait()
}

// writeRounds writes n bytes at off with seeds 1 to rounds, reporting
// errors with t.Errorf (it runs off the test goroutine).
func writeRounds(t *testing.T, dev device.Device, off int64, n int) {
	buf := device.AlignedBuf(n)
	for seed := 1; seed <= rounds; seed++ {
		pattern(buf, off, byte(seed))
		if w, err := dev.WriteAt(buf, off); w != n || err != nil {
			t.Errorf("WriteAt(len %d, %d) = %d, %v, want %d, nil", n, off, w, err, n)
		}
	}
}

func testDiscard(t *testing.T, dev device.Device) {
	d, ok := dev.(device.Discarder)
	if !ok {
		t.Skipf("%T does not implement device.Discarder", dev)
	}
	bs := dev.BlockSize()
	buf := device.AlignedBuf(8 * bs)
	pattern(buf, 0, 4 /* seed */)
	writeOK(t, "before discard", dev, buf, 0)
	if err := d.Discard(0, int64(len(buf))); err != nil {
		t.Fatalf("Discard(0, %d) = %v", len(buf), err)
	}
	if err := d.Discard(1, int64(bs)); !errors.Is(err, device.ErrUnaligned) {
		t.Errorf("Discard(1, %d) = %v, want ErrUnaligned", bs, err)
	}
	if err := d.Discard(dev.Size(), int64(bs)); !errors.Is(err, device.ErrOutOfRange) {
		t.Errorf("Discard(Size(), %d) = %v, want ErrOutOfRange", bs, err)
	}
	// Discarded contents are unspecified, but the range must be writable.
	pattern(buf, 0, 5 /* seed */)
	writeOK(t, "after discard", dev, buf, 0)
	readExpect(t, "after discard", dev, device.AlignedBuf(len(buf)), 0, buf)
}

func testClose(t *testing.T, dev device.Device) {
	if err := dev.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	buf := device.AlignedBuf(dev.BlockSize())
	if _, err := dev.ReadAt(buf, 0); !errors.Is(err, device.ErrClosed) {
		t.Errorf("ReadAt after Close = %v, want ErrClosed", err)
	}
	if _, err := dev.WriteAt(buf, 0); !errors.Is(err, device.ErrClosed) {
		t.Errorf("WriteAt after Close = %v, want ErrClosed", err)
	}
	if err := dev.Sync(); !errors.Is(err, device.ErrClosed) {
		t.Errorf("Sync after Close = %v, want ErrClosed", err)
	}
	if err := dev.Close(); !errors.Is(err, device.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

// writeOK writes p at off and reports any failure.
func writeOK(t *testing.T, what string, dev device.Device, p []byte, off int64) {
	t.Helper()
	if n, err := dev.WriteAt(p, off); n != len(p) || err != nil {
		t.Errorf("%s: WriteAt(len %d, %d) = %d, %v, want %d, nil", what, len(p), off, n, err, len(p))
	}
}

// readExpect reads len(buf) bytes at off into buf and compares them with
// want, reporting the first difference.
func readExpect(t *testing.T, what string, dev device.Device, buf []byte, off int64, want []byte) {
	t.Helper()
	n, err := dev.ReadAt(buf, off)
	if n != len(buf) || err != nil {
		t.Errorf("%s: ReadAt(len %d, %d) = %d, %v, want %d, nil", what, len(buf), off, n, err, len(buf))
		return
	}
	if i := firstDiff(buf, want); i >= 0 {
		t.Errorf("%s: ReadAt(len %d, %d): byte %d (device offset %d) = %#02x, want %#02x",
			what, len(buf), off, i, off+int64(i), buf[i], want[i])
	}
}

// firstDiff returns the index of the first byte where a and b differ, or
// -1 if they are equal.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// pattern fills p, destined for device offset off, with bytes that differ
// per 8-byte word, per offset and per seed, so misplaced or stale data shows.
func pattern(p []byte, off int64, seed byte) {
	var w [8]byte
	for i := 0; i < len(p); i += 8 {
		binary.LittleEndian.PutUint64(w[:], uint64(off+int64(i))*0x9e3779b97f4a7c15^uint64(seed)*0xff51afd7ed558ccd)
		copy(p[i:], w[:])
	}
}

// fill sets every byte of p to b.
func fill(p []byte, b byte) {
	for i := range p {
		p[i] = b
	}
}

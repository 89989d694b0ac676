package device_test

import (
	"bytes"
	"strconv"
	"testing"
	"unsafe"

	"cloudfs/segment/device"
)

func itoa(i int) string { return strconv.Itoa(i) }

// filled returns an aligned buffer of n bytes set to b.
func filled(n int, b byte) []byte {
	buf := device.AlignedBuf(n)
	for i := range buf {
		buf[i] = b
	}
	return buf
}

// mustWrite writes p at off or fails the test.
func mustWrite(t *testing.T, dev device.Device, p []byte, off int64) {
	t.Helper()
	if n, err := dev.WriteAt(p, off); n != len(p) || err != nil {
		t.Fatalf("WriteAt(len %d, %d) = %d, %v", len(p), off, n, err)
	}
}

// mustRead reads n bytes at off or fails the test.
func mustRead(t *testing.T, dev device.Device, off int64, n int) []byte {
	t.Helper()
	buf := device.AlignedBuf(n)
	if got, err := dev.ReadAt(buf, off); got != n || err != nil {
		t.Fatalf("ReadAt(len %d, %d) = %d, %v", n, off, got, err)
	}
	return buf
}

// mustSync syncs dev or fails the test.
func mustSync(t *testing.T, dev device.Device) {
	t.Helper()
	if err := dev.Sync(); err != nil {
		t.Fatalf("Sync() = %v", err)
	}
}

// isAll reports whether every byte of p is b.
func isAll(p []byte, b byte) bool {
	return bytes.Count(p, []byte{b}) == len(p)
}

// uintptrOf returns the address of p's first byte.
func uintptrOf(p []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(p))) }

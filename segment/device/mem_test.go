package device_test

import (
	"fmt"
	"testing"

	"cloudfs/segment/device"
)

func TestNewMemPanics(t *testing.T) {
	tests := []struct {
		size      int64
		blockSize int
	}{
		{4096, 1024},
		{4096, 0},
		{4097, 4096},
		{-4096, 4096},
		{1000, 512},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d/%d", tc.size, tc.blockSize), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("NewMem(%d, %d) did not panic", tc.size, tc.blockSize)
				}
			}()
			device.NewMem(tc.size, tc.blockSize)
		})
	}
}

// TestMemLarge writes at both ends of a 4 GiB Mem, which must not allocate
// the space in between.
func TestMemLarge(t *testing.T) {
	const size = 4 << 30
	m := device.NewMem(size, 4096)
	mustWrite(t, m, filled(4096, 1), 0)
	mustWrite(t, m, filled(4096, 2), size-4096)
	mustSync(t, m)
	if got := mustRead(t, m, size-4096, 4096); !isAll(got, 2) {
		t.Errorf("last block of 4 GiB Mem not read back")
	}
	if got := mustRead(t, m, size/2, 1<<20); !isAll(got, 0) {
		t.Errorf("unwritten middle of 4 GiB Mem not zeros")
	}
}

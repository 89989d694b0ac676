package device

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"
)

func TestBlockDevBlockSize(t *testing.T) {
	tests := []struct {
		logical, physical int
		want              int // 0: error
	}{
		{512, 512, 512},
		{512, 4096, 512}, // 512e: reads at 512 work; the store aligns writes itself
		{4096, 4096, 4096},
		{512, 1024, 512},
		{2048, 2048, 2048},
		{512, 65536, 512},
		{8192, 8192, 0},
		{256, 4096, 0},
		{1536, 4096, 0},
		{4096, 512, 0},
	}
	for _, tc := range tests {
		got, err := blockDevBlockSize(tc.logical, tc.physical)
		if got != tc.want || (err != nil) != (tc.want == 0) {
			t.Errorf("blockDevBlockSize(%d, %d) = %d, %v, want %d", tc.logical, tc.physical, got, err, tc.want)
		}
	}
}

// TestOpenError checks the hint given when a file system rejects O_DIRECT.
// ext4 and, since Linux 6.6, tmpfs both accept O_DIRECT, so the error is
// built directly rather than provoked.
func TestOpenError(t *testing.T) {
	pathErr := func(errno syscall.Errno) error {
		return &fs.PathError{Op: "open", Path: "/x", Err: errno}
	}
	tests := []struct {
		name     string
		err      error
		direct   bool
		wantHint bool
	}{
		{"EINVAL direct", pathErr(syscall.EINVAL), true, true},
		{"EINVAL buffered", pathErr(syscall.EINVAL), false, false},
		{"ENOENT direct", pathErr(syscall.ENOENT), true, false},
	}
	for _, tc := range tests {
		got := openError(tc.err, tc.direct)
		if hint := strings.Contains(got.Error(), "Options.Buffered"); hint != tc.wantHint {
			t.Errorf("%s: openError = %q, want hint %v", tc.name, got, tc.wantHint)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: openError = %v, does not wrap %v", tc.name, got, tc.err)
		}
	}
}

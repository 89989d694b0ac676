package posixshim

import (
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"cloudfs/segment"
)

func TestToErrno(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("write: %w", segment.ErrNoSpace), syscall.ENOSPC},
		{ErrNoSpace, syscall.ENOSPC},
		{fmt.Errorf("volume x: %w", segment.ErrReadOnly), syscall.EROFS},
		{fmt.Errorf("volume x is a raw device: %w", ErrInUse), syscall.EBUSY},
		{fmt.Errorf("volume x: %w", segment.ErrNotFound), syscall.ENOENT},
		{ErrNotFound, syscall.ENOENT},
		{ErrForeign, syscall.EMEDIUMTYPE},
		{ErrUnsupported, syscall.EMEDIUMTYPE},
		{fmt.Errorf("checkpoint: %w", ErrCorrupt), syscall.EUCLEAN},
		{fmt.Errorf("rename: %w", syscall.ENOTEMPTY), syscall.ENOTEMPTY},
		{fmt.Errorf("device: %w", segment.ErrDeviceFailed), syscall.EIO},
		{io.ErrUnexpectedEOF, syscall.EIO},
		{errors.Join(segment.ErrNoSpace, io.EOF), syscall.ENOSPC},
	} {
		if got := toErrno(tc.err); got != tc.want {
			t.Errorf("toErrno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

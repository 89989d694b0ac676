package ublk

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
)

type errnoError struct{ en syscall.Errno }

func (e errnoError) Error() string        { return "store says " + e.en.Error() }
func (e errnoError) Errno() syscall.Errno { return e.en }

func TestErrnoOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"nil", nil, 0},
		{"plain", errors.New("boom"), syscall.EIO},
		{"errno", syscall.ENOSPC, syscall.ENOSPC},
		{"wrapped errno", fmt.Errorf("segment: no space: %w", syscall.ENOSPC), syscall.ENOSPC},
		{"joined", fmt.Errorf("%w: %w", errors.New("segment: full"), syscall.ENOSPC), syscall.ENOSPC},
		{"Errno method", fmt.Errorf("x: %w", errnoError{syscall.EROFS}), syscall.EROFS},
		{"zero errno", syscall.Errno(0), syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errnoOf(tc.err, nil); got != tc.want {
				t.Fatalf("errnoOf(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

var errFull = errors.New("store: full")

func TestErrnoHook(t *testing.T) {
	hook := func(err error) syscall.Errno {
		if errors.Is(err, errFull) {
			return syscall.ENOSPC
		}
		return 0
	}
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{fmt.Errorf("volume 3: %w", errFull), syscall.ENOSPC},
		{errors.New("other"), syscall.EIO},
		{fmt.Errorf("x: %w", syscall.EROFS), syscall.EROFS},
		{nil, 0},
	} {
		if got := errnoOf(tc.err, hook); got != tc.want {
			t.Errorf("errnoOf(%v, hook) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

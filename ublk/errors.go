package ublk

import (
	"errors"
	"syscall"
)

// Sentinel errors. Errors from the kernel keep their unix.Errno in the chain
// (errors.Is(err, unix.EBUSY)), wrapped with the command that failed.
var (
	// ErrUnavailable: this kernel has no ublk (no /dev/ublk-control: the
	// ublk_drv module is not loaded or not built) or lacks a feature the
	// driver needs (UBLK_F_CMD_IOCTL_ENCODE, GET_FEATURES).
	ErrUnavailable = errors.New("ublk: not available on this kernel")
	// ErrInvalidConfig: a Config that Create or Recover cannot use.
	ErrInvalidConfig = errors.New("ublk: invalid config")
	// ErrTimeout: a control command or the teardown of the queues did not
	// finish within Config.Timeout. What was left behind is in the error's
	// text and in the doc of the call that returned it.
	ErrTimeout = errors.New("ublk: timed out")
	// ErrClosed: the device was already deleted or detached.
	ErrClosed = errors.New("ublk: device closed")
	// ErrNotRecoverable: Recover was asked for a device that was created
	// without UBLK_F_USER_RECOVERY, or that does not match the Config.
	ErrNotRecoverable = errors.New("ublk: device cannot be recovered")
	// ErrQueue: a queue stopped serving because of an unexpected error of
	// its ring; Device.Err wraps it with the cause.
	ErrQueue = errors.New("ublk: queue failed")
)

// errnoOf is the one place where a backend's error becomes the errno an IO
// completes with, as the block layer reports it to the reader or writer:
//
//   - nil: success;
//   - Config.Errno, if set and it returns non-zero for err: its result
//     (cmd maps the store's sentinels there, e.g. segment.ErrNoSpace to ENOSPC);
//   - an error with a syscall.Errno in its chain (errors.As): that errno,
//     e.g. fmt.Errorf("%w: %w", segment.ErrNoSpace, syscall.ENOSPC);
//   - an error with an Errno() syscall.Errno method in its chain: its result;
//   - anything else: EIO.
//
// The block layer passes EIO, ENOSPC, EOPNOTSUPP, ETIMEDOUT, ENOLINK,
// EREMOTEIO, EBADE, ENODATA, EILSEQ, ENOMEM, EBUSY and EAGAIN through to the
// caller; any other errno reaches it as EIO (errno_to_blk_status).
func errnoOf(err error, hook func(error) syscall.Errno) syscall.Errno {
	if err == nil {
		return 0
	}
	if hook != nil {
		if en := hook(err); en != 0 {
			return en
		}
	}
	var en syscall.Errno
	if errors.As(err, &en) && en != 0 {
		return en
	}
	var ec interface{ Errno() syscall.Errno }
	if errors.As(err, &ec) && ec.Errno() != 0 {
		return ec.Errno()
	}
	return syscall.EIO
}

package ublk

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Delete stops the device and removes it: STOP_DEV (the kernel removes
// /dev/ublkbN; IO still in flight completes first, later IO fails with
// EIO, and every fetch is aborted so the queues stop), then the queues,
// then DEL_DEV. It never waits longer than about three times
// Config.Timeout in all:
//
//   - STOP_DEV stuck (a backend that never answers holds the disk's removal):
//     the queues are forced down, which makes the kernel fail the stuck
//     requests, and the removal goes on.
//   - queues that do not stop: their memory and /dev/ublkcN are left to the
//     process (leaked, never freed under a backend that may still use them),
//     and the error wraps ErrTimeout.
//   - DEL_DEV stuck: DEL_DEV waits until nobody holds /dev/ublkbN open. The
//     command is cancelled and the error wraps ErrTimeout; the kernel has
//     already marked the device deleted and frees its id when the last
//     opener closes.
//
// The Backend is not used after Delete returns, unless the error wraps
// ErrTimeout. Delete or Detach a second time returns ErrClosed.
func (d *Device) Delete() error {
	if !d.markClosed() {
		return ErrClosed
	}
	defer d.m.devices.Dec()
	stopErr := d.ctl.simple(UBLK_U_CMD_STOP_DEV, d.id, 0)
	qErr := d.stopQueues(stopErr == nil)
	delErr := d.ctl.simple(UBLK_U_CMD_DEL_DEV, d.id, 0)
	if delErr == nil {
		d.log.Info("device deleted")
	}
	if errors.Is(delErr, ErrTimeout) {
		delErr = fmt.Errorf("%w (device %d still open: its id is freed at the last close)", delErr, d.id)
	}
	if stopErr != nil && delErr == nil && qErr == nil {
		d.log.Warn("stop device failed, removal went through", "err", stopErr)
		stopErr = nil
	}
	return errors.Join(stopErr, qErr, delErr)
}

// Detach stops serving the device but leaves it in the kernel, as a crash
// would, for a later Recover (in this or another process): requests the
// backend holds are completed and committed first; requests that arrive
// after are held by the kernel (UBLK_F_USER_RECOVERY) until Recover, or
// failed with EIO if the device was created with NoRecovery. The Backend is
// not used after Detach returns nil.
func (d *Device) Detach() error {
	if !d.markClosed() {
		return ErrClosed
	}
	d.m.devices.Dec()
	err := d.stopQueues(true)
	if err == nil {
		d.log.Info("device detached")
	}
	return err
}

func (d *Device) markClosed() bool {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.closed {
		return false
	}
	d.closed = true
	return true
}

// stopQueues makes the queues stop, gracefully first if asked (once the
// backend has returned every request), then by force (at once), each within
// the timeout, and closes /dev/ublkcN once nothing uses it.
func (d *Device) stopQueues(graceful bool) error {
	if graceful {
		for _, q := range d.qs {
			q.quit.Store(true)
			q.kick()
		}
		if d.waitDone() {
			return d.closeChar()
		}
		d.log.Warn("queues still busy: forcing them down", "timeout", d.timeout)
	}
	for _, q := range d.qs {
		q.force.Store(true)
		q.kick()
	}
	if !d.waitDone() {
		return fmt.Errorf("ublk: dev %d: queues did not stop in %v: %w", d.id, d.timeout, ErrTimeout)
	}
	return d.closeChar()
}

// waitDone waits up to the timeout for every queue to stop.
func (d *Device) waitDone() bool {
	t := time.NewTimer(d.timeout)
	defer t.Stop()
	select {
	case <-d.done:
		return true
	case <-t.C:
		return false
	}
}

// closeChar closes /dev/ublkcN once no read is copying through it; if one
// is still stuck in the backend, the descriptor is left open (closing it
// could let the number be reused under the late copy).
func (d *Device) closeChar() error {
	idle := make(chan struct{})
	go func() { d.readers.Wait(); close(idle) }()
	t := time.NewTimer(d.timeout)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
		return fmt.Errorf("ublk: dev %d: reads still in the backend after %v, %s left open: %w",
			d.id, d.timeout, d.CharPath(), ErrTimeout)
	}
	if err := unix.Close(d.charFd); err != nil {
		return fmt.Errorf("ublk: close %s: %w", d.CharPath(), err)
	}
	return nil
}

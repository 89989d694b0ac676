package ioring

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// A Waker wakes a goroutine blocked in SubmitAndWait from any other
// goroutine. It is an eventfd: the ring's owner keeps an IORING_OP_READ of it
// armed with PrepareWake, and Wake writes to the eventfd, which completes that
// read. The completion (Res 8) both ends the wait and tells the owner to look
// at whatever the waking goroutines left for it; the owner then arms the read
// again. Wakes between two reads coalesce into one completion, and a Wake
// while no read is armed is not lost: the next armed read completes at once.
//
// This is the mechanism of choice over IORING_REGISTER_EVENTFD (which signals
// in the other direction, from ring to eventfd) and IORING_OP_MSG_RING (which
// needs a second ring per waking goroutine).
type Waker struct {
	fd  int
	buf []byte // the 8-byte counter the armed read fills; heap memory, never moves
}

// NewWaker creates a Waker. Close it after the ring that reads it is closed.
func NewWaker() (*Waker, error) {
	// Blocking on purpose: io_uring returns EAGAIN for a read of an
	// O_NONBLOCK eventfd instead of waiting for it to become readable.
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("ioring: eventfd: %w", err)
	}
	return &Waker{fd: fd, buf: make([]byte, 8)}, nil
}

// Wake makes the armed (or the next armed) read of w complete. It never
// blocks and is safe from any goroutine.
func (w *Waker) Wake() error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(w.fd, one[:]); err != nil {
		return fmt.Errorf("ioring: wake: %w", err)
	}
	return nil
}

// Fd is the eventfd's descriptor.
func (w *Waker) Fd() int { return w.fd }

// Close closes the eventfd.
func (w *Waker) Close() error {
	if err := unix.Close(w.fd); err != nil {
		return fmt.Errorf("ioring: close eventfd: %w", err)
	}
	return nil
}

// PrepareWake arms a read of w's eventfd: its completion, with userData,
// arrives once Wake has been called. Arm at most one read of a Waker at a
// time (they share w's buffer).
func (r *Ring) PrepareWake(w *Waker, userData uint64) error {
	return r.PrepareRead(w.fd, w.buf, -1, userData)
}

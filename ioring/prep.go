package ioring

import (
	"sync/atomic"
	"unsafe"
)

// Buffers handed to Prepare… calls belong to the kernel until the
// operation's completion is reaped: the caller must keep them referenced and
// must not touch them in between. They must not live on a goroutine stack
// (stacks move); the ring retains each buffer in its SQE slot, which makes
// the compiler allocate it on the heap, and memory from mmap is fine too.

// next returns the next free SQE, zeroed, and its slot, or ErrSQFull.
func (r *Ring) next() (*sqe, uint32, error) {
	if r.fd < 0 {
		return nil, 0, ErrClosed
	}
	if r.sqLocal-atomic.LoadUint32(r.sqHead) >= r.sqEntries {
		return nil, 0, ErrSQFull
	}
	idx := r.sqLocal & *r.sqMask
	p := unsafe.Add(r.sqes, uintptr(idx)*uintptr(r.sqeBytes()))
	clear(unsafe.Slice((*byte)(p), r.sqeBytes()))
	*(*uint32)(unsafe.Add(r.sqArray, uintptr(idx)*4)) = idx
	r.sqLocal++
	return (*sqe)(p), idx, nil
}

// addr returns the address of b's first byte, or 0 for an empty b.
func addr(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}

// PrepareNop queues an IORING_OP_NOP, whose completion has Res 0.
func (r *Ring) PrepareNop(userData uint64) error {
	s, _, err := r.next()
	if err != nil {
		return err
	}
	s.Opcode, s.UserData = IORING_OP_NOP, userData
	return nil
}

// PrepareRead queues pread(fd, buf, off): Res is the byte count. off -1
// reads at the file position (pipes, eventfds).
func (r *Ring) PrepareRead(fd int, buf []byte, off int64, userData uint64) error {
	return r.prepareRW(IORING_OP_READ, fd, buf, off, userData)
}

// PrepareWrite queues pwrite(fd, buf, off): Res is the byte count.
func (r *Ring) PrepareWrite(fd int, buf []byte, off int64, userData uint64) error {
	return r.prepareRW(IORING_OP_WRITE, fd, buf, off, userData)
}

func (r *Ring) prepareRW(op uint8, fd int, buf []byte, off int64, userData uint64) error {
	s, idx, err := r.next()
	if err != nil {
		return err
	}
	s.Opcode, s.Fd, s.UserData = op, int32(fd), userData
	s.Off, s.Addr, s.Len = uint64(off), addr(buf), uint32(len(buf))
	r.pins[idx] = buf
	return nil
}

// PrepareFsync queues fsync(fd), or fdatasync(fd) when datasync is set.
func (r *Ring) PrepareFsync(fd int, datasync bool, userData uint64) error {
	s, _, err := r.next()
	if err != nil {
		return err
	}
	s.Opcode, s.Fd, s.UserData = IORING_OP_FSYNC, int32(fd), userData
	if datasync {
		s.OpFlags = IORING_FSYNC_DATASYNC
	}
	return nil
}

// PrepareUringCmd queues an IORING_OP_URING_CMD: the driver behind fd runs
// command cmdOp with payload cmd, copied into the SQE's command area (at most
// CmdSize bytes on an SQE128 ring, CmdSize64 otherwise: else ErrCmdTooLong).
// Memory that the payload points to is the caller's to keep valid until the
// completion. Res is the driver's result.
func (r *Ring) PrepareUringCmd(fd int, cmdOp uint32, cmd []byte, userData uint64) error {
	limit := CmdSize64
	if r.sqe128 {
		limit = CmdSize
	}
	if len(cmd) > limit {
		return ErrCmdTooLong
	}
	s, _, err := r.next()
	if err != nil {
		return err
	}
	s.Opcode, s.Fd, s.UserData = IORING_OP_URING_CMD, int32(fd), userData
	s.Off = uint64(cmdOp) // cmd_op is the low half of the off union; __pad1 stays 0
	copy(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(s), sqeCmdOffset)), limit), cmd)
	return nil
}

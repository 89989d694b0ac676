// Package ioring is cloudfs's own binding to Linux io_uring: ring setup and
// teardown (the SQ and CQ rings and the SQE array mapped into the process,
// 128-byte SQEs with IORING_SETUP_SQE128), SQE and CQE encoding,
// IORING_OP_URING_CMD with its 80-byte command area, read, write and fsync,
// a Waker that lets other goroutines wake the ring's owner, and batching:
// callers queue many operations with Prepare… calls and hand them to the
// kernel with one Submit or SubmitAndWait.
//
// # Usage
//
//	r, err := ioring.New(ioring.Params{Entries: 64, SQE128: true})
//	...
//	defer r.Close()
//	r.PrepareWrite(fd, buf, off, 1) // user data 1
//	r.PrepareFsync(fd, true, 2)     // fdatasync, user data 2
//	r.SubmitAndWait(2)              // one io_uring_enter for both
//	cqes := make([]ioring.CQE, 8)
//	for _, c := range cqes[:r.Reap(cqes)] {
//		if err := c.Err(); err != nil { ... } // a syscall.Errno
//	}
//
// A full submission queue makes Prepare… return ErrSQFull: submit, then
// prepare again. Completions are never dropped: the rings are set up so
// that the kernel holds overflowing CQEs (IORING_FEAT_NODROP) and keeps
// submitting a batch past a failing SQE (IORING_SETUP_SUBMIT_ALL). Kernel
// errors are unix.Errno values, wrapped: test them with errors.Is.
//
// # Waking a ring
//
// A goroutine blocked in SubmitAndWait is woken from elsewhere with a Waker,
// an eventfd: the owner keeps an IORING_OP_READ of it armed (PrepareWake) and
// another goroutine calls Wake, which completes that read. Wakes coalesce;
// none is lost while no read is armed. SubmitAndWaitTimeout bounds a wait
// (IORING_ENTER_EXT_ARG).
//
// # Memory
//
// Buffers belong to the kernel from Prepare… until their completion is
// reaped. They must be heap or mmap memory (goroutine stacks move); the
// ring retains each in its SQE slot, which keeps it on the heap.
//
// # Status
//
// The subset ublk needs is here and tested on the host kernel (nop,
// read/write/fsync against a file, batches, wake-ups, a full SQ, CQ
// overflow, errno results, timed waits). Not here: registered files and
// buffers, SQPOLL, linked SQEs, multishot, 32-byte CQEs.
//
// # Rules
//
// ioring imports only the standard library and golang.org/x/sys/unix. It sits
// beneath every other package that does IO, so it must never import another
// cloudfs package or a third-party module, never know what a ublk command or a
// store entry means, and never start goroutines or lock OS threads behind the
// caller's back: the thread that owns a ring is the caller's choice (ublk
// needs one locked thread per queue). deps_test.go at the repository root
// checks the imports.
package ioring

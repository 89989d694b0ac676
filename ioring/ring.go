package ioring

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxEntries is the kernel's IORING_MAX_ENTRIES: the largest SQ a ring can have.
const maxEntries = 32768

// Params configure a ring.
type Params struct {
	// Entries is the size of the submission queue; the kernel rounds it up
	// to a power of two. 1 to 32768.
	Entries int
	// CQEntries is the size of the completion queue; 0 means twice the SQ
	// (the kernel's default). It must not be below Entries.
	CQEntries int
	// SQE128 selects 128-byte SQEs, whose IORING_OP_URING_CMD payload is 80
	// bytes (ublk needs it for its control and queue commands).
	SQE128 bool
}

func (p Params) validate() error {
	switch {
	case p.Entries < 1 || p.Entries > maxEntries:
		return fmt.Errorf("%w: entries %d not in [1, %d]", ErrInvalidParams, p.Entries, maxEntries)
	case p.CQEntries != 0 && p.CQEntries < p.Entries:
		return fmt.Errorf("%w: cq entries %d below entries %d", ErrInvalidParams, p.CQEntries, p.Entries)
	case p.CQEntries > 2*maxEntries:
		return fmt.Errorf("%w: cq entries %d above %d", ErrInvalidParams, p.CQEntries, 2*maxEntries)
	}
	return nil
}

// A Ring is one io_uring instance: a submission queue whose SQEs are
// prepared with the Prepare… methods and handed to the kernel by Submit or
// SubmitAndWait, and a completion queue read with Reap.
//
// A Ring is not safe for concurrent use: one goroutine (for ublk, one locked
// OS thread) owns it. Only a Waker may be used from other goroutines. The
// Ring starts no goroutines and locks no threads.
type Ring struct {
	fd       int
	features uint32
	sqe128   bool

	sqRing, cqRing, sqeMem []byte

	sqHead, sqTail, sqMask *uint32
	sqArray                unsafe.Pointer
	sqEntries              uint32
	sqes                   unsafe.Pointer
	sqLocal                uint32 // tail including prepared, unpublished SQEs

	cqHead, cqTail, cqMask *uint32
	cqEntries              uint32
	cqes                   unsafe.Pointer

	// pins holds the buffer of the last SQE prepared in each slot. It keeps
	// buffers reachable at least until their slot is reused, and makes the
	// compiler allocate them on the heap, where they never move.
	pins [][]byte
}

// New sets up a ring and maps its queues. Errors are the kernel's errno
// (ENOMEM, EPERM under a seccomp or sysctl ban, ENOSYS without io_uring),
// wrapped, or ErrInvalidParams.
func New(p Params) (*Ring, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	kp := params{Flags: IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL}
	if p.SQE128 {
		kp.Flags |= IORING_SETUP_SQE128
	}
	if p.CQEntries != 0 {
		kp.Flags |= IORING_SETUP_CQSIZE
		kp.CqEntries = uint32(p.CQEntries)
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(p.Entries), uintptr(unsafe.Pointer(&kp)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("ioring: io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd), features: kp.Features, sqe128: p.SQE128}
	if err := r.mmap(&kp); err != nil {
		r.unmap()
		unix.Close(r.fd)
		return nil, err
	}
	r.pins = make([][]byte, r.sqEntries)
	return r, nil
}

// mmap maps the SQ ring, the CQ ring (the same mapping with
// IORING_FEAT_SINGLE_MMAP) and the SQE array, and points r's fields into them.
func (r *Ring) mmap(kp *params) error {
	sqSize := int(kp.SqOff.Array + kp.SqEntries*4)
	cqSize := int(kp.CqOff.Cqes + kp.CqEntries*cqeSize)
	single := kp.Features&IORING_FEAT_SINGLE_MMAP != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	var err error
	if r.sqRing, err = unix.Mmap(r.fd, IORING_OFF_SQ_RING, sqSize, prot, flags); err != nil {
		return fmt.Errorf("ioring: mmap sq ring: %w", err)
	}
	r.cqRing = r.sqRing
	if !single {
		if r.cqRing, err = unix.Mmap(r.fd, IORING_OFF_CQ_RING, cqSize, prot, flags); err != nil {
			return fmt.Errorf("ioring: mmap cq ring: %w", err)
		}
	}
	if r.sqeMem, err = unix.Mmap(r.fd, IORING_OFF_SQES, int(kp.SqEntries)*r.sqeBytes(), prot, flags); err != nil {
		return fmt.Errorf("ioring: mmap sqes: %w", err)
	}
	sq, cq := unsafe.Pointer(&r.sqRing[0]), unsafe.Pointer(&r.cqRing[0])
	r.sqHead = (*uint32)(unsafe.Add(sq, kp.SqOff.Head))
	r.sqTail = (*uint32)(unsafe.Add(sq, kp.SqOff.Tail))
	r.sqMask = (*uint32)(unsafe.Add(sq, kp.SqOff.RingMask))
	r.sqArray = unsafe.Add(sq, kp.SqOff.Array)
	r.sqEntries = kp.SqEntries
	r.sqLocal = atomic.LoadUint32(r.sqTail)
	r.sqes = unsafe.Pointer(&r.sqeMem[0])
	r.cqHead = (*uint32)(unsafe.Add(cq, kp.CqOff.Head))
	r.cqTail = (*uint32)(unsafe.Add(cq, kp.CqOff.Tail))
	r.cqMask = (*uint32)(unsafe.Add(cq, kp.CqOff.RingMask))
	r.cqEntries = kp.CqEntries
	r.cqes = unsafe.Add(cq, kp.CqOff.Cqes)
	return nil
}

func (r *Ring) sqeBytes() int {
	if r.sqe128 {
		return sqe128Size
	}
	return sqeSize
}

func (r *Ring) unmap() {
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem)
	}
	if r.cqRing != nil && &r.cqRing[0] != &r.sqRing[0] {
		_ = unix.Munmap(r.cqRing)
	}
	if r.sqRing != nil {
		_ = unix.Munmap(r.sqRing)
	}
	r.sqeMem, r.cqRing, r.sqRing = nil, nil, nil
}

// Close unmaps the queues and closes the ring. Operations still in flight
// are cancelled by the kernel, asynchronously: their buffers must stay
// valid until the kernel is done with them, so a caller that cannot wait for
// their completions should not free their memory. Close is idempotent.
func (r *Ring) Close() error {
	if r.fd < 0 {
		return nil
	}
	r.unmap()
	err := unix.Close(r.fd)
	r.fd = -1
	r.pins = nil
	if err != nil {
		return fmt.Errorf("ioring: close: %w", err)
	}
	return nil
}

// SQEntries is the size of the submission queue (Params.Entries rounded up).
func (r *Ring) SQEntries() int { return int(r.sqEntries) }

// CQEntries is the size of the completion queue.
func (r *Ring) CQEntries() int { return int(r.cqEntries) }

// SQE128 tells whether the ring has 128-byte SQEs.
func (r *Ring) SQE128() bool { return r.sqe128 }

// Features returns the kernel's io_uring_params.features for this ring.
func (r *Ring) Features() uint32 { return r.features }

// Free is the number of SQEs that can be prepared before ErrSQFull.
func (r *Ring) Free() int {
	return int(r.sqEntries - (r.sqLocal - atomic.LoadUint32(r.sqHead)))
}

// Pending is the number of SQEs prepared but not yet consumed by the kernel.
func (r *Ring) Pending() int { return int(r.sqLocal - atomic.LoadUint32(r.sqHead)) }

// Ready is the number of completions waiting to be reaped.
func (r *Ring) Ready() int { return int(atomic.LoadUint32(r.cqTail) - *r.cqHead) }

// Submit hands every prepared SQE to the kernel with one io_uring_enter and
// returns how many the kernel consumed.
func (r *Ring) Submit() (int, error) { return r.SubmitAndWait(0) }

// SubmitAndWait submits every prepared SQE and waits until at least n
// completions are ready to be reaped (none if n is 0). Signals that
// interrupt the wait (Go's preemption sends them) restart it.
func (r *Ring) SubmitAndWait(n int) (int, error) {
	return r.enter(n, nil)
}

// SubmitAndWaitTimeout is SubmitAndWait with a limit on the wait: when d
// passes first it returns an error that wraps unix.ETIME. It needs
// IORING_FEAT_EXT_ARG (Linux 5.11), else ErrNoExtArg.
func (r *Ring) SubmitAndWaitTimeout(n int, d time.Duration) (int, error) {
	if r.features&IORING_FEAT_EXT_ARG == 0 {
		return 0, ErrNoExtArg
	}
	deadline := time.Now().Add(d)
	return r.enter(n, &deadline)
}

// enter publishes the prepared SQEs and calls io_uring_enter until every one
// is consumed and n completions are ready, or the deadline (if any) passes.
func (r *Ring) enter(n int, deadline *time.Time) (int, error) {
	if r.fd < 0 {
		return 0, ErrClosed
	}
	atomic.StoreUint32(r.sqTail, r.sqLocal) // publish: the SQEs are written before the tail moves
	submitted := 0
	for {
		toSubmit := r.Pending()
		if toSubmit == 0 && r.Ready() >= n {
			return submitted, nil
		}
		ret, errno := r.enterOnce(toSubmit, n, deadline)
		submitted += ret
		switch errno {
		case 0, unix.EINTR:
		case unix.ETIME:
			if r.Ready() >= n {
				return submitted, nil
			}
			return submitted, fmt.Errorf("ioring: io_uring_enter: %w", errno)
		default:
			return submitted, fmt.Errorf("ioring: io_uring_enter: %w", errno)
		}
	}
}

// enterOnce is one io_uring_enter(2).
func (r *Ring) enterOnce(toSubmit, minComplete int, deadline *time.Time) (int, syscall.Errno) {
	var flags uintptr
	if minComplete > 0 {
		flags |= IORING_ENTER_GETEVENTS
	}
	var argp, argsz uintptr
	var arg geteventsArg
	var ts unix.Timespec
	if deadline != nil && minComplete > 0 {
		ts = unix.NsecToTimespec(max(time.Until(*deadline), 0).Nanoseconds())
		arg.Ts = uint64(uintptr(unsafe.Pointer(&ts)))
		flags |= IORING_ENTER_EXT_ARG
		argp, argsz = uintptr(unsafe.Pointer(&arg)), unsafe.Sizeof(arg)
	}
	ret, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit),
		uintptr(minComplete), flags, argp, argsz)
	return int(ret), errno
}

// CQE is one completion.
type CQE struct {
	UserData uint64 // as given to the Prepare… call
	Res      int32  // the operation's result: >= 0 on success, -errno on failure
	Flags    uint32 // IORING_CQE_F_* flags
}

// Err returns nil when Res is not negative, else syscall.Errno(-Res).
func (c CQE) Err() error {
	if c.Res >= 0 {
		return nil
	}
	return syscall.Errno(-c.Res)
}

// Reap copies up to len(dst) ready completions into dst, in order, frees
// their CQ slots, and returns how many it copied. It never blocks.
func (r *Ring) Reap(dst []CQE) int {
	head := *r.cqHead
	tail := atomic.LoadUint32(r.cqTail) // acquire: the CQEs before tail are written
	n := 0
	for ; head != tail && n < len(dst); n++ {
		c := (*cqe)(unsafe.Add(r.cqes, uintptr(head&*r.cqMask)*cqeSize))
		dst[n] = CQE{UserData: c.UserData, Res: c.Res, Flags: c.Flags}
		head++
	}
	atomic.StoreUint32(r.cqHead, head) // release: the slots may be reused
	return n
}

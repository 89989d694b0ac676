package ioring

import "unsafe"

// Kernel ABI of io_uring (include/uapi/linux/io_uring.h), with the kernel's
// spelling. Only what the package uses is here.

// io_uring_setup flags.
const (
	IORING_SETUP_CQSIZE     = 1 << 3  // p.cq_entries holds the CQ size
	IORING_SETUP_CLAMP      = 1 << 4  // clamp entries to the kernel's maximum instead of failing
	IORING_SETUP_SUBMIT_ALL = 1 << 7  // keep submitting a batch past an SQE that fails at prep (5.18)
	IORING_SETUP_SQE128     = 1 << 10 // 128-byte SQEs: 80 bytes of command for IORING_OP_URING_CMD
)

// io_uring_enter flags.
const (
	IORING_ENTER_GETEVENTS = 1 << 0
	IORING_ENTER_EXT_ARG   = 1 << 3 // argp is a struct io_uring_getevents_arg (5.11)
)

// io_uring_params.features bits.
const (
	IORING_FEAT_SINGLE_MMAP = 1 << 0 // SQ and CQ rings share one mmap (5.4)
	IORING_FEAT_NODROP      = 1 << 1 // CQEs are never dropped on CQ overflow (5.5)
	IORING_FEAT_EXT_ARG     = 1 << 8 // IORING_ENTER_EXT_ARG: waits with a timeout (5.11)
)

// Opcodes (enum io_uring_op).
const (
	IORING_OP_NOP       = 0
	IORING_OP_FSYNC     = 3
	IORING_OP_READ      = 22
	IORING_OP_WRITE     = 23
	IORING_OP_URING_CMD = 46
)

// IORING_FSYNC_DATASYNC in sqe.fsync_flags: fdatasync instead of fsync.
const IORING_FSYNC_DATASYNC = 1 << 0

// mmap offsets of the rings and the SQE array.
const (
	IORING_OFF_SQ_RING = 0
	IORING_OFF_CQ_RING = 0x8000000
	IORING_OFF_SQES    = 0x10000000
)

// Sizes of the ABI structures.
const (
	sqeSize    = 64  // struct io_uring_sqe
	sqe128Size = 128 // struct io_uring_sqe with IORING_SETUP_SQE128
	cqeSize    = 16  // struct io_uring_cqe without IORING_SETUP_CQE32

	// CmdSize is the command area of IORING_OP_URING_CMD on an SQE128 ring
	// (sqe.cmd, from byte 48 to the end of the 128-byte SQE).
	CmdSize = sqe128Size - sqeCmdOffset
	// CmdSize64 is the command area on a ring of 64-byte SQEs (addr3 and __pad2).
	CmdSize64 = sqeSize - sqeCmdOffset

	sqeCmdOffset = 48 // offsetof(struct io_uring_sqe, cmd)
)

// io_sqring_offsets.
type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

// io_cqring_offsets.
type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

// io_uring_params.
type params struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  sqringOffsets
	CqOff                                                                  cqringOffsets
}

// sqe is struct io_uring_sqe (64 bytes); on an SQE128 ring the command area
// continues for another 64 bytes after it.
type sqe struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64 // off, addr2, or cmd_op (low 32 bits) + __pad1
	Addr        uint64
	Len         uint32
	OpFlags     uint32 // rw_flags, fsync_flags, uring_cmd_flags, ...
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	FileIndex   uint32 // splice_fd_in, file_index
	Addr3       uint64 // first bytes of cmd[]
	Pad2        uint64
}

// cqe is struct io_uring_cqe.
type cqe struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// io_uring_getevents_arg, for IORING_ENTER_EXT_ARG.
type geteventsArg struct {
	Sigmask   uint64
	SigmaskSz uint32
	MinWait   uint32 // min_wait_usec (6.12), pad before
	Ts        uint64 // pointer to a struct __kernel_timespec
}

// Size checks against the kernel ABI: a mismatch fails the build.
var (
	_ [40]byte           = [unsafe.Sizeof(sqringOffsets{})]byte{}
	_ [40]byte           = [unsafe.Sizeof(cqringOffsets{})]byte{}
	_ [120]byte          = [unsafe.Sizeof(params{})]byte{}
	_ [sqeSize]byte      = [unsafe.Sizeof(sqe{})]byte{}
	_ [cqeSize]byte      = [unsafe.Sizeof(cqe{})]byte{}
	_ [24]byte           = [unsafe.Sizeof(geteventsArg{})]byte{}
	_ [sqeCmdOffset]byte = [unsafe.Offsetof(sqe{}.Addr3)]byte{}
)

package ioring

import "errors"

// Sentinel errors. Errors from the kernel are returned as unix.Errno (wrapped
// with the failing call), so callers test them with errors.Is(err, unix.EBUSY)
// and the like; a completion's error is CQE.Err.
var (
	// ErrSQFull: every SQ slot holds a prepared SQE that has not been
	// submitted yet. Submit, then prepare again.
	ErrSQFull = errors.New("ioring: submission queue full")
	// ErrClosed: the ring was closed.
	ErrClosed = errors.New("ioring: ring closed")
	// ErrCmdTooLong: a URING_CMD payload larger than the ring's command
	// area (CmdSize on an SQE128 ring, CmdSize64 otherwise).
	ErrCmdTooLong = errors.New("ioring: uring_cmd payload larger than the SQE's command area")
	// ErrInvalidParams: Params that the kernel would refuse or that make no sense.
	ErrInvalidParams = errors.New("ioring: invalid params")
	// ErrNoExtArg: the kernel cannot wait with a timeout (no IORING_FEAT_EXT_ARG, before 5.11).
	ErrNoExtArg = errors.New("ioring: kernel lacks IORING_FEAT_EXT_ARG (timed waits)")
)

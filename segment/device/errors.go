package device

import "errors"

// Sentinel errors returned, wrapped, by the devices in this package. Test
// for them with errors.Is.
var (
	// ErrUnaligned means an offset or length was not a multiple of
	// BlockSize(), or, for a File opened with O_DIRECT, a buffer was not
	// aligned in memory to BlockSize(). Nothing was read or written.
	ErrUnaligned = errors.New("device: unaligned offset, length or buffer")

	// ErrOutOfRange means a request did not lie entirely within
	// [0, Size()). Nothing was read or written.
	ErrOutOfRange = errors.New("device: out of range")

	// ErrClosed means the device was used after Close.
	ErrClosed = errors.New("device: closed")

	// ErrReadOnly means a write or discard was attempted on a File opened
	// with Options.ReadOnly.
	ErrReadOnly = errors.New("device: read-only")
)

package device

import (
	"fmt"
	"io"
	"unsafe"
)

// Device is the storage a store lives on: a regular file, a block device or
// partition, or memory. It is a fixed-size array of BlockSize() blocks.
//
// ReadAt follows the io.ReaderAt contract:
//
//	ReadAt reads len(p) bytes into p starting at offset off in the
//	underlying input source. It returns the number of bytes read
//	(0 <= n <= len(p)) and any error encountered.
//
//	When ReadAt returns n < len(p), it returns a non-nil error explaining
//	why more bytes were not returned. In this respect, ReadAt is stricter
//	than Read.
//
//	Even if ReadAt returns n < len(p), it may use all of p as scratch space
//	during the call. If some data is available but not len(p) bytes, ReadAt
//	blocks until either all the data is available or an error occurs. In
//	this respect ReadAt is different from Read.
//
//	If the n = len(p) bytes returned by ReadAt are at the end of the input
//	source, ReadAt may return either err == EOF or err == nil.
//
//	If ReadAt is reading from an input source with a seek offset, ReadAt
//	should not affect nor be affected by the underlying seek offset.
//
//	Clients of ReadAt can execute parallel ReadAt calls on the same input
//	source.
//
//	Implementations must not retain p.
//
// WriteAt follows the io.WriterAt contract: it writes len(p) bytes from p at
// offset off, returns the number of bytes written (0 <= n <= len(p)) and a
// non-nil error if n < len(p), and must not retain p.
//
// Devices add these rules to both:
//
//   - off and len(p) must be multiples of BlockSize(), else the call returns
//     an error wrapping [ErrUnaligned]. For a [File] opened with O_DIRECT, p
//     must also be aligned in memory to BlockSize(); [AlignedBuf] returns such
//     buffers and works with every Device.
//   - The whole range [off, off+len(p)) must lie within [0, Size()), else the
//     call returns an error wrapping [ErrOutOfRange]. Unlike a plain
//     io.ReaderAt, a read running past the end transfers nothing and never
//     returns io.EOF; a device never returns io.EOF at all. A zero-length
//     request at an aligned offset in [0, Size()] returns 0, nil.
//   - Alignment is checked before range, so a request that is both unaligned
//     and out of range reports ErrUnaligned.
//   - Data written is volatile until a later Sync returns nil. After a crash,
//     each block written since the last successful Sync holds its old
//     contents, its new contents, or (the device tearing a write) a mix at
//     512-byte sector granularity.
//   - After Close, every method except Size and BlockSize returns an error
//     wrapping [ErrClosed].
//
// A Device is safe for concurrent use by multiple goroutines provided
// concurrent writes, and reads concurrent with writes, touch distinct
// ranges. The caller owns p before and after every call.
type Device interface {
	io.ReaderAt
	io.WriterAt

	// Sync makes every write that completed before Sync was called
	// durable (fdatasync for a File). Writes that complete while Sync runs
	// may or may not be made durable.
	Sync() error

	// Size returns the usable size in bytes, a multiple of BlockSize().
	// It does not change while the device is open.
	Size() int64

	// BlockSize returns the IO alignment in bytes: 512 or 4096.
	BlockSize() int

	// Close releases the device. Writes not yet synced may be lost.
	// Calls in flight complete normally or return ErrClosed. Calling
	// Close twice returns ErrClosed.
	Close() error
}

// Discarder is implemented by devices that can be told a range no longer
// holds useful data (TRIM). Discard is advisory: afterwards the range reads
// as either its old contents or zeros, and a device may ignore the hint
// entirely. off and n must be multiples of BlockSize() within [0, Size()];
// errors wrap [ErrUnaligned], [ErrOutOfRange] or [ErrClosed]. Discarding a
// range concurrently with IO to it is the caller's race.
type Discarder interface {
	Discard(off, n int64) error
}

// memAlign is the memory alignment AlignedBuf guarantees: 4096 covers every
// BlockSize() a Device may report, and the page size O_DIRECT prefers.
const memAlign = 4096

// AlignedBuf returns a zeroed buffer of length and capacity n whose first
// byte is aligned to 4096 bytes in memory, as O_DIRECT IO needs. It
// allocates n+4096 bytes; the Go garbage collector does not move heap
// objects, so the alignment holds for the buffer's lifetime.
func AlignedBuf(n int) []byte {
	b := make([]byte, n+memAlign)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) % memAlign); r != 0 {
		skip = memAlign - r
	}
	return b[skip : skip+n : skip+n]
}

// isAligned reports whether p starts at a multiple of align in memory.
func isAligned(p []byte, align int) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(p)))%uintptr(align) == 0
}

// checkRange validates a request of n bytes at off against a device of the
// given block size and size, following the rules in the Device doc.
func checkRange(off, n int64, blockSize int, size int64) error {
	bs := int64(blockSize)
	if off%bs != 0 || n%bs != 0 {
		return fmt.Errorf("offset %d length %d with block size %d: %w", off, n, blockSize, ErrUnaligned)
	}
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("offset %d length %d with size %d: %w", off, n, size, ErrOutOfRange)
	}
	return nil
}

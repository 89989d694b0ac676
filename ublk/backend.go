package ublk

// Backend is the volume a device serves. ublk never holds a lock while it
// calls a Backend, and never waits for one on a queue thread: ReadAt runs on
// a goroutine of its own per request, the …Async methods return at once and
// report through done.
//
// Errors become the IO's errno at one boundary: Config.Errno if it knows
// the error, else a syscall.Errno in the error's chain, or an Errno()
// syscall.Errno method, gives the errno, and anything else is EIO. So a full
// store reaches the writer as ENOSPC once cmd maps segment.ErrNoSpace in
// Config.Errno (or wraps it with syscall.ENOSPC).
//
// Offsets and lengths are multiples of 512 and inside the device's size
// (ublk checks them first); a Backend needs no bounds checks of its own.
type Backend interface {
	// ReadAt may block; ublk calls it from its own worker goroutines, never from a queue thread.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAsync returns at once; done is called exactly once, possibly synchronously from inside
	// WriteAsync (on errors) or from the backend's own goroutine; done must not block. p stays owned
	// by the backend until done.
	WriteAsync(p []byte, off int64, fua bool, done func(error))
	ZeroAsync(off, n int64, fua bool, done func(error)) // discard and write-zeroes: the range reads as zeros after
	FlushAsync(done func(error))
}

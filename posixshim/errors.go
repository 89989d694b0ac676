package posixshim

import (
	"context"
	"errors"
	"syscall"

	"cloudfs/segment"
)

// Sentinel errors. Callers match them with errors.Is. A Source returns errors
// wrapping ErrInUse or ErrNotFound (or the store's segment.ErrNotFound) so that
// the shim can answer EBUSY or ENOENT.
var (
	// ErrInUse: the volume is already used another way (as a raw ublk device
	// by the daemon, or by the shim as a disk file while a namespace is asked
	// for, or the other way round). The kernel sees EBUSY.
	ErrInUse = errors.New("posixshim: volume in use")
	// ErrNotFound: no volume with that id (ENOENT).
	ErrNotFound = errors.New("posixshim: volume not found")
	// ErrForeign: the volume holds data that is not a shim layout (a raw
	// disk with a file system or partition table, say). It is refused, never
	// reformatted (EMEDIUMTYPE).
	ErrForeign = errors.New("posixshim: volume holds a foreign layout")
	// ErrCorrupt: the volume carries the shim's magic but its superblock,
	// checkpoint or journal fails a checksum or a structural check
	// (EUCLEAN, what ext4 answers for corruption).
	ErrCorrupt = errors.New("posixshim: corrupt layout")
	// ErrUnsupported: the layout was written by a newer or unknown version of
	// the shim (EMEDIUMTYPE).
	ErrUnsupported = errors.New("posixshim: unsupported layout version")
	// ErrTooSmall: the volume is too small to hold the shim's layout.
	ErrTooSmall = errors.New("posixshim: volume too small for a namespace")
	// ErrNoSpace: the volume's data area, or its metadata area, is full
	// (ENOSPC). The store being full is segment.ErrNoSpace, also ENOSPC.
	ErrNoSpace = errors.New("posixshim: no space left in volume")
)

// toErrno translates an error into the errno the kernel returns to the
// application. It is the one place where errors become errno values: the
// operations below it return errors wrapping sentinels or syscall.Errno.
func toErrno(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, segment.ErrNoSpace), errors.Is(err, ErrNoSpace):
		return syscall.ENOSPC
	case errors.Is(err, segment.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, ErrInUse):
		return syscall.EBUSY
	case errors.Is(err, ErrNotFound), errors.Is(err, segment.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, ErrForeign), errors.Is(err, ErrUnsupported), errors.Is(err, ErrTooSmall):
		return syscall.EMEDIUMTYPE
	case errors.Is(err, ErrCorrupt), errors.Is(err, segment.ErrCorrupt):
		return syscall.EUCLEAN
	case errors.Is(err, segment.ErrOutOfRange):
		return syscall.EINVAL
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.As(err, &errno):
		return errno
	}
	return syscall.EIO
}

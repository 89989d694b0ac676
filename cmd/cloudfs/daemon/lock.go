package daemon

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrInUse: another process holds the store (a running cloudfs serve).
var ErrInUse = errors.New("store is in use by another process (is cloudfs serve running?)")

// Lock takes an advisory lock on the store at path (a file or a block
// device): exclusive for serve and nuke, shared for an offline check. The
// lock goes when the process does, even on SIGKILL. Call the returned func
// to release it.
func Lock(path string, exclusive bool) (func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", path, ErrInUse)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

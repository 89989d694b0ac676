package posixshim

import (
	"fmt"
	"log/slog"
	"time"
)

// Disk is one volume's address space, as the shim sees it. *segment.Volume
// satisfies it through a small adapter (Size comes from Info), and so can a
// client of a remote volume.
//
// Offsets and lengths of ReadAt and WriteAt are multiples of 512 and lie
// within Size. ReadAt fills all of p or returns an error (io.ReaderAt's
// contract); never-written ranges read as zeros. WriteAt returns once the
// write is acknowledged: after a crash the volume holds a prefix, in order,
// of the acknowledged writes, and Flush makes every write acknowledged
// before it durable. The shim's crash consistency rests on exactly this.
// All methods must be safe for concurrent use.
type Disk interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Flush() error
	Size() int64 // bytes, a multiple of 512
}

// Zeroer is implemented by a Disk that can punch holes cheaply
// (segment.Volume.WriteZeroes). The shim uses it to give the space of deleted
// files back to the store; a Disk without it keeps that garbage until the
// chunks are reused.
type Zeroer interface {
	WriteZeroes(off, n int64) error
}

// Blanker is implemented by a Disk that can tell cheaply whether it was ever
// written (no extents of its own and no parent). Without it, the shim takes
// a volume whose first and last MiB read as zeros for blank.
type Blanker interface {
	Blank() (bool, error)
}

// Use says what the shim opens a volume for.
type Use int

const (
	// UseNamespace: the volume holds a POSIX namespace (/mnt/x/<id>/...).
	UseNamespace Use = iota + 1
	// UseDiskFile: the volume is exposed whole as /mnt/x/disks/<id>.
	UseDiskFile
)

func (u Use) String() string {
	switch u {
	case UseNamespace:
		return "namespace"
	case UseDiskFile:
		return "disk file"
	}
	return fmt.Sprintf("use(%d)", int(u))
}

// Source finds volumes for the shim. The daemon implements it over its local
// store (and remote volumes) and enforces there that a volume used by the
// shim is not exposed as a raw device at the same time.
type Source interface {
	// Open opens the volume with the given 40-hex id for use. release ends
	// the use; the shim calls it exactly once, after its last IO on the Disk
	// (and after a Flush). Errors: wrapping ErrInUse (the volume is a raw
	// device now: EBUSY), ErrNotFound or segment.ErrNotFound (ENOENT); any
	// other error is logged and becomes EIO.
	Open(id string, use Use) (d Disk, release func(), err error)
	// List returns the ids the root directory lists besides the volumes the
	// shim has open: for example every local volume. It may return nil.
	List() []string
}

// Config configures Mount. The zero value is valid.
type Config struct {
	// Logger receives lifecycle events and the reasons for refusals (nil:
	// discard).
	Logger *slog.Logger
	// FsName is the mount's source shown in /proc/mounts (default "cloudfs").
	FsName string
	// AttrTimeout is how long the kernel caches attributes and names
	// (default 1 s). The shim is the only writer of its volumes, so caching
	// is safe.
	AttrTimeout time.Duration
	// Debug logs every FUSE request (go-fuse's debug output) to the logger.
	Debug bool
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.FsName == "" {
		c.FsName = "cloudfs"
	}
	if c.AttrTimeout <= 0 {
		c.AttrTimeout = time.Second
	}
}

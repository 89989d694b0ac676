package ublk

import (
	"fmt"
	"log/slog"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	// DefaultMaxQueues caps the default queue count (one per CPU): each
	// queue is an OS thread and depth × MaxIOBytes of buffer address space.
	DefaultMaxQueues = 8
	// DefaultDepth is the default number of tags (requests in flight) per queue.
	DefaultDepth = 128
	// DefaultMaxIOBytes is the default largest request (512 KiB, the
	// kernel's usual max_sectors_kb for fast devices).
	DefaultMaxIOBytes = 512 << 10
	// DefaultTimeout bounds each control command and the wait for the
	// queues at teardown. Generous: under software emulation a command takes
	// milliseconds to seconds.
	DefaultTimeout = 30 * time.Second
)

// Block geometry the device declares: 512-byte logical blocks (what every
// guest can use), 4 KiB physical blocks (the store's block, so file systems
// align to it).
const (
	logicalBlockShift  = 9
	physicalBlockShift = 12
	sectorShift        = 9 // start_sector and nr_sectors are always 512-byte units
)

// maxIOBytesLimit is the largest request the kernel's buffer offsets can
// address (UBLK_IO_BUF_BITS: 32 MiB).
const maxIOBytesLimit = 1 << UBLK_IO_BUF_BITS

// Config configures Create and Recover. The zero value of every field but
// Size is a sensible default.
type Config struct {
	// Size is the device size in bytes, a positive multiple of 4096.
	// Create needs it; Recover checks it against the device when set.
	Size int64
	// Queues is the number of hardware queues, each served by one OS
	// thread. 0 means one per CPU, at most DefaultMaxQueues. The kernel caps
	// it at the number of possible CPUs. Recover takes the device's own.
	Queues int
	// Depth is the number of tags per queue, 1 to 4096; 0 means DefaultDepth.
	// Recover takes the device's own.
	Depth int
	// MaxIOBytes is the largest request, a multiple of 4096 up to 32 MiB;
	// 0 means DefaultMaxIOBytes. Recover takes the device's own.
	MaxIOBytes int
	// NoUserCopy refuses UBLK_F_USER_COPY even where the kernel offers it:
	// the kernel then copies data to and from per-tag buffers itself.
	NoUserCopy bool
	// NoRecovery creates a device without UBLK_F_USER_RECOVERY: when the
	// process dies, the kernel fails its IO and removes the disk instead of
	// queueing IO for a restarted process to Recover.
	NoRecovery bool
	// Errno, if set, maps a backend error to the errno its IO completes
	// with; 0 means "apply the default rule" (a syscall.Errno in the error's
	// chain, or an Errno() method, else EIO). It must be cheap and must not
	// block: it runs on the queue thread.
	Errno func(error) syscall.Errno
	// Timeout bounds each control command and each wait of the teardown;
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// Logger receives lifecycle events (Info) and degraded states (Warn);
	// nil discards them.
	Logger *slog.Logger
	// Metrics is where the package's collectors are registered (once per
	// registerer: devices share them); nil registers nothing.
	Metrics prometheus.Registerer
}

// withDefaults returns c with its zero fields filled in.
func (c Config) withDefaults() Config {
	if c.Queues == 0 {
		c.Queues = min(runtime.NumCPU(), DefaultMaxQueues)
	}
	if c.Depth == 0 {
		c.Depth = DefaultDepth
	}
	if c.MaxIOBytes == 0 {
		c.MaxIOBytes = DefaultMaxIOBytes
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks a Config after withDefaults; sizeRequired is set for Create.
func (c Config) validate(sizeRequired bool) error {
	switch {
	case c.Size < 0 || c.Size%(1<<physicalBlockShift) != 0 || (sizeRequired && c.Size == 0):
		return fmt.Errorf("%w: size %d is not a positive multiple of 4096", ErrInvalidConfig, c.Size)
	case c.Queues < 1 || c.Queues > UBLK_MAX_NR_QUEUES:
		return fmt.Errorf("%w: %d queues not in [1, %d]", ErrInvalidConfig, c.Queues, UBLK_MAX_NR_QUEUES)
	case c.Depth < 1 || c.Depth > UBLK_MAX_QUEUE_DEPTH:
		return fmt.Errorf("%w: depth %d not in [1, %d]", ErrInvalidConfig, c.Depth, UBLK_MAX_QUEUE_DEPTH)
	case c.MaxIOBytes < 1<<physicalBlockShift || c.MaxIOBytes > maxIOBytesLimit || c.MaxIOBytes%(1<<physicalBlockShift) != 0:
		return fmt.Errorf("%w: max IO %d bytes is not a multiple of 4096 in [4096, %d]",
			ErrInvalidConfig, c.MaxIOBytes, maxIOBytesLimit)
	case c.Timeout < 0:
		return fmt.Errorf("%w: negative timeout %v", ErrInvalidConfig, c.Timeout)
	}
	return nil
}

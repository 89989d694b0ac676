package ublk

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// createMu serializes device creation and recovery in the process: control
// commands issued concurrently for new devices hang some kernels (NOTES §8).
var createMu sync.Mutex

// A Device is one ublk device served by this process: /dev/ublkbN, whose
// requests go to a Backend. Its methods are safe for concurrent use.
type Device struct {
	id       uint32
	flags    uint64 // UBLK_F_* of the device
	size     int64
	queues   int
	depth    int
	maxIO    int
	userCopy bool
	be       Backend
	errno    func(error) syscall.Errno // Config.Errno
	ctl      control
	timeout  time.Duration
	log      *slog.Logger
	m        *metrics

	charFd  int            // /dev/ublkcN, shared by the queues (the kernel allows one opener)
	qs      []*queue       // one per hardware queue, in queue id order
	readers sync.WaitGroup // goroutines running Backend.ReadAt
	done    chan struct{}  // closed when every queue has stopped
	closeMu sync.Mutex     // guards closed
	closed  bool           // Delete or Detach has begun (or start failed)
}

// Create adds a new device of cfg.Size bytes served by be, starts its
// queues and makes /dev/ublkbN appear (the kernel picks N, see ID). Creation
// is serialized within the process. The device uses UBLK_F_USER_COPY and
// UBLK_F_USER_RECOVERY (with _REISSUE) when the kernel offers them, unless
// cfg says no. Errors: ErrInvalidConfig, ErrUnavailable, ErrTimeout, and the
// kernel's errno (EPERM without CAP_SYS_ADMIN). On error nothing is left
// behind, unless a timed-out DEL_DEV says otherwise in its error.
func Create(be Backend, cfg Config) (*Device, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(true); err != nil {
		return nil, err
	}
	if be == nil {
		return nil, fmt.Errorf("%w: no backend", ErrInvalidConfig)
	}
	createMu.Lock()
	defer createMu.Unlock()
	ctl := control{timeout: cfg.Timeout}
	feat, err := ctl.features()
	if err != nil {
		return nil, err
	}
	if feat&UBLK_F_CMD_IOCTL_ENCODE == 0 {
		return nil, fmt.Errorf("%w: features %#x lack UBLK_F_CMD_IOCTL_ENCODE", ErrUnavailable, feat)
	}
	info := devInfo{NrHwQueues: uint16(cfg.Queues), QueueDepth: uint16(cfg.Depth),
		MaxIOBufBytes: uint32(cfg.MaxIOBytes), DevID: noDevID, Flags: negotiate(feat, cfg)}
	if err := ctl.addDev(&info); err != nil {
		return nil, err
	}
	p := deviceParams(cfg.Size, int(info.MaxIOBufBytes))
	if err := ctl.setParams(info.DevID, &p); err != nil {
		return nil, errors.Join(err, ctl.simple(UBLK_U_CMD_DEL_DEV, info.DevID, 0))
	}
	d := newDevice(be, cfg, info, cfg.Size)
	if err := d.start(UBLK_U_CMD_START_DEV); err != nil {
		return nil, errors.Join(err, ctl.simple(UBLK_U_CMD_DEL_DEV, info.DevID, 0))
	}
	d.log.Info("device started", "path", d.BlockPath(), "bytes", d.size, "queues", d.queues,
		"depth", d.depth, "flags", fmt.Sprintf("%#x", d.flags), "user_copy", d.userCopy)
	return d, nil
}

// negotiate picks the device flags from the kernel's features and cfg.
func negotiate(feat uint64, cfg Config) uint64 {
	flags := uint64(UBLK_F_CMD_IOCTL_ENCODE)
	if feat&UBLK_F_USER_COPY != 0 && !cfg.NoUserCopy {
		flags |= UBLK_F_USER_COPY
	}
	if feat&UBLK_F_USER_RECOVERY != 0 && !cfg.NoRecovery {
		flags |= UBLK_F_USER_RECOVERY | feat&UBLK_F_USER_RECOVERY_REISSUE
	}
	return flags
}

// maxDiscardSectors bounds one DISCARD or WRITE_ZEROES request (1 GiB);
// larger ones arrive split.
const maxDiscardSectors = 1 << 21

// deviceParams are the parameters of a device of size bytes: 512-byte
// logical and 4 KiB physical blocks, a volatile write cache with FUA (the
// backend acknowledges writes before they are durable, so FLUSH and FUA must
// reach it), and single-range discard and write-zeroes.
func deviceParams(size int64, maxIO int) params {
	return params{
		Types: UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD,
		Basic: paramBasic{
			Attrs:          UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA,
			LogicalBSShift: logicalBlockShift, PhysicalBSShift: physicalBlockShift,
			IOOptShift: physicalBlockShift, IOMinShift: physicalBlockShift,
			MaxSectors: uint32(maxIO >> sectorShift), DevSectors: uint64(size) >> sectorShift,
		},
		Discard: paramDiscard{
			DiscardGranularity: 1 << physicalBlockShift, MaxDiscardSectors: maxDiscardSectors,
			MaxWriteZeroesSectors: maxDiscardSectors, MaxDiscardSegments: 1,
		},
	}
}

func newDevice(be Backend, cfg Config, info devInfo, size int64) *Device {
	return &Device{id: info.DevID, flags: info.Flags, size: size, queues: int(info.NrHwQueues),
		depth: int(info.QueueDepth), maxIO: int(info.MaxIOBufBytes), userCopy: info.Flags&UBLK_F_USER_COPY != 0,
		be: be, errno: cfg.Errno, ctl: control{timeout: cfg.Timeout}, timeout: cfg.Timeout,
		log: cfg.Logger.With("component", "ublk", "dev_id", info.DevID), m: newMetrics(cfg.Metrics),
		charFd: -1, done: make(chan struct{})}
}

// start opens /dev/ublkcN, starts the queues, and once every tag is
// fetched runs op (START_DEV or END_USER_RECOVERY) with this process's pid.
// On error the queues are stopped and the descriptor closed.
func (d *Device) start(op uint32) error {
	fd, err := openChar(d.CharPath(), d.timeout)
	if err != nil {
		return err
	}
	d.charFd = fd
	ready := make(chan error, d.queues)
	for i := range d.queues {
		q := newQueue(d, i)
		d.qs = append(d.qs, q)
		go q.run(ready)
	}
	go d.watch()
	for range d.queues {
		err = errors.Join(err, <-ready)
	}
	if err == nil {
		err = d.ctl.simple(op, d.id, uint64(os.Getpid()))
	}
	if err != nil {
		d.closeMu.Lock()
		d.closed = true
		d.closeMu.Unlock()
		return errors.Join(err, d.stopQueues(true))
	}
	d.m.devices.Inc()
	return nil
}

// openChar opens /dev/ublkcN, retrying while devtmpfs has not created it yet
// (ENOENT after ADD_DEV) or the previous server's descriptor is still being
// released (EBUSY during recovery).
func openChar(path string, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return -1, fmt.Errorf("ublk: open %s: %w", path, err)
		}
		time.Sleep(delay)
	}
}

// watch closes done once every queue has stopped.
func (d *Device) watch() {
	for _, q := range d.qs {
		<-q.done
	}
	close(d.done)
}

// ID is the device id N of /dev/ublkbN and /dev/ublkcN.
func (d *Device) ID() uint32 { return d.id }

// BlockPath is the block device, /dev/ublkbN.
func (d *Device) BlockPath() string { return fmt.Sprintf("/dev/ublkb%d", d.id) }

// CharPath is the device's character device, /dev/ublkcN.
func (d *Device) CharPath() string { return fmt.Sprintf("/dev/ublkc%d", d.id) }

// Size is the device size in bytes.
func (d *Device) Size() int64 { return d.size }

// Flags are the UBLK_F_* flags the device runs with.
func (d *Device) Flags() uint64 { return d.flags }

// Done is closed when every queue of the device has stopped: after Delete
// or Detach, or when a queue failed (see Err) or the device was stopped
// from outside the process.
func (d *Device) Done() <-chan struct{} { return d.done }

// Err returns why queues stopped serving on their own (wrapping ErrQueue),
// or nil. Call it after Done is closed.
func (d *Device) Err() error {
	var errs []error
	for _, q := range d.qs {
		select {
		case <-q.done:
			errs = append(errs, q.err)
		default:
		}
	}
	return errors.Join(errs...)
}

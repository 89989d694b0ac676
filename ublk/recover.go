package ublk

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Recover attaches be to device id, which a process (this one after
// Detach, or a predecessor that crashed) served and left behind, created
// with UBLK_F_USER_RECOVERY. The flow:
//
//  1. GET_DEV_INFO and GET_PARAMS: the device's queues, depth, buffer size,
//     flags and size (cfg.Size, if set, must match; cfg's Queues, Depth,
//     MaxIOBytes, NoUserCopy and NoRecovery are ignored).
//  2. START_USER_RECOVERY, retried while the kernel answers EBUSY: it does
//     until the dead server's /dev/ublkcN is released and the device is
//     quiesced.
//  3. New queues FETCH every tag, then END_USER_RECOVERY: the kernel
//     reissues the requests it held (with UBLK_F_USER_RECOVERY_REISSUE,
//     also those the dead server had received but not completed) and IO
//     goes on. /dev/ublkbN and its openers (a mounted file system) stay.
//
// Recovery is serialized with Create. Errors: ErrNotRecoverable,
// ErrUnavailable, ErrTimeout, the kernel's errno (ENODEV: no such device;
// EINVAL: the device is being deleted or was never started).
func Recover(id uint32, be Backend, cfg Config) (*Device, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	if be == nil {
		return nil, fmt.Errorf("%w: no backend", ErrInvalidConfig)
	}
	createMu.Lock()
	defer createMu.Unlock()
	ctl := control{timeout: cfg.Timeout}
	info, err := ctl.devInfo(id)
	if err != nil {
		return nil, err
	}
	if info.Flags&UBLK_F_USER_RECOVERY == 0 {
		return nil, fmt.Errorf("%w: dev %d has flags %#x, no UBLK_F_USER_RECOVERY", ErrNotRecoverable, id, info.Flags)
	}
	p, err := ctl.getParams(id)
	if err != nil {
		return nil, err
	}
	size := int64(p.Basic.DevSectors) << sectorShift
	if cfg.Size != 0 && cfg.Size != size {
		return nil, fmt.Errorf("%w: dev %d has %d bytes, config says %d", ErrNotRecoverable, id, size, cfg.Size)
	}
	if err := startRecovery(ctl, id, cfg.Timeout); err != nil {
		return nil, err
	}
	d := newDevice(be, cfg, info, size)
	if err := d.start(UBLK_U_CMD_END_USER_RECOVERY); err != nil {
		return nil, err // the device stays quiesced; Recover may be tried again
	}
	d.log.Info("device recovered", "path", d.BlockPath(), "bytes", d.size, "queues", d.queues,
		"depth", d.depth, "flags", fmt.Sprintf("%#x", d.flags))
	return d, nil
}

// startRecovery runs START_USER_RECOVERY until the kernel stops answering
// EBUSY, or the timeout passes.
func startRecovery(ctl control, id uint32, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		err := ctl.simple(UBLK_U_CMD_START_USER_RECOVERY, id, 0)
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ublk: dev %d not ready for recovery after %v: %w: %w", id, timeout, ErrTimeout, err)
		}
		time.Sleep(delay)
	}
}

// Info describes a device as the kernel knows it (GET_DEV_INFO).
type Info struct {
	ID         uint32
	State      int // UBLK_S_DEV_DEAD (added or stopped), _LIVE or _QUIESCED (waiting for Recover)
	Queues     int
	Depth      int
	MaxIOBytes int
	Flags      uint64 // UBLK_F_*
	PID        int    // the serving process given at START_DEV or END_USER_RECOVERY
}

// DeviceInfo returns what the kernel knows of device id; timeout bounds
// the command (0: DefaultTimeout).
func DeviceInfo(id uint32, timeout time.Duration) (Info, error) {
	info, err := control{timeout: orDefault(timeout)}.devInfo(id)
	if err != nil {
		return Info{}, err
	}
	return Info{ID: info.DevID, State: int(info.State), Queues: int(info.NrHwQueues),
		Depth: int(info.QueueDepth), MaxIOBytes: int(info.MaxIOBufBytes), Flags: info.Flags,
		PID: int(info.UblksrvPID)}, nil
}

// List returns every ublk device of the system (those of other servers
// too), found through their /dev/ublkcN nodes: a restarted daemon uses it
// to find the devices to Recover or Remove.
func List(timeout time.Duration) ([]Info, error) {
	paths, err := filepath.Glob("/dev/ublkc*")
	if err != nil {
		return nil, fmt.Errorf("ublk: list: %w", err)
	}
	var infos []Info
	for _, p := range paths {
		id, err := strconv.ParseUint(strings.TrimPrefix(p, "/dev/ublkc"), 10, 32)
		if err != nil {
			continue
		}
		info, err := DeviceInfo(uint32(id), timeout)
		if errors.Is(err, unix.ENODEV) {
			continue // deleted meanwhile
		}
		if err != nil {
			return infos, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// Remove stops and deletes device id, which no Device of this process
// serves (a leftover of a crashed server that will not be recovered). A
// timed-out DEL_DEV means the device is still open; see Device.Delete.
func Remove(id uint32, timeout time.Duration) error {
	ctl := control{timeout: orDefault(timeout)}
	stopErr := ctl.simple(UBLK_U_CMD_STOP_DEV, id, 0)
	delErr := ctl.simple(UBLK_U_CMD_DEL_DEV, id, 0)
	if delErr == nil {
		return nil
	}
	return errors.Join(stopErr, delErr)
}

// Features returns the UBLK_F_* features this kernel offers (GET_FEATURES).
func Features(timeout time.Duration) (uint64, error) {
	return control{timeout: orDefault(timeout)}.features()
}

// orDefault returns timeout, or DefaultTimeout for 0.
func orDefault(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return DefaultTimeout
	}
	return timeout
}

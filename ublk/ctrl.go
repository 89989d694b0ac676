package ublk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
	"unsafe"

	"cloudfs/ioring"

	"golang.org/x/sys/unix"
)

// controlPath is the ublk control device.
const controlPath = "/dev/ublk-control"

// noID is the dev_id and queue_id of "none": ADD_DEV lets the kernel pick
// the id, and device-wide commands name no queue.
const (
	noDevID   = ^uint32(0)
	noQueueID = ^uint16(0)
)

// Available reports whether this kernel offers ublk (/dev/ublk-control
// exists). It does not say whether the caller may use it (root, or
// UBLK_F_UNPRIVILEGED_DEV).
func Available() bool {
	_, err := os.Stat(controlPath)
	return err == nil
}

// control runs control commands. Each command gets a fresh descriptor and a
// fresh ring (NOTES §8: a shared control ring made concurrent creation hang
// on some kernels) and is bounded by timeout.
type control struct {
	timeout time.Duration
}

// ctrlName names a control command in errors and logs.
func ctrlName(op uint32) string {
	switch op & 0xff {
	case UBLK_CMD_GET_DEV_INFO:
		return "GET_DEV_INFO"
	case UBLK_CMD_ADD_DEV:
		return "ADD_DEV"
	case UBLK_CMD_DEL_DEV:
		return "DEL_DEV"
	case UBLK_CMD_START_DEV:
		return "START_DEV"
	case UBLK_CMD_STOP_DEV:
		return "STOP_DEV"
	case UBLK_CMD_SET_PARAMS:
		return "SET_PARAMS"
	case UBLK_CMD_GET_PARAMS:
		return "GET_PARAMS"
	case UBLK_CMD_START_USER_RECOVERY:
		return "START_USER_RECOVERY"
	case UBLK_CMD_END_USER_RECOVERY:
		return "END_USER_RECOVERY"
	case UBLK_CMD_GET_FEATURES:
		return "GET_FEATURES"
	}
	return fmt.Sprintf("cmd %#x", op)
}

// do runs control command op for dev id with inline data and, if buf is not
// nil, a buffer the kernel reads from and writes to (copied through a page of
// its own, which a timed-out command may still reach, so it is then leaked).
// It returns the command's non-negative result.
func (c control) do(op uint32, id uint32, data uint64, buf []byte) (int32, error) {
	fd, err := unix.Open(controlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return 0, fmt.Errorf("%w: %s: %w", ErrUnavailable, controlPath, fs.ErrNotExist)
	}
	if err != nil {
		return 0, fmt.Errorf("ublk: open %s: %w", controlPath, err)
	}
	defer unix.Close(fd)
	ring, err := ioring.New(ioring.Params{Entries: 2, SQE128: true})
	if err != nil {
		return 0, fmt.Errorf("ublk: control ring: %w", err)
	}
	page, err := unix.Mmap(-1, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		ring.Close()
		return 0, fmt.Errorf("ublk: control page: %w", err)
	}
	res, err := c.run(ring, fd, op, c.header(id, data, buf, page))
	if errors.Is(err, ErrTimeout) {
		ring.Close() // cancels the command; page stays mapped in case the kernel still writes it
		return 0, err
	}
	ring.Close()
	copy(buf, page)
	_ = unix.Munmap(page)
	return res, err
}

// header builds the ublksrv_ctrl_cmd and copies buf into page.
func (c control) header(id uint32, data uint64, buf, page []byte) ctrlCmd {
	h := ctrlCmd{DevID: id, QueueID: noQueueID, Data: data}
	if buf != nil {
		copy(page, buf)
		h.Addr = uint64(uintptr(unsafe.Pointer(&page[0])))
		h.Len = uint16(len(buf))
	}
	return h
}

// run submits one command on ring and waits for its completion.
func (c control) run(ring *ioring.Ring, fd int, op uint32, h ctrlCmd) (int32, error) {
	if err := ring.PrepareUringCmd(fd, op, asBytes(&h), uint64(op)); err != nil {
		return 0, fmt.Errorf("ublk: %s: %w", ctrlName(op), err)
	}
	_, err := ring.SubmitAndWaitTimeout(1, c.timeout)
	if errors.Is(err, unix.ETIME) {
		return 0, fmt.Errorf("ublk: %s of dev %d after %v: %w", ctrlName(op), h.DevID, c.timeout, ErrTimeout)
	}
	if err != nil {
		return 0, fmt.Errorf("ublk: %s: %w", ctrlName(op), err)
	}
	var cqe [1]ioring.CQE
	ring.Reap(cqe[:])
	if err := cqe[0].Err(); err != nil {
		return 0, fmt.Errorf("ublk: %s of dev %d: %w", ctrlName(op), int32(h.DevID), err)
	}
	return cqe[0].Res, nil
}

// asBytes views a kernel struct as its bytes.
func asBytes[T any](p *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p))
}

// features runs GET_FEATURES: the UBLK_F_* flags this kernel supports.
func (c control) features() (uint64, error) {
	var f uint64
	_, err := c.do(UBLK_U_CMD_GET_FEATURES, noDevID, 0, asBytes(&f))
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return 0, fmt.Errorf("%w: no GET_FEATURES (kernel before 6.5): %w", ErrUnavailable, err)
	}
	return f, err
}

// addDev runs ADD_DEV; the kernel fills in the id and adjusts the sizes.
func (c control) addDev(info *devInfo) error {
	_, err := c.do(UBLK_U_CMD_ADD_DEV, info.DevID, 0, asBytes(info))
	return err
}

// devInfo runs GET_DEV_INFO.
func (c control) devInfo(id uint32) (devInfo, error) {
	var info devInfo
	_, err := c.do(UBLK_U_CMD_GET_DEV_INFO, id, 0, asBytes(&info))
	return info, err
}

// setParams runs SET_PARAMS.
func (c control) setParams(id uint32, p *params) error {
	p.Len = uint32(unsafe.Sizeof(*p))
	_, err := c.do(UBLK_U_CMD_SET_PARAMS, id, 0, asBytes(p))
	return err
}

// getParams runs GET_PARAMS.
func (c control) getParams(id uint32) (params, error) {
	p := params{Len: uint32(unsafe.Sizeof(params{}))}
	_, err := c.do(UBLK_U_CMD_GET_PARAMS, id, 0, asBytes(&p))
	return p, err
}

// simple runs a command without a buffer: START_DEV and END_USER_RECOVERY
// (data is the server's pid), STOP_DEV, DEL_DEV, START_USER_RECOVERY.
func (c control) simple(op uint32, id uint32, data uint64) error {
	_, err := c.do(op, id, data, nil)
	return err
}

package ublk

import (
	"os"
	"unsafe"
)

// Kernel ABI of ublk (include/uapi/linux/ublk_cmd.h, Linux 6.12), with the
// kernel's spelling. Newer kernels add fields and flags at the end; features
// are probed with UBLK_U_CMD_GET_FEATURES, never by kernel version.

// Control command numbers (the _IOC nr of the UBLK_U_CMD_* ioctl encodings).
const (
	UBLK_CMD_GET_DEV_INFO        = 0x02
	UBLK_CMD_ADD_DEV             = 0x04
	UBLK_CMD_DEL_DEV             = 0x05
	UBLK_CMD_START_DEV           = 0x06
	UBLK_CMD_STOP_DEV            = 0x07
	UBLK_CMD_SET_PARAMS          = 0x08
	UBLK_CMD_GET_PARAMS          = 0x09
	UBLK_CMD_START_USER_RECOVERY = 0x10
	UBLK_CMD_END_USER_RECOVERY   = 0x11
	UBLK_CMD_GET_FEATURES        = 0x13 // only ever ioctl-encoded
)

// IO command numbers, issued on /dev/ublkcN.
const (
	UBLK_IO_FETCH_REQ            = 0x20
	UBLK_IO_COMMIT_AND_FETCH_REQ = 0x21
)

// Ioctl-encoded commands (UBLK_F_CMD_IOCTL_ENCODE), as the header defines them.
var (
	UBLK_U_CMD_GET_DEV_INFO        = ior(UBLK_CMD_GET_DEV_INFO, unsafe.Sizeof(ctrlCmd{}))
	UBLK_U_CMD_ADD_DEV             = iowr(UBLK_CMD_ADD_DEV, unsafe.Sizeof(ctrlCmd{}))
	UBLK_U_CMD_DEL_DEV             = iowr(UBLK_CMD_DEL_DEV, unsafe.Sizeof(ctrlCmd{}))
	UBLK_U_CMD_START_DEV           = iowr(UBLK_CMD_START_DEV, unsafe.Sizeof(ctrlCmd{}))
	UBLK_U_CMD_STOP_DEV            = iowr(UBLK_CMD_STOP_DEV, unsafe.Sizeof(ctrlCmd{}))
	UBLK_U_CMD_SET_PARAMS          = iowr(UBLK_CMD_SET_PARAMS, unsafe.Sizeof(ctrlCmd{}))
	UBLK_U_CMD_GET_PARAMS          = ior(UBLK_CMD_GET_PARAMS, unsafe.Sizeof(ctrlCmd{}))
	UBLK_U_CMD_START_USER_RECOVERY = iowr(UBLK_CMD_START_USER_RECOVERY, unsafe.Sizeof(ctrlCmd{}))
	UBLK_U_CMD_END_USER_RECOVERY   = iowr(UBLK_CMD_END_USER_RECOVERY, unsafe.Sizeof(ctrlCmd{}))
	UBLK_U_CMD_GET_FEATURES        = ior(UBLK_CMD_GET_FEATURES, unsafe.Sizeof(ctrlCmd{}))

	UBLK_U_IO_FETCH_REQ            = iowr(UBLK_IO_FETCH_REQ, unsafe.Sizeof(ioCmd{}))
	UBLK_U_IO_COMMIT_AND_FETCH_REQ = iowr(UBLK_IO_COMMIT_AND_FETCH_REQ, unsafe.Sizeof(ioCmd{}))
)

// _IOC encoding of asm-generic/ioctl.h: dir:2 | size:14 | type:8 | nr:8.
func ioc(dir, nr, size uintptr) uint32 { return uint32(dir<<30 | size<<16 | 'u'<<8 | nr) }
func ior(nr, size uintptr) uint32      { return ioc(2 /* _IOC_READ */, nr, size) }
func iowr(nr, size uintptr) uint32     { return ioc(3 /* _IOC_READ|_IOC_WRITE */, nr, size) }

// Results of FETCH and COMMIT_AND_FETCH completions.
const (
	UBLK_IO_RES_OK    = 0
	UBLK_IO_RES_ABORT = -19 // -ENODEV: the queue is going away; the tag is not re-armed
)

// Layout of the IO buffer offsets of /dev/ublkcN (USER_COPY pread/pwrite),
// and of the io descriptor array (mmap).
const (
	UBLKSRV_CMD_BUF_OFFSET = 0
	UBLKSRV_IO_BUF_OFFSET  = 0x80000000
	UBLK_MAX_QUEUE_DEPTH   = 4096
	UBLK_IO_BUF_BITS       = 25 // 32 MiB: the largest single IO
	UBLK_TAG_OFF           = UBLK_IO_BUF_BITS
	UBLK_TAG_BITS          = 16
	UBLK_QID_OFF           = UBLK_TAG_OFF + UBLK_TAG_BITS
	UBLK_QID_BITS          = 12
	UBLK_MAX_NR_QUEUES     = 1 << UBLK_QID_BITS
)

// Feature flags (GET_FEATURES, ublksrv_ctrl_dev_info.flags).
const (
	UBLK_F_SUPPORT_ZERO_COPY      = 1 << 0
	UBLK_F_URING_CMD_COMP_IN_TASK = 1 << 1
	UBLK_F_NEED_GET_DATA          = 1 << 2
	UBLK_F_USER_RECOVERY          = 1 << 3
	UBLK_F_USER_RECOVERY_REISSUE  = 1 << 4
	UBLK_F_UNPRIVILEGED_DEV       = 1 << 5
	UBLK_F_CMD_IOCTL_ENCODE       = 1 << 6
	UBLK_F_USER_COPY              = 1 << 7
	UBLK_F_ZONED                  = 1 << 8
)

// Device states (ublksrv_ctrl_dev_info.state).
const (
	UBLK_S_DEV_DEAD     = 0
	UBLK_S_DEV_LIVE     = 1
	UBLK_S_DEV_QUIESCED = 2
)

// IO operations (low 8 bits of ublksrv_io_desc.op_flags) and flags (above).
const (
	UBLK_IO_OP_READ         = 0
	UBLK_IO_OP_WRITE        = 1
	UBLK_IO_OP_FLUSH        = 2
	UBLK_IO_OP_DISCARD      = 3
	UBLK_IO_OP_WRITE_SAME   = 4
	UBLK_IO_OP_WRITE_ZEROES = 5

	UBLK_IO_F_FUA     = 1 << 13
	UBLK_IO_F_NOUNMAP = 1 << 15
)

// Parameter types and basic attributes.
const (
	UBLK_PARAM_TYPE_BASIC   = 1 << 0
	UBLK_PARAM_TYPE_DISCARD = 1 << 1

	UBLK_ATTR_READ_ONLY      = 1 << 0
	UBLK_ATTR_ROTATIONAL     = 1 << 1
	UBLK_ATTR_VOLATILE_CACHE = 1 << 2
	UBLK_ATTR_FUA            = 1 << 3
)

// ctrlCmd is struct ublksrv_ctrl_cmd, the payload of a control command in
// the SQE's command area.
type ctrlCmd struct {
	DevID      uint32 // ^0 in ADD_DEV: the kernel picks the id
	QueueID    uint16 // ^0 unless the command is for one queue
	Len        uint16 // bytes at Addr
	Addr       uint64 // command-specific buffer, in or out
	Data       uint64 // inline data (data[1])
	DevPathLen uint16 // UNPRIVILEGED_DEV only
	Pad        uint16
	Reserved   uint32
}

// devInfo is struct ublksrv_ctrl_dev_info.
type devInfo struct {
	NrHwQueues    uint16
	QueueDepth    uint16
	State         uint16
	Pad0          uint16
	MaxIOBufBytes uint32
	DevID         uint32
	UblksrvPID    int32
	Pad1          uint32
	Flags         uint64
	UblksrvFlags  uint64 // kept by the kernel for the server, not interpreted
	OwnerUID      uint32 // stored by the kernel
	OwnerGID      uint32
	Reserved1     uint64
	Reserved2     uint64
}

// ioDesc is struct ublksrv_io_desc, one per tag in the mmap'd array.
type ioDesc struct {
	OpFlags     uint32 // op: bits 0-7, flags: bits 8-31
	NrSectors   uint32 // 512-byte sectors
	StartSector uint64 // 512-byte sectors
	Addr        uint64 // the server's buffer for this tag (not with USER_COPY)
}

// ioCmd is struct ublksrv_io_cmd, the payload of FETCH and COMMIT_AND_FETCH.
type ioCmd struct {
	QID    uint16
	Tag    uint16
	Result int32  // COMMIT: bytes done, or -errno
	Addr   uint64 // the tag's buffer; 0 with USER_COPY
}

// paramBasic is struct ublk_param_basic.
type paramBasic struct {
	Attrs            uint32
	LogicalBSShift   uint8
	PhysicalBSShift  uint8
	IOOptShift       uint8
	IOMinShift       uint8
	MaxSectors       uint32
	ChunkSectors     uint32
	DevSectors       uint64
	VirtBoundaryMask uint64
}

// paramDiscard is struct ublk_param_discard.
type paramDiscard struct {
	DiscardAlignment      uint32
	DiscardGranularity    uint32
	MaxDiscardSectors     uint32
	MaxWriteZeroesSectors uint32
	MaxDiscardSegments    uint16
	Reserved0             uint16
}

// paramDevt is struct ublk_param_devt (read only, from GET_PARAMS).
type paramDevt struct {
	CharMajor, CharMinor, DiskMajor, DiskMinor uint32
}

// paramZoned is struct ublk_param_zoned.
type paramZoned struct {
	MaxOpenZones, MaxActiveZones, MaxZoneAppendSectors uint32
	Reserved                                           [20]byte
}

// params is struct ublk_params as of 6.12.
type params struct {
	Len     uint32 // sizeof(params); the kernel may shorten it
	Types   uint32 // UBLK_PARAM_TYPE_* present
	Basic   paramBasic
	Discard paramDiscard
	Devt    paramDevt
	Zoned   paramZoned
}

// Size checks against the kernel ABI: a mismatch fails the build. A wrong
// dev_info size makes ADD_DEV fail with a bare EINVAL (reference NOTES §4).
var (
	_ [32]byte  = [unsafe.Sizeof(ctrlCmd{})]byte{}
	_ [64]byte  = [unsafe.Sizeof(devInfo{})]byte{}
	_ [24]byte  = [unsafe.Sizeof(ioDesc{})]byte{}
	_ [16]byte  = [unsafe.Sizeof(ioCmd{})]byte{}
	_ [32]byte  = [unsafe.Sizeof(paramBasic{})]byte{}
	_ [20]byte  = [unsafe.Sizeof(paramDiscard{})]byte{}
	_ [112]byte = [unsafe.Sizeof(params{})]byte{}
)

// ioBufOffset is the /dev/ublkcN file offset of tag's buffer in queue qid
// for USER_COPY pread (write data) and pwrite (read data).
func ioBufOffset(qid, tag int) int64 {
	return UBLKSRV_IO_BUF_OFFSET + int64(qid)<<UBLK_QID_OFF + int64(tag)<<UBLK_TAG_OFF
}

// descOffset is the mmap offset of queue qid's io descriptor array: the
// kernel spaces the arrays by the size for the largest depth, page aligned
// (ublk_max_cmd_buf_size).
func descOffset(qid int) int64 {
	return UBLKSRV_CMD_BUF_OFFSET + int64(qid)*int64(roundUp(UBLK_MAX_QUEUE_DEPTH*int(unsafe.Sizeof(ioDesc{})), pageSize))
}

// descLen is the mmap length of a queue's io descriptor array
// (ublk_queue_cmd_buf_size): the kernel refuses any other.
func descLen(depth int) int { return roundUp(depth*int(unsafe.Sizeof(ioDesc{})), pageSize) }

// pageSize is the kernel's PAGE_SIZE.
var pageSize = os.Getpagesize()

func roundUp(n, to int) int { return (n + to - 1) / to * to }

package ublk

import "syscall"

// A request is one IO the kernel handed to a tag, decoded from its
// ublksrv_io_desc and checked against the device.
type request struct {
	op  uint8 // UBLK_IO_OP_*
	fua bool  // UBLK_IO_F_FUA: durable before completion
	off int64 // bytes
	n   int64 // bytes; 0 for FLUSH
}

// decodeRequest decodes and checks the descriptor the kernel wrote for a
// tag. The kernel is trusted to keep to the device's limits, but a request
// that breaks them must fail alone, not take the server down: it returns
// EOPNOTSUPP for an operation ublk does not serve, and EIO for a range
// outside the device, or a read or write larger than maxIO (its buffer).
// A request whose errno is not 0 still has its op set.
func decodeRequest(d ioDesc, size int64, maxIO int) (request, syscall.Errno) {
	r := request{op: uint8(d.OpFlags & 0xff), fua: d.OpFlags&UBLK_IO_F_FUA != 0}
	switch r.op {
	case UBLK_IO_OP_FLUSH:
		return r, 0
	case UBLK_IO_OP_READ, UBLK_IO_OP_WRITE:
		if int64(d.NrSectors) > int64(maxIO)>>sectorShift {
			return r, syscall.EIO
		}
	case UBLK_IO_OP_DISCARD, UBLK_IO_OP_WRITE_ZEROES:
	default:
		return r, syscall.EOPNOTSUPP
	}
	sectors := uint64(size) >> sectorShift
	if d.NrSectors == 0 || d.StartSector > sectors || uint64(d.NrSectors) > sectors-d.StartSector {
		return r, syscall.EIO
	}
	r.off, r.n = int64(d.StartSector)<<sectorShift, int64(d.NrSectors)<<sectorShift
	return r, 0
}

// result is what COMMIT_AND_FETCH reports for a request that ended with
// errno en: the byte count for a successful read or write, 0 for the other
// operations, -errno on failure.
func (r request) result(en syscall.Errno) int32 {
	switch {
	case en != 0:
		return -int32(en)
	case r.op == UBLK_IO_OP_READ || r.op == UBLK_IO_OP_WRITE:
		return int32(r.n)
	}
	return 0
}

package ublk

import (
	"syscall"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	const size, maxIO = 1 << 20, 64 << 10 // 2048 sectors; 128 sectors per IO
	for _, tc := range []struct {
		name string
		d    ioDesc
		want request
		en   syscall.Errno
	}{
		{"read", ioDesc{OpFlags: UBLK_IO_OP_READ, NrSectors: 8, StartSector: 16},
			request{op: UBLK_IO_OP_READ, off: 16 * 512, n: 4096}, 0},
		{"write fua", ioDesc{OpFlags: UBLK_IO_OP_WRITE | UBLK_IO_F_FUA, NrSectors: 128, StartSector: 1920},
			request{op: UBLK_IO_OP_WRITE, fua: true, off: 1920 * 512, n: 64 << 10}, 0},
		{"flush", ioDesc{OpFlags: UBLK_IO_OP_FLUSH}, request{op: UBLK_IO_OP_FLUSH}, 0},
		{"discard beyond max IO", ioDesc{OpFlags: UBLK_IO_OP_DISCARD, NrSectors: 2048},
			request{op: UBLK_IO_OP_DISCARD, n: size}, 0},
		{"write zeroes", ioDesc{OpFlags: UBLK_IO_OP_WRITE_ZEROES | UBLK_IO_F_NOUNMAP, NrSectors: 1, StartSector: 2047},
			request{op: UBLK_IO_OP_WRITE_ZEROES, off: 2047 * 512, n: 512}, 0},
		{"write same", ioDesc{OpFlags: UBLK_IO_OP_WRITE_SAME, NrSectors: 8}, request{op: UBLK_IO_OP_WRITE_SAME}, syscall.EOPNOTSUPP},
		{"zone op", ioDesc{OpFlags: 13, NrSectors: 8}, request{op: 13}, syscall.EOPNOTSUPP},
		{"read past end", ioDesc{OpFlags: UBLK_IO_OP_READ, NrSectors: 8, StartSector: 2044}, request{op: UBLK_IO_OP_READ}, syscall.EIO},
		{"read at end", ioDesc{OpFlags: UBLK_IO_OP_READ, NrSectors: 1, StartSector: 2048}, request{op: UBLK_IO_OP_READ}, syscall.EIO},
		{"huge start", ioDesc{OpFlags: UBLK_IO_OP_DISCARD, NrSectors: 8, StartSector: 1 << 63}, request{op: UBLK_IO_OP_DISCARD}, syscall.EIO},
		{"empty write", ioDesc{OpFlags: UBLK_IO_OP_WRITE}, request{op: UBLK_IO_OP_WRITE}, syscall.EIO},
		{"write over max IO", ioDesc{OpFlags: UBLK_IO_OP_WRITE, NrSectors: 129}, request{op: UBLK_IO_OP_WRITE}, syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, en := decodeRequest(tc.d, size, maxIO)
			if got != tc.want || en != tc.en {
				t.Fatalf("decodeRequest(%+v) = %+v, %v; want %+v, %v", tc.d, got, en, tc.want, tc.en)
			}
		})
	}
}

func TestRequestResult(t *testing.T) {
	for _, tc := range []struct {
		r    request
		en   syscall.Errno
		want int32
	}{
		{request{op: UBLK_IO_OP_READ, n: 4096}, 0, 4096},
		{request{op: UBLK_IO_OP_WRITE, n: 512}, 0, 512},
		{request{op: UBLK_IO_OP_WRITE, n: 512}, syscall.ENOSPC, -int32(syscall.ENOSPC)},
		{request{op: UBLK_IO_OP_FLUSH}, 0, 0},
		{request{op: UBLK_IO_OP_DISCARD, n: 1 << 30}, 0, 0},
		{request{op: 99}, syscall.EOPNOTSUPP, -int32(syscall.EOPNOTSUPP)},
	} {
		if got := tc.r.result(tc.en); got != tc.want {
			t.Errorf("%+v.result(%v) = %d, want %d", tc.r, tc.en, got, tc.want)
		}
	}
}

// The descriptor is written by the kernel: whatever it holds, decoding
// must not panic, and an accepted request must lie inside the device and
// fit its buffer.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(uint32(UBLK_IO_OP_READ), uint32(8), uint64(0), int64(1<<20), 65536)
	f.Add(uint32(UBLK_IO_OP_DISCARD|UBLK_IO_F_FUA), uint32(1<<31), uint64(1<<60), int64(1<<40), 4096)
	f.Add(uint32(0xffffffff), uint32(0xffffffff), uint64(0xffffffffffffffff), int64(4096), 4096)
	f.Fuzz(func(t *testing.T, opFlags, nr uint32, start uint64, size int64, maxIO int) {
		if size <= 0 || size%4096 != 0 || maxIO < 4096 || maxIO > maxIOBytesLimit {
			t.Skip()
		}
		r, en := decodeRequest(ioDesc{OpFlags: opFlags, NrSectors: nr, StartSector: start}, size, maxIO)
		if en != 0 {
			if r.n != 0 || r.off != 0 {
				t.Fatalf("refused request has a range: %+v", r)
			}
			return
		}
		if r.off < 0 || r.n < 0 || r.off+r.n > size {
			t.Fatalf("accepted %+v outside a device of %d bytes", r, size)
		}
		if (r.op == UBLK_IO_OP_READ || r.op == UBLK_IO_OP_WRITE) && (r.n > int64(maxIO) || r.n == 0) {
			t.Fatalf("accepted %+v with a %d-byte buffer", r, maxIO)
		}
	})
}

package ublk

import (
	"testing"
	"unsafe"
)

func TestIoctlEncoding(t *testing.T) {
	// Values of the UBLK_U_* macros of ublk_cmd.h as the C preprocessor
	// computes them.
	for _, tc := range []struct {
		name      string
		got, want uint32
	}{
		{"GET_DEV_INFO", UBLK_U_CMD_GET_DEV_INFO, 0x80207502},
		{"ADD_DEV", UBLK_U_CMD_ADD_DEV, 0xc0207504},
		{"DEL_DEV", UBLK_U_CMD_DEL_DEV, 0xc0207505},
		{"START_DEV", UBLK_U_CMD_START_DEV, 0xc0207506},
		{"STOP_DEV", UBLK_U_CMD_STOP_DEV, 0xc0207507},
		{"SET_PARAMS", UBLK_U_CMD_SET_PARAMS, 0xc0207508},
		{"GET_PARAMS", UBLK_U_CMD_GET_PARAMS, 0x80207509},
		{"START_USER_RECOVERY", UBLK_U_CMD_START_USER_RECOVERY, 0xc0207510},
		{"END_USER_RECOVERY", UBLK_U_CMD_END_USER_RECOVERY, 0xc0207511},
		{"GET_FEATURES", UBLK_U_CMD_GET_FEATURES, 0x80207513},
		{"FETCH_REQ", UBLK_U_IO_FETCH_REQ, 0xc0107520},
		{"COMMIT_AND_FETCH_REQ", UBLK_U_IO_COMMIT_AND_FETCH_REQ, 0xc0107521},
	} {
		if tc.got != tc.want {
			t.Errorf("UBLK_U_%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
		if tc.name != "FETCH_REQ" && tc.name != "COMMIT_AND_FETCH_REQ" && ctrlName(tc.got) != tc.name {
			t.Errorf("ctrlName(%#x) = %q, want %q", tc.got, ctrlName(tc.got), tc.name)
		}
	}
}

// Field offsets the kernel relies on (pahole of ublk_cmd.h on x86_64).
func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"ctrl_cmd.addr", unsafe.Offsetof(ctrlCmd{}.Addr), 8},
		{"ctrl_cmd.data", unsafe.Offsetof(ctrlCmd{}.Data), 16},
		{"ctrl_cmd.dev_path_len", unsafe.Offsetof(ctrlCmd{}.DevPathLen), 24},
		{"dev_info.max_io_buf_bytes", unsafe.Offsetof(devInfo{}.MaxIOBufBytes), 8},
		{"dev_info.dev_id", unsafe.Offsetof(devInfo{}.DevID), 12},
		{"dev_info.flags", unsafe.Offsetof(devInfo{}.Flags), 24},
		{"dev_info.owner_uid", unsafe.Offsetof(devInfo{}.OwnerUID), 40},
		{"io_desc.start_sector", unsafe.Offsetof(ioDesc{}.StartSector), 8},
		{"io_desc.addr", unsafe.Offsetof(ioDesc{}.Addr), 16},
		{"io_cmd.result", unsafe.Offsetof(ioCmd{}.Result), 4},
		{"io_cmd.addr", unsafe.Offsetof(ioCmd{}.Addr), 8},
		{"params.basic", unsafe.Offsetof(params{}.Basic), 8},
		{"params.discard", unsafe.Offsetof(params{}.Discard), 40},
		{"params.devt", unsafe.Offsetof(params{}.Devt), 60},
		{"params.zoned", unsafe.Offsetof(params{}.Zoned), 76},
		{"param_basic.dev_sectors", unsafe.Offsetof(paramBasic{}.DevSectors), 16},
	} {
		if tc.got != tc.want {
			t.Errorf("offsetof(%s) = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestOffsets(t *testing.T) {
	for _, tc := range []struct {
		qid, tag int
		want     int64
	}{
		{0, 0, 0x80000000},
		{0, 1, 0x80000000 + 1<<25},
		{1, 0, 0x80000000 + 1<<41},
		{3, 4095, 0x80000000 + 3<<41 + 4095<<25},
	} {
		if got := ioBufOffset(tc.qid, tc.tag); got != tc.want {
			t.Errorf("ioBufOffset(%d, %d) = %#x, want %#x", tc.qid, tc.tag, got, tc.want)
		}
	}
	if pageSize == 4096 {
		if got := descOffset(2); got != 2*24*4096 {
			t.Errorf("descOffset(2) = %d, want %d", got, 2*24*4096)
		}
		if got := descLen(128); got != 4096 {
			t.Errorf("descLen(128) = %d, want 4096", got)
		}
		if got := descLen(200); got != 8192 {
			t.Errorf("descLen(200) = %d, want 8192", got)
		}
	}
}

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// refuseInUse fails if path is in use by the kernel: a block device that is
// mounted, swapped on or held by device mapper or md (the kernel refuses it
// an exclusive open), or a file that backs a loop device. --force does not
// override these: formatting a device while the kernel uses it corrupts
// both. Without force it also refuses a device or file that holds a known
// file system or volume signature.
func refuseInUse(path string, force bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeDevice != 0 {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%s is in use by the kernel (mounted, swap, device mapper or md); unmount or release it first", path)
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		unix.Close(fd)
	} else if loop := loopBacking(path); loop != "" {
		return fmt.Errorf("%s is the backing file of %s; detach it first (losetup -d %s)", path, loop, loop)
	}
	if force {
		return nil
	}
	if sig := signature(path); sig != "" {
		return fmt.Errorf("%s holds %s (formatting destroys it; use --force)", path, sig)
	}
	return nil
}

// loopBacking returns the loop device whose backing file is path, or "".
func loopBacking(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimSpace(string(b)) == abs {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		}
	}
	return ""
}

// signatures of what a device may hold, where blkid looks for them.
var signatures = []struct {
	name  string
	off   int64
	magic []byte
}{
	{"an ext2/3/4 file system", 1080, []byte{0x53, 0xef}},
	{"an XFS file system", 0, []byte("XFSB")},
	{"a btrfs file system", 65600, []byte("_BHRfS_M")},
	{"swap space", 4086, []byte("SWAPSPACE2")},
	{"a LUKS volume", 0, []byte("LUKS\xba\xbe")},
	{"an LVM physical volume", 512 + 24, []byte("LVM2 001")},
	{"a FAT file system", 82, []byte("FAT32   ")},
	{"an NTFS file system", 3, []byte("NTFS    ")},
}

// signature returns what the start of path holds, or "".
func signature(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 65600+8)
	n, _ := f.ReadAt(buf, 0)
	buf = buf[:n]
	for _, s := range signatures {
		if end := s.off + int64(len(s.magic)); end <= int64(len(buf)) && bytes.Equal(buf[s.off:end], s.magic) {
			return s.name
		}
	}
	return ""
}

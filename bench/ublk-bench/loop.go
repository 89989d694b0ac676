package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// makeFile creates the loop device's plain file and allocates every block
// of it, as a file system image or a VM's disk would be: the loop side's
// writes then overwrite, and no read hits a hole.
func makeFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = unix.Fallocate(int(f.Fd()), 0 /* mode: allocate */, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = f.Truncate(size) // the first writes allocate instead
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// attachLoop binds file to a free loop device with direct IO, so the loop
// side goes around the page cache as the store's O_DIRECT file does.
func attachLoop(ctx context.Context, file string) (string, error) {
	out, err := command(ctx, "losetup", "--find", "--show", "--direct-io=on", file)
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(out)
	return dev, waitNode(dev)
}

// detachLoop unbinds a loop device; the kernel refuses while something
// still holds it for a moment, so that is retried.
func detachLoop(dev string) error {
	var err error
	for range 50 { // about 5 s
		if _, err = command(context.Background(), "losetup", "--detach", dev); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// loopDirectIO reports whether the kernel kept direct IO on for the loop
// device: it turns it off when the backing file system cannot do it.
func loopDirectIO(dev string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop/dio"))
	switch {
	case err != nil:
		return "unknown"
	case strings.TrimSpace(string(b)) == "1":
		return "on"
	}
	return "off (the file system cannot do direct IO: the loop device uses the page cache)"
}

// fsType names the file system that holds dir, for the header.
func fsType(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	}
	return fmt.Sprintf("magic %#x", st.Type)
}

// command runs a program and returns its stdout; the error carries stderr.
func command(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

package testenv

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// LoopDevice attaches file to a free loop device and returns the device's
// path, for example /dev/loop3. The device is detached when the test ends;
// the caller closes whatever it opened on it first (t.Cleanup runs in last
// added, first called order). It skips the test without root or loop
// devices.
func LoopDevice(t testing.TB, file string) string {
	t.Helper()
	RequireRoot(t)
	dev, err := attachLoop(file)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("testenv: no loop devices: %v", err)
	}
	if err != nil {
		t.Fatalf("LoopDevice(%s): %v", file, err)
	}
	t.Cleanup(func() {
		if err := detachLoop(dev); err != nil {
			t.Errorf("detach %s: %v", dev, err)
		}
	})
	return dev
}

// attachLoop binds file to a free loop device with LOOP_CONFIGURE (Linux
// 5.8). Another process may take the free device first: then LOOP_CONFIGURE
// fails with EBUSY and the next free one is tried.
func attachLoop(file string) (string, error) {
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer ctl.Close()
	for range 10 { // a few races lost in a row is already unlikely
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		err = configureLoop(dev, f)
		if !errors.Is(err, unix.EBUSY) {
			return dev, err
		}
	}
	return "", fmt.Errorf("every free loop device was taken first: %w", unix.EBUSY)
}

func configureLoop(dev string, backing *os.File) error {
	d, err := openRetry(dev)
	if err != nil {
		return err
	}
	defer d.Close()
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	if err := unix.IoctlLoopConfigure(int(d.Fd()), &cfg); err != nil {
		return fmt.Errorf("%s: LOOP_CONFIGURE: %w", dev, err)
	}
	return nil
}

// openRetry opens a device node that devtmpfs may create a moment after
// LOOP_CTL_GET_FREE added the device.
func openRetry(dev string) (*os.File, error) {
	for i := 0; ; i++ {
		d, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err == nil || !errors.Is(err, os.ErrNotExist) || i == 50 {
			return d, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// detachLoop unbinds a loop device. The kernel refuses while something
// else holds it briefly (udev probing it, say), so EBUSY is retried.
func detachLoop(dev string) error {
	d, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	for i := 0; ; i++ {
		err := unix.IoctlSetInt(int(d.Fd()), unix.LOOP_CLR_FD, 0)
		if err == nil || !errors.Is(err, unix.EBUSY) || i == 100 {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

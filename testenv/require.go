package testenv

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"testing"
)

// GuestEnv is the variable the VM runner sets to 1 for programs it runs in
// the guest.
const GuestEnv = "CLOUDFS_VM_GUEST"

// ublkControl is the ublk driver's control device.
const ublkControl = "/dev/ublk-control"

// InVM reports whether the test runs inside the VM of testenv/vm.
func InVM() bool { return os.Getenv(GuestEnv) == "1" }

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testenv: needs root (make test-e2e runs the e2e tests as root)")
	}
}

// RequireUblk skips the test unless the kernel offers ublk: it needs root
// and /dev/ublk-control, and loads ublk_drv with modprobe when the device is
// missing. Host kernels here have no ublk; make test-e2e runs the test in
// the VM, which it selects because the test binary calls RequireUblk.
func RequireUblk(t testing.TB) {
	t.Helper()
	needsVM()
	RequireRoot(t)
	if err := probeUblk(); err != nil {
		t.Skipf("testenv: no ublk on this kernel (%v): make test-e2e runs ublk tests in a VM", err)
	}
}

// probeUblk checks for the ublk control device, loading the module first
// if it is missing.
func probeUblk() error {
	_, err := os.Stat(ublkControl)
	if errors.Is(err, fs.ErrNotExist) {
		// No module support or no module: modprobe fails and err stays.
		_ = exec.Command("modprobe", "ublk_drv").Run()
		_, err = os.Stat(ublkControl)
	}
	return err
}

// needsVM marks a test binary as needing the VM: in its auto mode the
// runner (testenv/vmrun) looks for this function's symbol, vm.MarkerSymbol,
// and boots the VM only for binaries that have it. Every VM-only
// requirement calls it. go:noinline keeps the call, and so the symbol.
//
//go:noinline
func needsVM() {}

// RequireFUSE skips the test unless it can mount FUSE file systems: root
// (which mounts without fusermount) and an openable /dev/fuse.
func RequireFUSE(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("testenv: no FUSE: %v", err)
	}
	f.Close()
}

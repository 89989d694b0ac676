package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"cloudfs/testenv/vm"
)

// skipped runs f in a subtest and reports whether it skipped the subtest.
func skipped(t *testing.T, f func(t *testing.T)) bool {
	t.Helper()
	var s bool
	t.Run("probe", func(t *testing.T) {
		defer func() { s = t.Skipped() }()
		f(t)
	})
	return s
}

func TestGuestEnvMatchesRunner(t *testing.T) {
	if GuestEnv != vm.GuestEnvVar {
		t.Errorf("GuestEnv = %q, vm.GuestEnvVar = %q", GuestEnv, vm.GuestEnvVar)
	}
}

// TestMarkerLinked checks that this test binary, whose tests call
// RequireUblk, carries the symbol the runner looks for.
func TestMarkerLinked(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ok, err := vm.WantsVM(self)
	if err != nil || !ok {
		t.Errorf("WantsVM(%s) = %v, %v, want true: the runner would not boot the VM for RequireUblk (symbol %s)",
			self, ok, err, vm.MarkerSymbol)
	}
}

func TestInVM(t *testing.T) {
	t.Setenv(GuestEnv, "1")
	if !InVM() {
		t.Errorf("InVM() = false with %s=1", GuestEnv)
	}
	t.Setenv(GuestEnv, "")
	if InVM() {
		t.Errorf("InVM() = true with %s empty", GuestEnv)
	}
}

func TestRequireRoot(t *testing.T) {
	if got, want := skipped(t, func(t *testing.T) { RequireRoot(t) }), os.Geteuid() != 0; got != want {
		t.Errorf("RequireRoot skipped = %v, want %v (euid %d)", got, want, os.Geteuid())
	}
}

func TestRequireUblk(t *testing.T) {
	_, err := os.Stat(ublkControl)
	want := os.Geteuid() != 0 || err != nil
	if want && probeUblk() == nil && os.Geteuid() == 0 {
		want = false // modprobe loaded it
	}
	if got := skipped(t, func(t *testing.T) { RequireUblk(t) }); got != want {
		t.Errorf("RequireUblk skipped = %v, want %v (stat %s: %v)", got, want, ublkControl, err)
	}
}

func TestRequireFUSE(t *testing.T) {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	want := os.Geteuid() != 0 || err != nil
	if got := skipped(t, func(t *testing.T) { RequireFUSE(t) }); got != want {
		t.Errorf("RequireFUSE skipped = %v, want %v (open /dev/fuse: %v)", got, want, err)
	}
}

func TestLoopDevice(t *testing.T) {
	file := filepath.Join(t.TempDir(), "disk")
	want := bytes.Repeat([]byte("cloudfs!"), 64<<10/8) // 64 KiB: whole 512-byte sectors
	if err := os.WriteFile(file, want, 0o644); err != nil {
		t.Fatal(err)
	}
	var dev string
	t.Run("attached", func(t *testing.T) {
		dev = LoopDevice(t, file)
		got, err := os.ReadFile(dev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("read %s: %d bytes differ from %s", dev, len(got), file)
		}
	})
	if dev == "" {
		return // skipped: no root or no loop devices
	}
	backing := filepath.Join("/sys/block", filepath.Base(dev), "loop/backing_file")
	if b, err := os.ReadFile(backing); err == nil {
		t.Errorf("%s still attached after the test (backing file %s)", dev, bytes.TrimSpace(b))
	}
}

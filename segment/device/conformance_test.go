package device_test

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cloudfs/segment/device"
	"cloudfs/segment/device/devicetest"
	"cloudfs/segment/device/faultdev"
)

// testSize is the size of the devices under test: 2048 blocks of 4096,
// plenty for the suite and cheap to create.
const testSize = 8 << 20

func TestConformance(t *testing.T) {
	impls := []struct {
		name string
		open func(t *testing.T) device.Device
	}{
		{"File/Direct", openTempFile(device.Options{})},
		{"File/Buffered", openTempFile(device.Options{Buffered: true})},
		{"File/Loop512", openLoop(512)},
		{"File/Loop4096", openLoop(4096)},
		{"Mem/4096", func(*testing.T) device.Device { return device.NewMem(testSize, 4096) }},
		{"Mem/512", func(*testing.T) device.Device { return device.NewMem(testSize, 512) }},
		{"Mem/CrashClone", openCrashClone},
		{"FaultDev/Mem", func(*testing.T) device.Device { return faultdev.Wrap(device.NewMem(testSize, 4096)) }},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) { devicetest.Run(t, impl.open) })
	}
}

// openTempFile returns an opener of fresh files in a test's temp dir.
func openTempFile(opts device.Options) func(t *testing.T) device.Device {
	return func(t *testing.T) device.Device {
		path := filepath.Join(t.TempDir(), "dev")
		if err := device.Create(path, testSize); err != nil {
			t.Fatal(err)
		}
		f, err := device.Open(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
}

// openLoop returns an opener of fresh loop block devices with the given
// logical sector size. It skips the test unless loop devices work.
func openLoop(sectorSize int) func(t *testing.T) device.Device {
	return func(t *testing.T) device.Device {
		f, err := device.Open(attachLoop(t, testSize, sectorSize), device.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
}

// attachLoop attaches a fresh sparse file of size bytes to a loop device
// and returns the device's path; a cleanup detaches it. It skips the test
// unless running as root with loop device support.
func attachLoop(t *testing.T, size int64, sectorSize int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop device support: %v", err)
	}
	backing := filepath.Join(t.TempDir(), "loop.img")
	if err := device.Create(backing, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", "--sector-size", itoa(sectorSize), backing).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", loop, err, out)
		}
	})
	return loop
}

// openCrashClone returns the crash clone of a Mem whose only writes were
// unsynced and dropped by the crash, so it reads as zeros.
func openCrashClone(t *testing.T) device.Device {
	m := device.NewMem(testSize, 4096)
	buf := device.AlignedBuf(64 << 10)
	for i := range buf {
		buf[i] = 0xee
	}
	for off := int64(0); off < testSize; off += 1 << 20 {
		if _, err := m.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	return m.CrashClone(device.CrashCfg{UnsyncedPercent: 0, Rand: rand.New(rand.NewPCG(1, 1))})
}

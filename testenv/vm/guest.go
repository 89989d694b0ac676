package vm

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Guest devices, in the order the runner attaches them.
const (
	consoleTTY = "/dev/ttyS0" // kernel console and the agent's messages
	statusTTY  = "/dev/ttyS1" // the exit status alone: no kernel message lands amid it
	// outputPort names the virtio serial port that carries the program's
	// stdout and stderr. A UART moves about 150 KB/s under TCG, one trapped
	// byte at a time; a virtio port moves whole buffers (MB/s), has no line
	// discipline, and a write returns once the host has the data, so
	// nothing is lost at power-off.
	outputPort = "cloudfs.out"
	resultsDev = "/dev/vda" // a tar of the output directories
	scratchDev = "/dev/vdb" // the scratch disk of Config.Disk
)

// IsGuest reports whether this process is the guest agent: PID 1 of the VM,
// started by the kernel as /init.
func IsGuest() bool { return os.Getpid() == 1 }

// GuestMain is the guest agent. It sets up the guest, runs the program of
// the spec, writes its outputs to the results disk, prints its exit status
// on the console and powers the VM off. It does not return.
func GuestMain() {
	rc, err := guestRun()
	msg := fmt.Sprintf("%s%d\n", exitMarker, rc)
	if err != nil {
		msg = fmt.Sprintf("%s%v\n", errorMarker, err)
	}
	c := console()
	fmt.Fprintf(c, "\n%s", msg)
	if st, err := os.OpenFile(statusTTY, os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		fmt.Fprint(st, msg)
		drain(st)
	}
	drain(c)
	unix.Sync()
	// Only a reboot syscall ends PID 1 cleanly; QEMU runs with -no-reboot,
	// so even a restart would stop it.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

var consoleFile *os.File

// console returns the console, opened once; stderr until it can be.
func console() *os.File {
	if consoleFile == nil {
		f, err := os.OpenFile(consoleTTY, os.O_WRONLY|unix.O_NOCTTY, 0)
		if err != nil {
			return os.Stderr
		}
		consoleFile = f
	}
	return consoleFile
}

func guestRun() (int, error) {
	if err := mountAll(); err != nil {
		return 0, err
	}
	b, err := os.ReadFile(specPath)
	if err != nil {
		return 0, err
	}
	var s spec
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, fmt.Errorf("%s: %w", specPath, err)
	}
	for _, m := range s.Modules {
		if err := loadModule(m); err != nil {
			return 0, err
		}
	}
	if err := loopbackUp(); err != nil {
		return 0, err
	}
	for _, dev := range s.Devices {
		if err := waitFor(dev); err != nil {
			return 0, err
		}
	}
	for _, d := range append([]string{s.Dir}, s.Outputs...) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	if up, err := os.ReadFile("/proc/uptime"); err == nil {
		f := strings.Fields(string(up))
		fmt.Fprintf(console(), "%s%s\n", startMarker, f[0])
	}
	rc, err := runProgram(&s)
	if err != nil {
		return 0, err
	}
	if err := writeOutputs(s.Outputs); err != nil {
		return 0, fmt.Errorf("results: %w", err)
	}
	return rc, nil
}

// mountAll mounts the pseudo file systems. The root is the initramfs's
// tmpfs (the kernel picks tmpfs when no root= is given); it is remounted
// to take most of the memory, since /tmp and the tests' files live there.
func mountAll() error {
	mounts := []struct{ src, dst, fstype, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"devpts", "/dev/pts", "devpts", "ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", ""},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, m.data); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT, "size=90%"); err != nil {
		return fmt.Errorf("remount / with size=90%%: %w", err)
	}
	return os.Chmod("/tmp", 0o1777)
}

// loadModule loads a kernel module file.
func loadModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", file, err)
	}
	return nil
}

// waitFor waits for a device node: devtmpfs creates nodes asynchronously
// after a driver registers its device.
func waitFor(dev string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat(dev)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// loopbackUp brings lo up; the kernel then gives it 127.0.0.1 and ::1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: up: %w", err)
	}
	return nil
}

// runProgram runs the spec's program with its stdout and stderr on the
// output port, and returns its exit status (128+n when signal n killed it,
// as shells report it).
func runProgram(s *spec) (int, error) {
	out, err := openPort(outputPort)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	cmd := exec.Command(s.Program, s.Args...)
	cmd.Dir, cmd.Env = s.Dir, s.Env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	case err != nil:
		return 0, fmt.Errorf("run %s: %w", s.Program, err)
	}
	return 0, nil
}

// openPort opens the virtio serial port with the given name. Without udev
// there is no /dev/virtio-ports/<name> link: sysfs maps names to vportNpM.
func openPort(name string) (*os.File, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ports, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, p := range ports {
			if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == name {
				dev := "/dev/" + filepath.Base(filepath.Dir(p))
				if err := waitFor(dev); err != nil {
					return nil, err
				}
				return os.OpenFile(dev, os.O_WRONLY, 0)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio serial port named %s", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// drain waits until a tty has sent everything written to it: the VM powers
// off right after, and bytes still in the UART's buffer would be lost.
func drain(f *os.File) {
	done := make(chan struct{})
	go func() {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1) // tcdrain
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// writeOutputs writes the regular files under dirs as a tar to the results
// disk, named by their absolute paths.
func writeOutputs(dirs []string) error {
	if len(dirs) == 0 {
		return nil
	}
	f, err := os.OpenFile(resultsDev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			return addFile(tw, p)
		})
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Sync()
}

func addFile(tw *tar.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	h.Name = p
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

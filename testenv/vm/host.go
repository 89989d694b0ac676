package vm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// sbinDirs are searched after PATH: a non-root user's PATH often lacks them,
// and mkfs.ext4 or losetup live there.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// lookProgram finds a host program by name (in PATH, then sbinDirs) or
// checks a path, and returns its absolute path.
func lookProgram(name string) (string, error) {
	if strings.Contains(name, "/") {
		p, err := filepath.Abs(name)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(p); err != nil {
			return "", err
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %s: %w", name, exec.ErrNotFound)
}

// hostTools are the programs the runner itself needs on the host.
var hostTools = []string{"qemu-system-x86_64", "busybox", "xz", "apt-get", "dpkg-deb"}

// ensurePrograms installs, with apt, the Debian packages of the programs in
// names that are missing. Programs without a known package must exist.
func (r *runner) ensurePrograms(names []string) error {
	var pkgs, unknown []string
	for _, name := range names {
		if _, err := lookProgram(name); err == nil {
			continue
		}
		if p, ok := hostPackages[filepath.Base(name)]; ok {
			if !slices.Contains(pkgs, p) {
				pkgs = append(pkgs, p)
			}
			continue
		}
		unknown = append(unknown, name)
	}
	if len(unknown) > 0 {
		return fmt.Errorf("host programs not found and of no known package: %s", strings.Join(unknown, " "))
	}
	if len(pkgs) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing host packages; as root: apt-get install --no-install-recommends %s",
			strings.Join(pkgs, " "))
	}
	start := time.Now()
	r.logf("installing host packages (once): %s", strings.Join(pkgs, " "))
	if err := aptInstall(pkgs); err != nil {
		return err
	}
	r.logf("installed %s in %.1fs", strings.Join(pkgs, " "), time.Since(start).Seconds())
	for _, name := range names {
		if _, err := lookProgram(name); err != nil {
			return fmt.Errorf("after installing %s: %w", strings.Join(pkgs, " "), err)
		}
	}
	return nil
}

// aptInstall installs pkgs without their recommendations. Stale or missing
// package lists are the usual failure: update them once and retry.
func aptInstall(pkgs []string) error {
	// Another apt may hold the dpkg lock (a parallel CI step, unattended
	// upgrades): wait for it rather than fail.
	args := append([]string{"install", "-y", "-qq", "--no-install-recommends",
		"-o", "DPkg::Lock::Timeout=300"}, pkgs...)
	if _, err := command("apt-get", args...); err == nil {
		return nil
	}
	if out, err := command("apt-get", "update", "-qq"); err != nil {
		return fmt.Errorf("apt-get update: %w\n%s", err, out)
	}
	if out, err := command("apt-get", args...); err != nil {
		return fmt.Errorf("apt-get install %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	return nil
}

// command runs a host command non-interactively and returns its combined
// output.
func command(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// lockCache takes an exclusive lock on the cache directory, so that
// parallel first runs (go test runs packages in parallel) install and fetch
// once while the others wait. The returned function releases it.
func lockCache(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

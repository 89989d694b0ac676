package vm

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config says how to build and boot the guest. FromEnv fills it from the
// CLOUDFS_VM_* variables; the zero value of a field means its default.
type Config struct {
	// CacheDir holds the kernel and the apt lists used to fetch it.
	CacheDir string
	// Suite and Flavour name the Debian kernel: linux-image-<Flavour> of
	// <Suite>, resolved to its current ABI build when the cache is empty.
	Suite, Flavour string
	Memory         string        // guest memory, QEMU syntax (3G)
	CPUs           int           // guest vCPUs
	Timeout        time.Duration // wall-clock limit of one run, boot included
	Disk           string        // size of a scratch disk /dev/vdb; "" for none
	Accel          string        // tcg, or kvm where KVM can run a stock kernel
	// Programs are host programs put into the guest at their host path,
	// with the shared libraries they link (names are looked up in PATH).
	Programs []string
	// Files are host files or directories put into the guest at the same
	// absolute path; the directory of each executable file is put first in
	// the guest's PATH.
	Files []string
	// Modules are loaded at boot, with their dependencies, besides
	// bootModules. extraModules can always be loaded with modprobe.
	Modules []string
	// Env names further host variables to pass into the guest, besides
	// the ones passEnv selects.
	Env []string
	// QEMUArgs are appended to QEMU's command line (devices, -cpu tweaks).
	QEMUArgs []string
	// Mode is "auto" (a VM only for binaries that call testenv.RequireUblk
	// or another VM-only requirement), "vm" or "host".
	Mode    string
	Verbose bool      // print timings and the guest console
	Log     io.Writer // progress and failures; nil means os.Stderr
}

// Defaults.
const (
	DefaultSuite   = "trixie"      // Debian 13: kernel 6.12 with CONFIG_BLK_DEV_UBLK=m; bookworm's 6.1 has none
	DefaultFlavour = "cloud-amd64" // 35 MB .deb against 109 MB for amd64, and it boots faster
	DefaultMemory  = "3G"          // TCG allocates lazily; room for a tmpfs root holding test data
	DefaultCPUs    = 2             // the CI machine has 2 cores; more vCPUs only contend
	// defaultTimeout applies when the test binary has no -test.timeout.
	defaultTimeout = 30 * time.Minute
	// bootSlack is added to -test.timeout: the test binary's own timeout
	// fires first and prints its goroutines; this limit only catches a hung VM.
	bootSlack = 2 * time.Minute
)

// DefaultPrograms are the host programs the ublk e2e suite uses: ext4
// tools, fio, and util-linux's fuller versions of what busybox also has.
var DefaultPrograms = []string{
	"mkfs.ext4", "e2fsck", "tune2fs", "dumpe2fs", "debugfs",
	"fio", "blkdiscard", "losetup", "mount", "umount", "blockdev",
}

// hostPackages maps programs to the Debian package that provides them, so a
// missing one can be installed. Programs not listed must already be there.
var hostPackages = map[string]string{
	"qemu-system-x86_64": "qemu-system-x86",
	"busybox":            "busybox-static",
	"xz":                 "xz-utils",
	"mkfs.ext4":          "e2fsprogs",
	"e2fsck":             "e2fsprogs",
	"tune2fs":            "e2fsprogs",
	"dumpe2fs":           "e2fsprogs",
	"debugfs":            "e2fsprogs",
	"fio":                "fio",
	"blkdiscard":         "util-linux",
	"losetup":            "mount",
	"mount":              "mount",
	"umount":             "mount",
	"blockdev":           "util-linux",
	"mkfs.xfs":           "xfsprogs",
	"dmsetup":            "dmsetup",
}

// bootModules are loaded by the guest at boot: ublk itself, loop devices,
// and virtio_blk for the results and scratch disks. None has dependencies.
var bootModules = []string{"ublk_drv", "loop", "virtio_blk"}

// extraModules are in the guest for modprobe, not loaded: RAM disks,
// device-mapper targets for fault injection, null_blk, and veth and bridge
// for network namespaces.
var extraModules = []string{"brd", "null_blk", "dm_flakey", "dm_delay", "dm_log_writes", "veth", "bridge"}

// FromEnv returns the configuration the environment asks for:
//
//	CLOUDFS_VM            auto (default), vm or host
//	CLOUDFS_VM_CACHE      cache directory (default /var/cache/cloudfs-testenv
//	                      for root, else $XDG_CACHE_HOME/cloudfs-testenv)
//	CLOUDFS_VM_SUITE      Debian suite of the kernel (trixie)
//	CLOUDFS_VM_FLAVOUR    kernel flavour (cloud-amd64)
//	CLOUDFS_VM_MEM        guest memory (3G)
//	CLOUDFS_VM_CPUS       guest vCPUs (2)
//	CLOUDFS_VM_TIMEOUT    wall-clock limit, a Go duration (-test.timeout + 2m, else 30m)
//	CLOUDFS_VM_DISK       scratch disk size, e.g. 1G: /dev/vdb (none)
//	CLOUDFS_VM_ACCEL      tcg (default) or kvm
//	CLOUDFS_VM_PROGRAMS   more host programs, space- or comma-separated;
//	                      -name drops one of DefaultPrograms
//	CLOUDFS_VM_FILES      host files or directories, colon-separated
//	CLOUDFS_VM_MODULES    more kernel modules to load at boot
//	CLOUDFS_VM_ENV        more variable names to pass into the guest
//	CLOUDFS_VM_QEMU_ARGS  more QEMU arguments, space-separated
//	CLOUDFS_VM_VERBOSE    1: print timings and the guest console
func FromEnv() (Config, error) {
	c := Config{
		CacheDir: os.Getenv("CLOUDFS_VM_CACHE"),
		Suite:    os.Getenv("CLOUDFS_VM_SUITE"),
		Flavour:  os.Getenv("CLOUDFS_VM_FLAVOUR"),
		Memory:   os.Getenv("CLOUDFS_VM_MEM"),
		Disk:     os.Getenv("CLOUDFS_VM_DISK"),
		Accel:    os.Getenv("CLOUDFS_VM_ACCEL"),
		Programs: fields(os.Getenv("CLOUDFS_VM_PROGRAMS")),
		Files:    filepath.SplitList(os.Getenv("CLOUDFS_VM_FILES")),
		Modules:  fields(os.Getenv("CLOUDFS_VM_MODULES")),
		Env:      fields(os.Getenv("CLOUDFS_VM_ENV")),
		QEMUArgs: strings.Fields(os.Getenv("CLOUDFS_VM_QEMU_ARGS")),
		Mode:     os.Getenv("CLOUDFS_VM"),
	}
	c.Verbose, _ = strconv.ParseBool(os.Getenv("CLOUDFS_VM_VERBOSE"))
	if s := os.Getenv("CLOUDFS_VM_CPUS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return c, fmt.Errorf("CLOUDFS_VM_CPUS=%q: want a positive number", s)
		}
		c.CPUs = n
	}
	if s := os.Getenv("CLOUDFS_VM_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("CLOUDFS_VM_TIMEOUT=%q: want a positive duration such as 10m", s)
		}
		c.Timeout = d
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	switch c.Mode {
	case "", "auto", "vm", "host":
	default:
		return fmt.Errorf("CLOUDFS_VM=%q: want auto, vm or host", c.Mode)
	}
	switch c.Accel {
	case "", "tcg", "kvm":
	default:
		return fmt.Errorf("accel %q: want tcg or kvm", c.Accel)
	}
	for _, f := range c.Files {
		if !filepath.IsAbs(f) {
			return fmt.Errorf("CLOUDFS_VM_FILES: %q is not an absolute path", f)
		}
	}
	return nil
}

// withDefaults returns c with every empty field set to its default.
func (c Config) withDefaults() Config {
	if c.CacheDir == "" {
		c.CacheDir = defaultCacheDir()
	}
	c.Suite = or(c.Suite, DefaultSuite)
	c.Flavour = or(c.Flavour, DefaultFlavour)
	c.Memory = or(c.Memory, DefaultMemory)
	c.Accel = or(c.Accel, "tcg")
	c.Mode = or(c.Mode, "auto")
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	if c.Log == nil {
		c.Log = os.Stderr
	}
	c.Programs = programList(c.Programs)
	return c
}

// programList returns DefaultPrograms with the names in more added, except
// that "-name" removes name (CLOUDFS_VM_PROGRAMS=-fio boots with a smaller
// initramfs: fio links 80 MB of libraries).
func programList(more []string) []string {
	list := slices.Clone(DefaultPrograms)
	for _, p := range more {
		if name, ok := strings.CutPrefix(p, "-"); ok {
			list = slices.DeleteFunc(list, func(s string) bool { return s == name })
		} else {
			list = append(list, p)
		}
	}
	return unique(list)
}

func defaultCacheDir() string {
	if os.Geteuid() == 0 {
		return "/var/cache/cloudfs-testenv"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "cloudfs-testenv")
	}
	return filepath.Join(os.TempDir(), "cloudfs-testenv")
}

// timeoutFor returns the wall-clock limit of a run of a test binary with args.
func (c Config) timeoutFor(args []string) time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-test.timeout="); ok {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				return d + bootSlack
			}
		}
	}
	return defaultTimeout
}

// passEnv reports whether host variable name goes into the guest: the
// project's own (CLOUDFS_), the Go runtime's knobs, and those named in extra.
func passEnv(name string, extra []string) bool {
	switch name {
	case "GOTRACEBACK", "GODEBUG", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GORACE", "GOCOVERDIR":
		return true
	}
	return strings.HasPrefix(name, "CLOUDFS_") || slices.Contains(extra, name)
}

// guestEnv returns the environment of the program in the guest: the
// passed host variables, then the guest's own, which win.
func guestEnv(host, extra []string, path string) []string {
	var env []string
	for _, kv := range host {
		name, _, _ := strings.Cut(kv, "=")
		if passEnv(name, extra) && !slices.Contains(guestOwnEnv, name) {
			env = append(env, kv)
		}
	}
	return append(env,
		"PATH="+path,
		"HOME=/root",
		"USER=root",
		"LOGNAME=root",
		"TMPDIR=/tmp",
		GuestEnvVar+"=1",
	)
}

// guestOwnEnv are the variables the guest sets itself.
var guestOwnEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", GuestEnvVar}

// GuestEnvVar is set to 1 for programs run in the guest (testenv.InVM).
const GuestEnvVar = "CLOUDFS_VM_GUEST"

// guestPath is PATH in the guest: host programs (/usr/...) before
// busybox's applets (/bin, /sbin), so util-linux's mount wins over busybox's.
const guestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// outputDirs returns the host directories that test flags in args write
// into (the test log go test reads for caching, coverage, profiles); the
// guest creates them and their contents come back to the host.
func outputDirs(args []string, env []string) []string {
	var dirs []string
	for _, a := range args {
		name, v, ok := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if !ok || !filepath.IsAbs(v) {
			continue
		}
		switch name {
		case "test.outputdir", "test.gocoverdir":
			dirs = append(dirs, v)
		case "test.testlogfile", "test.coverprofile", "test.cpuprofile", "test.memprofile",
			"test.blockprofile", "test.mutexprofile", "test.trace":
			dirs = append(dirs, filepath.Dir(v))
		}
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOCOVERDIR="); ok && filepath.IsAbs(v) {
			dirs = append(dirs, v)
		}
	}
	return unique(dirs)
}

func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func unique(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

package vm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPassEnv(t *testing.T) {
	host := []string{
		"CLOUDFS_X=1", "GOTRACEBACK=all", "HOME=/home/me", "PATH=/usr/bin",
		"SECRET=s", "EXTRA=e", "TMPDIR=/var/tmp", "CLOUDFS_VM_GUEST=0", "GOCOVERDIR=/c",
	}
	got := guestEnv(host, []string{"EXTRA"}, "/p")
	want := []string{
		"CLOUDFS_X=1", "GOTRACEBACK=all", "EXTRA=e", "GOCOVERDIR=/c",
		"PATH=/p", "HOME=/root", "USER=root", "LOGNAME=root", "TMPDIR=/tmp", "CLOUDFS_VM_GUEST=1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("guestEnv(%q) =\n%q, want\n%q", host, got, want)
	}
}

func TestOutputDirs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"none", []string{"-test.v=true", "-test.run=X"}, nil, nil},
		{"testlog", []string{"-test.testlogfile=/w/b001/testlog.txt"}, nil, []string{"/w/b001"}},
		{"cover", []string{"-test.gocoverdir=/w/b001/gocoverdir", "-test.coverprofile=/o/c.out"}, nil,
			[]string{"/w/b001/gocoverdir", "/o"}},
		{"relative ignored", []string{"-test.cpuprofile=cpu.out"}, nil, nil},
		{"env", nil, []string{"GOCOVERDIR=/cov", "X=/y"}, []string{"/cov"}},
		{"dedup", []string{"-test.outputdir=/o", "-test.trace=/o/t"}, nil, []string{"/o"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := outputDirs(tc.args, tc.env); !slices.Equal(got, tc.want) {
				t.Errorf("outputDirs(%q, %q) = %q, want %q", tc.args, tc.env, got, tc.want)
			}
		})
	}
}

func TestTimeoutFor(t *testing.T) {
	tests := []struct {
		cfg  time.Duration
		args []string
		want time.Duration
	}{
		{0, nil, defaultTimeout},
		{0, []string{"-test.timeout=10m0s"}, 10*time.Minute + bootSlack},
		{0, []string{"-test.timeout=0s"}, defaultTimeout},
		{time.Minute, []string{"-test.timeout=10m0s"}, time.Minute},
	}
	for _, tc := range tests {
		if got := (Config{Timeout: tc.cfg}).timeoutFor(tc.args); got != tc.want {
			t.Errorf("Config{Timeout: %v}.timeoutFor(%q) = %v, want %v", tc.cfg, tc.args, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512", 512, true}, {"4K", 4 << 10, true}, {"512M", 512 << 20, true}, {"2g", 2 << 30, true},
		{"1T", 1 << 40, true}, {"", 0, false}, {"G", 0, false}, {"-1G", 0, false}, {"1.5G", 0, false},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("parseSize(%q) = %d, %v, want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("CLOUDFS_VM_CPUS", "1")
	t.Setenv("CLOUDFS_VM_TIMEOUT", "90s")
	t.Setenv("CLOUDFS_VM_PROGRAMS", "fio, cmp sha256sum")
	t.Setenv("CLOUDFS_VM_FILES", "/a/cloudfs:/b/data")
	t.Setenv("CLOUDFS_VM", "vm")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.CPUs != 1 || c.Timeout != 90*time.Second || c.Mode != "vm" ||
		!slices.Equal(c.Programs, []string{"fio", "cmp", "sha256sum"}) ||
		!slices.Equal(c.Files, []string{"/a/cloudfs", "/b/data"}) {
		t.Errorf("FromEnv() = %+v", c)
	}
	d := c.withDefaults()
	if n := strings.Count(strings.Join(d.Programs, " "), "fio"); n != 1 {
		t.Errorf("withDefaults().Programs = %q: fio %d times, want once", d.Programs, n)
	}
	for name, val := range map[string]string{
		"CLOUDFS_VM_CPUS": "0", "CLOUDFS_VM_TIMEOUT": "soon", "CLOUDFS_VM": "cloud", "CLOUDFS_VM_FILES": "rel/path",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, val)
			if _, err := FromEnv(); err == nil {
				t.Errorf("FromEnv() with %s=%q: no error", name, val)
			}
		})
	}
}

func TestProgramList(t *testing.T) {
	got := programList([]string{"-fio", "cmp", "mkfs.ext4", "-nonesuch"})
	if slices.Contains(got, "fio") || !slices.Contains(got, "cmp") || !slices.Contains(got, "e2fsck") ||
		len(got) != len(DefaultPrograms) {
		t.Errorf("programList(-fio cmp mkfs.ext4 -nonesuch) = %q", got)
	}
}

func TestArchiveURIs(t *testing.T) {
	out := "http://deb.debian.org/debian/\nhttp://deb.debian.org/debian/\nhttp://deb.debian.org/debian-security/\n" +
		"https://packages.example.com/repo/\n"
	main, sec := archiveURIs(out)
	if main != "http://deb.debian.org/debian" || sec != "http://deb.debian.org/debian-security" {
		t.Errorf("archiveURIs() = %q, %q", main, sec)
	}
}

func TestImagePackage(t *testing.T) {
	out := "linux-image-cloud-amd64\n  Depends: linux-image-6.12.118+deb13-cloud-amd64\n  Depends: other\n"
	if got := imagePackage(out); got != "linux-image-6.12.118+deb13-cloud-amd64" {
		t.Errorf("imagePackage() = %q", got)
	}
	if got := imagePackage("linux-image-x\n"); got != "" {
		t.Errorf("imagePackage(no depends) = %q, want empty", got)
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		con  string
		rc   int
		seen bool
	}{
		{"boot\n" + startMarker + "2.7\n\n" + exitMarker + "0\n[ 3.5] reboot: Power down\n", 0, true},
		{exitMarker + "1\n", 1, true},
		{"[ 1.0] Kernel panic - not syncing: VFS\n", 0, false},
		{exitMarker + "3\n" + exitMarker + "137\n", 137, true},
	}
	for _, tc := range tests {
		rc, seen := exitStatus([]byte(tc.con))
		if rc != tc.rc || seen != tc.seen {
			t.Errorf("exitStatus(%q) = %d, %v, want %d, %v", tc.con, rc, seen, tc.rc, tc.seen)
		}
	}
}

func TestGuestFailure(t *testing.T) {
	tests := []struct{ con, status, want string }{
		{"[ 5.5] Kernel panic - not syncing: sysrq triggered crash\n[ 5.6] CPU: 0\n", "",
			"the guest kernel panicked: Kernel panic - not syncing: sysrq triggered crash"},
		{"boot\n", errorMarker + "load module /lib/x.ko: exec format error\r\n",
			"the guest agent failed: load module /lib/x.ko: exec format error"},
		{"boot\n", "", "the guest ended without the program's exit status"},
	}
	for _, tc := range tests {
		if got := guestFailure([]byte(tc.con), []byte(tc.status)); got != tc.want {
			t.Errorf("guestFailure(%q, %q) = %q, want %q", tc.con, tc.status, got, tc.want)
		}
	}
}

func TestFailedBeforeStart(t *testing.T) {
	tests := []struct {
		con  string
		err  error
		want bool
	}{
		{"[ 2.0] Kernel panic - not syncing: Fatal exception in interrupt\n", ErrGuest, true},
		{startMarker + "2.7\n[ 9.0] Kernel panic - not syncing\n", ErrGuest, false},
		{errorMarker + "load module /x.ko: exec format error\n", ErrGuest, false},
		{"", fmt.Errorf("%w: qemu: %w", ErrGuest, &exec.ExitError{}), false},
		{"", ErrTimeout, false},
		{"", nil, false},
	}
	for _, tc := range tests {
		if got := failedBeforeStart([]byte(tc.con), tc.err); got != tc.want {
			t.Errorf("failedBeforeStart(%q, %v) = %v, want %v", tc.con, tc.err, got, tc.want)
		}
	}
}

func TestWithin(t *testing.T) {
	tests := []struct {
		p, dir string
		want   bool
	}{
		{"/a/b/c", "/a/b", true}, {"/a/b", "/a/b", true}, {"/a/bc", "/a/b", false},
		{"/a", "/a/b", false}, {"/a/b/../../etc/passwd", "/a/b", false},
	}
	for _, tc := range tests {
		if got := within(tc.p, tc.dir); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", tc.p, tc.dir, got, tc.want)
		}
	}
}

func TestModName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/block/ublk_drv.ko.xz": "ublk_drv", "dm-flakey": "dm_flakey", "loop.ko": "loop",
	} {
		if got := modName(in); got != want {
			t.Errorf("modName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWantsVM checks that this test binary, which does not import
// testenv, runs on the host in auto mode, as does a program not in Go.
func TestWantsVM(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{self, "/bin/sh"} {
		if ok, err := WantsVM(p); ok || err != nil {
			t.Errorf("WantsVM(%s) = %v, %v, want false, nil", p, ok, err)
		}
	}
}

func TestTail(t *testing.T) {
	if got := string(tail([]byte("a\nb\nc\nd\n"), 2)); got != "c\nd" {
		t.Errorf("tail(2) = %q", got)
	}
	if got := string(tail([]byte("a\nb"), 5)); got != "a\nb" {
		t.Errorf("tail(5) = %q", got)
	}
}

// cpioEntry is one entry of a newc archive as readCPIO parses it.
type cpioEntry struct {
	name         string
	mode         uint32
	data         string
	major, minor uint32
}

// readCPIO parses a newc archive, checking the format as the kernel does.
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("at %d: field %d: %v", off, i, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off%4 != 0 || string(b[off:off+6]) != cpioMagic {
			t.Fatalf("at %d: bad header %q", off, b[off:min(off+6, len(b))])
		}
		mode, size, nameSize := field(1), int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+nameSize-1])
		dataOff := align(off + 110 + nameSize)
		if name == cpioTrailer {
			return out
		}
		out = append(out, cpioEntry{name, mode, string(b[dataOff : dataOff+size]), field(9), field(10)})
		off = align(dataOff + size)
	}
}

func TestCPIOWriter(t *testing.T) {
	var buf bytes.Buffer
	w := newCPIOWriter(&buf)
	w.Bytes("/usr/bin/tool", 0o755, []byte("abcde"))
	w.Bytes("/usr/bin/tool", 0o644, []byte("loses: first wins"))
	w.Symlink("/bin/sh", "/bin/busybox")
	w.Dir("/tmp")
	w.Bytes("/etc/empty", 0o600, nil)
	w.CharDev("/dev/console", 5, 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range readCPIO(t, buf.Bytes()) {
		g := fmt.Sprintf("%s %o %q", e.name, e.mode, e.data)
		if e.major != 0 {
			g += fmt.Sprintf(" %d:%d", e.major, e.minor)
		}
		got = append(got, g)
	}
	want := []string{
		`usr 40755 ""`, `usr/bin 40755 ""`, `usr/bin/tool 100755 "abcde"`,
		`bin 40755 ""`, `bin/sh 120777 "/bin/busybox"`, `tmp 40755 ""`,
		`etc 40755 ""`, `etc/empty 100600 ""`, `dev 40755 ""`, `dev/console 20600 "" 5:1`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("archive entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCPIOWriterError(t *testing.T) {
	w := newCPIOWriter(io.Discard)
	w.File("/x", "/nonexistent/file")
	if err := w.Close(); err == nil {
		t.Error("Close() after adding a missing file: no error")
	}
}

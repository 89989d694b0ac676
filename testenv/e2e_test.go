//go:build e2e

package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The tests here check the guest of testenv/vm from the inside: make
// test-e2e runs them there, since RequireUblk marks this test binary as
// needing the VM. On a host with ublk they run there too.

func TestE2EUblkControl(t *testing.T) {
	RequireUblk(t)
	f, err := os.OpenFile(ublkControl, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestE2ELoopbackHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "pong")
	}))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Errorf("server URL %s, want one on 127.0.0.1", srv.URL)
	}
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || string(body) != "pong" {
		t.Errorf("GET %s = %q, %v, want pong", srv.URL, body, err)
	}
}

func TestE2ETestdata(t *testing.T) {
	b, err := os.ReadFile("testdata/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "hello from testdata" {
		t.Errorf("testdata/hello.txt = %q", got)
	}
}

// TestE2EEnv checks the variables the runner passes: CLOUDFS_TESTENV_PROBE
// when the caller sets it (vm's own e2e test does), and GOTRACEBACK.
func TestE2EEnv(t *testing.T) {
	if InVM() && os.Getenv("TMPDIR") != "/tmp" {
		t.Errorf("TMPDIR = %q in the guest, want /tmp", os.Getenv("TMPDIR"))
	}
	want := os.Getenv("CLOUDFS_TESTENV_WANT")
	if want == "" {
		t.Skip("CLOUDFS_TESTENV_WANT not set")
	}
	if got := os.Getenv("CLOUDFS_TESTENV_PROBE"); got != want {
		t.Errorf("CLOUDFS_TESTENV_PROBE = %q, want %q", got, want)
	}
	if got := os.Getenv("NOT_PASSED_TESTENV_PROBE"); InVM() && got != "" {
		t.Errorf("NOT_PASSED_TESTENV_PROBE = %q in the guest, want it not passed", got)
	}
}

// TestE2EFail fails on request: vm's own e2e test checks that the exit
// status comes back.
func TestE2EFail(t *testing.T) {
	if os.Getenv("CLOUDFS_TESTENV_FAIL") != "1" {
		t.Skip("CLOUDFS_TESTENV_FAIL not set")
	}
	t.Fatal("failing on request (CLOUDFS_TESTENV_FAIL=1)")
}

// TestE2EFiles checks that the files of CLOUDFS_VM_FILES are there and
// that executable ones are found in PATH (make test-e2e passes cloudfs).
func TestE2EFiles(t *testing.T) {
	files := filepath.SplitList(os.Getenv("CLOUDFS_VM_FILES"))
	if len(files) == 0 {
		t.Skip("CLOUDFS_VM_FILES not set")
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			if p, err := exec.LookPath(filepath.Base(f)); err != nil || p != f {
				t.Errorf("LookPath(%s) = %s, %v, want %s", filepath.Base(f), p, err, f)
			}
		}
	}
}

// TestE2EExt4OnLoop makes an ext4 file system with the host's mkfs.ext4 on
// a loop device, mounts it, writes a file, unmounts and checks it with
// e2fsck: host programs, loop, ext4 and mount in one go.
func TestE2EExt4OnLoop(t *testing.T) {
	RequireRoot(t)
	for _, p := range []string{"mkfs.ext4", "e2fsck", "mount", "umount"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skip(err)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "ext4.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	dev := LoopDevice(t, img)
	run(t, "mkfs.ext4", "-q", "-F", dev)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "ext4", dev, mnt)
	err := os.WriteFile(filepath.Join(mnt, "f"), []byte("data"), 0o644)
	run(t, "umount", mnt)
	if err != nil {
		t.Fatal(err)
	}
	run(t, "e2fsck", "-f", "-n", dev)
}

// TestE2EModprobe loads a module the guest carries but does not load at
// boot (brd), through busybox modprobe and the generated modules.dep.
func TestE2EModprobe(t *testing.T) {
	if !InVM() {
		t.Skip("not in the VM")
	}
	run(t, "modprobe", "brd", "rd_nr=1", "rd_size=1024")
	if _, err := os.Stat("/dev/ram0"); err != nil {
		t.Error(err)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// TestE2ECloudfsBinary runs the daemon binary that make test-e2e passes in.
func TestE2ECloudfsBinary(t *testing.T) {
	run(t, CloudfsBinary(t), "--help")
}

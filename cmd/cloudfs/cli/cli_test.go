package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the cloudfs command with args and returns its output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	c := NewRootCommand()
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), ExitCode(err)
}

func TestNukeAndCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "store")
	if out, code := run(t, "nuke", path); code != ExitUsage || !strings.Contains(out, "give --size") {
		t.Errorf("nuke of a missing file without --size = %d %q, want usage error", code, out)
	}
	out, code := run(t, "nuke", "--size", "64M", "--segment-size", "4M", path)
	if code != ExitOK || !strings.Contains(out, "15 segments of 4 MiB") {
		t.Fatalf("nuke = %d %q", code, out)
	}
	if out, code := run(t, "nuke", path); code != ExitFailure || !strings.Contains(out, "already holds a cloudfs store") {
		t.Errorf("second nuke = %d %q, want a refusal", code, out)
	}
	if out, code := run(t, "check", path); code != ExitOK || !strings.Contains(out, "0 volumes") {
		t.Errorf("check = %d %q", code, out)
	}
	if out, code := run(t, "nuke", "--force", path); code != ExitFailure || !strings.Contains(out, "3 segments") {
		t.Errorf("nuke --force with 16 MiB segments on 64 MiB = %d %q, want too few segments", code, out)
	}
	if _, code := run(t, "nuke", "--force", "--segment-size", "4M", path); code != ExitOK {
		t.Errorf("nuke --force = %d", code)
	}
	// a store whose superblock is damaged: check fails with a clear error
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, code := run(t, "check", path); code != ExitFailure || !strings.Contains(out, "crc") {
		t.Errorf("check of a damaged superblock = %d %q", code, out)
	}
	if _, code := run(t, "nuke", "--size", "1X", path+"2"); code != ExitUsage {
		t.Errorf("bad size = %d, want usage", code)
	}
}

// TestNukeRefusesFileSystems: a file holding an ext4 file system is refused
// unless --force; a file backing a loop device is refused even then.
func TestNukeRefusesFileSystems(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 is not installed")
	}
	path := filepath.Join(t.TempDir(), "fs")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	if out, code := run(t, "nuke", "--segment-size", "4M", path); code != ExitFailure || !strings.Contains(out, "ext2/3/4") {
		t.Errorf("nuke of an ext4 image = %d %q, want a refusal naming it", code, out)
	}
	if os.Geteuid() == 0 {
		out, err := exec.Command("losetup", "--find", "--show", path).Output()
		if err != nil {
			t.Logf("losetup unavailable (%v): skipping the loop device case", err)
		} else {
			loop := strings.TrimSpace(string(out))
			defer func() { _ = exec.Command("losetup", "-d", loop).Run() }() // detached below; this is for a failure
			if out, code := run(t, "nuke", "--force", "--segment-size", "4M", path); code != ExitFailure || !strings.Contains(out, loop) {
				t.Errorf("nuke --force of a loop device's file = %d %q, want a refusal naming %s", code, out, loop)
			}
			if err := exec.Command("losetup", "-d", loop).Run(); err != nil {
				t.Fatalf("losetup -d %s: %v", loop, err)
			}
		}
	}
	if out, code := run(t, "nuke", "--force", "--segment-size", "4M", path); code != ExitOK {
		t.Errorf("nuke --force of an ext4 image = %d %q", code, out)
	}
}

// TestServeRefusesKeepWithoutRecovery: devices kept across a restart need
// ublk user recovery; serve refuses the combination before it creates
// anything.
func TestServeRefusesKeepWithoutRecovery(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	out, code := run(t, "--data-dir", dir, "serve", "--keep-devices", "--device-recovery=false")
	if code != ExitUsage || !strings.Contains(out, "needs device recovery") {
		t.Errorf("serve --keep-devices --device-recovery=false = %d %q, want a usage error", code, out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the refused serve created %s (%v)", dir, err)
	}
}

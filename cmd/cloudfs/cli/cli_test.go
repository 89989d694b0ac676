package cli

import (
	"bytes"
	"os"
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

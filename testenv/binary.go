package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// CloudfsBinary returns the path of a static cloudfs daemon binary for
// tests that start it as a process: $CLOUDFS_BIN (make test-e2e builds
// .bin/cloudfs, sets it and puts the file into the VM), else cloudfs in
// PATH. It skips the test when there is none.
func CloudfsBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CLOUDFS_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CLOUDFS_BIN: %v", err)
		}
		return p
	}
	p, err := exec.LookPath("cloudfs")
	if err != nil {
		t.Skip("testenv: no cloudfs binary: set CLOUDFS_BIN (make test-e2e builds .bin/cloudfs)")
	}
	return p
}

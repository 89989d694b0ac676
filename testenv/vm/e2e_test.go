//go:build e2e

package vm

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunE2E boots the VM through the real runner with testenv's own e2e
// test binary and checks what a caller sees: the output, the exit status,
// the environment passed in, and the time limit. It runs on the host (this
// binary does not link MarkerSymbol) as root, and needs qemu and the
// kernel, which it installs and fetches like any run.
func TestRunE2E(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the runner installs packages with apt")
	}
	dir := t.TempDir()
	vmrun := filepath.Join(dir, "vmrun")
	bin := filepath.Join(dir, "testenv.test")
	goBuild(t, "build", "-o", vmrun, "../vmrun")
	goBuild(t, "test", "-c", "-tags", "e2e", "-o", bin, "..")

	const probe = `a b 'c' "d" $e`
	tests := []struct {
		name   string
		env    []string
		args   []string
		rc     int
		output string
	}{
		{
			name: "pass",
			env: []string{"CLOUDFS_TESTENV_WANT=" + probe, "CLOUDFS_TESTENV_PROBE=" + probe,
				"NOT_PASSED_TESTENV_PROBE=x"},
			args:   []string{"-test.v", "-test.run", "TestE2E(Env|Testdata|UblkControl)$"},
			output: "--- PASS: TestE2EEnv",
		},
		{
			name:   "fail",
			env:    []string{"CLOUDFS_TESTENV_FAIL=1"},
			args:   []string{"-test.run", "TestE2EFail$"},
			rc:     1,
			output: "failing on request",
		},
		{
			name:   "timeout",
			env:    []string{"CLOUDFS_VM_TIMEOUT=1s"},
			args:   []string{"-test.run", "TestE2EFail$"},
			rc:     ExitTimeout,
			output: "time limit",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(vmrun, append([]string{bin}, tc.args...)...)
			cmd.Dir = ".." // the package directory of the binary, as go test runs it
			cmd.Env = append(os.Environ(), tc.env...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			rc := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				rc = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if rc != tc.rc || !strings.Contains(out.String(), tc.output) {
				t.Errorf("vmrun %s: exit %d, want %d, and output with %q:\n%s",
					strings.Join(tc.args, " "), rc, tc.rc, tc.output, out.Bytes())
			}
		})
	}
}

func goBuild(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

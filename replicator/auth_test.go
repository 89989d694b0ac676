package replicator_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloudfs/replicator"
)

// TestSecretFile: the first start creates a 0600 secret file, later starts
// read the same secret, and a bad file is refused with a clear error.
func TestSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "secret")
	s1, err := replicator.LoadOrCreateSecret(path)
	if err != nil || len(s1) != 64 {
		t.Fatalf("LoadOrCreateSecret = %q, %v", s1, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if s2, err := replicator.LoadOrCreateSecret(path); err != nil || s2 != s1 {
		t.Errorf("second LoadOrCreateSecret = %q, %v; want %q", s2, err, s1)
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := replicator.LoadSecret(path); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("LoadSecret of a short secret = %v", err)
	}
}

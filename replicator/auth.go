package replicator

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// minSecretLen is the shortest cluster secret accepted: 32 characters, 128
// bits as hex at least. Generated secrets have 256 bits.
const minSecretLen = 32

// authorized reports whether r carries the cluster secret. The comparison
// takes the same time whatever the secret.
func (s *server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Secret)) == 1
}

// LoadOrCreateSecret returns the cluster secret kept in the file at path,
// creating the file (mode 0600, a random 256-bit secret as hex) if it does
// not exist. Hosts of one cluster share the file's contents.
func LoadOrCreateSecret(path string) (string, error) {
	secret, err := LoadSecret(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	secret = hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadSecret(path) // another process made it first
	}
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	return secret, f.Close()
}

// LoadSecret reads the cluster secret from the file at path.
func LoadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < minSecretLen || strings.ContainsAny(secret, " \t\r\n") {
		return "", fmt.Errorf("secret file %s: want one word of at least %d characters", path, minSecretLen)
	}
	return secret, nil
}

package posixshim

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSmoke(t *testing.T) {
	r := newRig(t, 0)
	r.mount(t)
	p := filepath.Join(r.ns(), "hello")
	if err := os.WriteFile(p, []byte("hello world"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "hello world" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(ents)
}

package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloudfs/testenv"
)

// TestShimMount: serve --mount puts each volume's files under <dir>/<id>;
// a file fsynced there survives a SIGKILL of the daemon (the restarted
// daemon clears the dead mount and mounts again), a volume in use by the
// shim cannot be deleted, and `cloudfs mount` in a process of its own sees
// the same files through the daemon's API.
func TestShimMount(t *testing.T) {
	testenv.RequireFUSE(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	d := startDaemon(t, filepath.Join(dir, "data"), "--mount", mnt)
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	id := d.cli(0, nil, "newdisk", "1", "--size", "64M")
	root := filepath.Join(mnt, id)
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("cloudfs "), 100000)
	f, err := os.Create(filepath.Join(root, "etc", "vm.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if ents, _ := os.ReadDir(mnt); !strings.Contains(names(ents), id) {
		t.Errorf("the mount's root lists %q, want the volume in use", names(ents))
	}
	// in use: delete is refused
	if out := d.cli(1, nil, "delete", id); !strings.Contains(out, "in use") {
		t.Errorf("delete of a volume the shim uses: %q", out)
	}
	// SIGKILL: the mount dies with the daemon; a restart mounts again
	if err := d.stop(syscall.SIGKILL); err == nil {
		t.Fatal("SIGKILL: the daemon exited cleanly?")
	}
	d.start()
	got, err := os.ReadFile(filepath.Join(root, "etc", "vm.conf"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after SIGKILL and restart the fsynced file reads %d bytes, %v; want %d", len(got), err, len(want))
	}
	if err := d.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("clean stop with the shim mounted: %v", err)
	}
	if out, code := run(t, nil, "check", filepath.Join(dir, "data", "store")); code != 0 {
		t.Errorf("check after the shim's run: exit %d\n%s", code, out)
	}
	// cloudfs mount: a process of its own, through the daemon's API
	d.args = nil
	d.start()
	mnt2 := filepath.Join(dir, "mnt2")
	if err := os.Mkdir(mnt2, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--server", d.url, "--data-dir", d.dataDir, "mount", mnt2)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("cloudfs mount after SIGTERM: %v\n%s", err, logs.String())
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err = os.ReadFile(filepath.Join(mnt2, id, "etc", "vm.conf"))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("through cloudfs mount the file reads %d bytes, %v\n%s", len(got), err, logs.String())
	}
}

func names(ents []os.DirEntry) string {
	var s []string
	for _, e := range ents {
		s = append(s, e.Name())
	}
	return strings.Join(s, " ")
}

package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloudfs/replicator"
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

// TestAcquireOnWrite: a volume on two hosts, primary a; b mounts the POSIX
// shim. Writes to the volume's disk file on b (the VM using the disk moved
// to b) move the primary role to b by themselves (serve's
// --acquire-on-write, on by default); every write reads back through both
// hosts, and the heads agree.
func TestAcquireOnWrite(t *testing.T) {
	testenv.RequireFUSE(t)
	dir := t.TempDir()
	a := startDaemon(t, filepath.Join(dir, "a"), "--host-id", "a")
	bDir, mnt := filepath.Join(dir, "b"), filepath.Join(dir, "mnt")
	if err := os.MkdirAll(bDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bDir, "secret"), []byte(a.secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startDaemon(t, bDir, "--host-id", "b", "--etcd", a.etcdArgs[1], "--mount", mnt)
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(a.cli(0, nil, "hosts"), "b") {
		if time.Now().After(deadline) {
			t.Fatalf("b did not join a's cluster:\n%s", b.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	id := a.cli(0, nil, "newdisk", "2", "--size", "64M")
	primary := func(d *daemon) string {
		var vi replicator.VolumeInfo
		if err := json.Unmarshal([]byte(d.cli(0, nil, "info", "--json", id)), &vi); err != nil {
			t.Fatal(err)
		}
		return vi.Primary
	}
	if p := primary(a); p != "a" {
		t.Fatalf("newdisk on a: primary %q", p)
	}
	f, err := os.OpenFile(filepath.Join(mnt, "disks", id), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mirror := make([]byte, 4<<20) // the volume's first 4 MiB as written
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 200 { // the first write starts the hand-over; the others wait for it or follow
		off := rnd.IntN(len(mirror)/4096) * 4096
		p := bytes.Repeat([]byte{byte(i + 1)}, 4096)
		if _, err := f.WriteAt(p, int64(off)); err != nil {
			t.Fatalf("write %d at %d on b's disk file: %v\n%s", i, off, err, b.logs.String())
		}
		copy(mirror[off:], p)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if p := primary(b); p != "b" {
		t.Fatalf("after writes on b the primary is %q, want b\n%s", p, b.logs.String())
	}
	for _, l := range strings.Split(b.logs.String(), "\n") {
		if strings.Contains(l, "a write here moved the volume here") {
			t.Log(l) // the hand-over's time, writes_held_ms
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, d := range []*daemon{a, b} { // a redirects to b now
		got := make([]byte, len(mirror))
		if err := d.client().ReadAt(ctx, id, got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, mirror) {
			t.Errorf("%s reads back something else than was written on b's disk file", d.url)
		}
	}
	deadline = time.Now().Add(time.Minute)
	for ha, hb := a.cli(0, nil, "heads"), b.cli(0, nil, "heads"); ha != hb; ha, hb = a.cli(0, nil, "heads"), b.cli(0, nil, "heads") {
		if time.Now().After(deadline) {
			t.Fatalf("heads differ: a %q, b %q", ha, hb)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

//go:build e2e

package main_test

// The daemon's block devices, end to end: real ublk devices served by
// `cloudfs serve`, used by mkfs.ext4, mount, fio and blkdiscard. make
// test-e2e runs these in the ublk VM (testenv/vm); they skip where the
// kernel has no ublk.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"cloudfs/replicator"
	"cloudfs/testenv"
)

// ublkDaemon starts a daemon with a small store in dir, for the VM's
// memory-backed /tmp.
func ublkDaemon(t *testing.T, dir string, extra ...string) *daemon {
	t.Helper()
	testenv.RequireUblk(t)
	return startDaemon(t, dir, append([]string{"--store-size", "768M", "--segment-size", "4M",
		"--device-dir", filepath.Join(dir, "dev")}, extra...)...)
}

// newDevice makes a volume and returns its id and block device.
func (d *daemon) newDevice(size string) (string, string) {
	d.t.Helper()
	id := d.cli(0, nil, "newdisk", "--size", size)
	return id, d.device(id)
}

func (d *daemon) device(id string) string {
	d.t.Helper()
	var vi replicator.VolumeInfo
	if err := json.Unmarshal([]byte(d.cli(0, nil, "info", "--json", id)), &vi); err != nil {
		d.t.Fatal(err)
	}
	if vi.Device == "" {
		d.t.Fatalf("volume %s has no device:\n%s", id, d.logs.String())
	}
	link := filepath.Join(d.dataDir, "dev", id)
	if target, err := os.Readlink(link); err != nil || target != vi.Device {
		d.t.Errorf("link %s -> %q, %v; want %s", link, target, err, vi.Device)
	}
	return vi.Device
}

// sh runs a command and fails the test with its output if it fails.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeTree writes a tree of files with random contents under dir.
func makeTree(t *testing.T, dir string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range 40 {
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%5), fmt.Sprintf("f%d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, randBytes(rng, rng.IntN(200<<10)+1), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// treeSum hashes every file's path and contents under dir.
func treeSum(t *testing.T, dir string) string {
	h := sha256.New()
	n := 0
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() == "lost+found" {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
		n++
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d files %x", n, h.Sum(nil))
}

// TestUblkExt4: mkfs.ext4 on a volume's device, mount, copy a tree,
// unmount, e2fsck clean, remount, identical; the same after a clean restart
// of the daemon (new devices) and after SIGKILL with the file system
// mounted (the device is re-attached; the mount stays usable).
func TestUblkExt4(t *testing.T) {
	dir := t.TempDir()
	d := ublkDaemon(t, dir)
	id, dev := d.newDevice("256M")
	src, mnt := filepath.Join(dir, "src"), filepath.Join(dir, "mnt")
	makeTree(t, src, 1)
	want := treeSum(t, src)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, "mkfs.ext4", "-q", "-F", dev)
	sh(t, "mount", dev, mnt)
	sh(t, "cp", "-a", src+"/.", mnt)
	sh(t, "umount", mnt)
	sh(t, "e2fsck", "-f", "-n", dev)
	sh(t, "mount", dev, mnt)
	if got := treeSum(t, mnt); got != want {
		t.Fatalf("after remount: %s, want %s", got, want)
	}
	sh(t, "umount", mnt)

	// a clean restart: devices are deleted at shutdown and made anew
	if err := d.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("serve exit: %v", err)
	}
	d.start()
	dev = d.device(id)
	sh(t, "e2fsck", "-f", "-n", dev)
	sh(t, "mount", dev, mnt)
	if got := treeSum(t, mnt); got != want {
		t.Fatalf("after a restart: %s, want %s", got, want)
	}

	// SIGKILL with the file system mounted: the restarted daemon re-attaches
	// to the same device and the mount goes on
	_ = d.stop(syscall.SIGKILL) // a killed process exits with an error
	d.start()
	if got := d.device(id); got != dev {
		t.Errorf("after SIGKILL the volume is served by %s, was %s (not re-attached)", got, dev)
	}
	if got := treeSum(t, mnt); got != want {
		t.Fatalf("mounted across SIGKILL: %s, want %s", got, want)
	}
	makeTree(t, filepath.Join(mnt, "more"), 2)
	sh(t, "sync")
	sh(t, "umount", mnt)
	sh(t, "e2fsck", "-f", "-n", dev)
	// delete refuses a mounted device, then goes through
	sh(t, "mount", dev, mnt)
	if out, code := run(t, nil, "--server", d.url, "--data-dir", d.dataDir, "delete", id); code != 1 || !strings.Contains(out, "in use") {
		t.Errorf("delete of a mounted volume: %d %q, want a refusal", code, out)
	}
	sh(t, "umount", mnt)
	d.cli(0, nil, "delete", id)
	if _, err := os.Stat(dev); err == nil {
		t.Errorf("%s still exists after delete", dev)
	}
}

// fio runs fio with the given job options against dev.
func fio(t *testing.T, dev string, opts ...string) string {
	t.Helper()
	args := append([]string{"--filename=" + dev, "--direct=1", "--ioengine=libaio", "--group_reporting",
		"--output-format=terse", "--minimal"}, opts...)
	return sh(t, "fio", args...)
}

// TestUblkFio: fio with verification (several jobs, random 4k–128k writes,
// queue depth 32) and a flush-heavy job pass on a volume's device.
func TestUblkFio(t *testing.T) {
	dir := t.TempDir()
	d := ublkDaemon(t, dir)
	_, dev := d.newDevice("256M")
	fio(t, dev, "--name=verify", "--rw=randwrite", "--bsrange=4k-128k", "--iodepth=32", "--numjobs=4",
		"--size=32M", "--offset_increment=64M", "--verify=crc32c", "--verify_fatal=1", "--do_verify=1")
	fio(t, dev, "--name=flushes", "--rw=randwrite", "--bs=4k", "--iodepth=1", "--size=4M", "--fdatasync=1",
		"--verify=crc32c", "--verify_fatal=1")
}

// TestUblkKillUnderLoad: SIGKILL of the daemon while fio writes; the
// restarted daemon re-attaches, fio completes, and fio's verification of
// everything it wrote passes.
func TestUblkKillUnderLoad(t *testing.T) {
	dir := t.TempDir()
	d := ublkDaemon(t, dir)
	_, dev := d.newDevice("256M")
	job := []string{"--name=kill", "--rw=randwrite", "--bs=16k", "--iodepth=32", "--size=48M",
		"--verify=crc32c", "--verify_fatal=1", "--randrepeat=1", "--randseed=7"}
	cmd := exec.Command("fio", append([]string{"--filename=" + dev, "--direct=1", "--ioengine=libaio",
		"--do_verify=0"}, job...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	_ = d.stop(syscall.SIGKILL) // a killed process exits with an error
	d.start()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fio across the kill: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Minute):
		_ = cmd.Process.Kill() // the test fails anyway
		t.Fatalf("fio did not finish within 10 minutes of the restart\n%s", out.String())
	}
	fio(t, dev, append([]string{"--verify_only"}, job...)...)
}

// TestUblkDiscardBranchMany: blkdiscard reads back as zeros; a branch's
// device shows its version's data; eight volumes are served at once; a
// store error (a write to a volume this host does not own) fails the IO
// and the daemon keeps serving.
func TestUblkDiscardBranchMany(t *testing.T) {
	dir := t.TempDir()
	d := ublkDaemon(t, dir)
	id, dev := d.newDevice("64M")
	data := randBytes(rand.New(rand.NewPCG(3, 3)), 1<<20)
	writeDev(t, dev, data, 0)
	if got := readDev(t, dev, len(data), 0); !bytes.Equal(got, data) {
		t.Fatal("device does not read back what was written")
	}
	// the branch keeps this version; the source then changes
	var vi replicator.VolumeInfo
	if err := json.Unmarshal([]byte(d.cli(0, nil, "info", "--json", id)), &vi); err != nil {
		t.Fatal(err)
	}
	bid := d.cli(0, nil, "branch", vi.Version)
	bdev := d.device(bid)
	sh(t, "blkdiscard", "-o", "0", "-l", "1048576", dev)
	if got := readDev(t, dev, len(data), 0); !bytes.Equal(got, make([]byte, len(data))) {
		t.Error("discarded range does not read as zeros")
	}
	if got := readDev(t, bdev, len(data), 0); !bytes.Equal(got, data) {
		t.Error("the branch's device does not show its version's data")
	}
	// eight volumes at once, each with its own data
	devs := map[string][]byte{}
	for i := range 8 {
		_, dv := d.newDevice("16M")
		b := randBytes(rand.New(rand.NewPCG(uint64(i), 9)), 64<<10)
		writeDev(t, dv, b, 4096)
		devs[dv] = b
	}
	for dv, b := range devs {
		if got := readDev(t, dv, len(b), 4096); !bytes.Equal(got, b) {
			t.Errorf("%s does not read back its data with 10 devices served", dv)
		}
	}
	// a replica's device: the host does not hold the token, writes fail
	// with EROFS, reads work, the daemon goes on
	r := ublkDaemon(t, filepath.Join(dir, "r"))
	if err := os.WriteFile(filepath.Join(r.dataDir, "secret"), []byte(d.secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(syscall.SIGTERM); err != nil { // restart with the shared secret
		t.Fatal(err)
	}
	r.start()
	// (the source volume: a branch streams only to a host that has its
	// parent version)
	r.cli(0, strings.NewReader(d.cli(0, nil, "stream", id)), "apply")
	rdev := r.device(id)
	if got, want := readDev(t, rdev, 2<<20, 0), readDev(t, dev, 2<<20, 0); !bytes.Equal(got, want) {
		t.Error("the replica's device does not read the volume's data")
	}
	f, err := os.OpenFile(rdev, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := alignedBuf(4096)
	_, err = f.WriteAt(buf, 0)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	// the store says ErrReadOnly and the driver completes with EROFS, but
	// the block layer has no status for it: the writer sees EIO
	if !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.EROFS) {
		t.Errorf("write to a replica's device: %v, want EIO", err)
	}
	if h := r.cli(0, nil, "heads"); !strings.Contains(h, id) {
		t.Errorf("the daemon stopped serving after the failed write: %q", h)
	}
}

func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%4096)
	return b[off%4096 : off%4096+n]
}

func writeDev(t *testing.T, dev string, p []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := alignedBuf(len(p))
	copy(buf, p)
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatalf("write %s: %v", dev, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", dev, err)
	}
}

func readDev(t *testing.T, dev string, n int, off int64) []byte {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := alignedBuf(n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatalf("read %s: %v", dev, err)
	}
	return bytes.Clone(buf)
}

// TestUblkFull: writing more than the store holds fails with ENOSPC (the
// block layer carries it to the writer), what was written before reads
// back, and the daemon keeps serving.
func TestUblkFull(t *testing.T) {
	dir := t.TempDir()
	testenv.RequireUblk(t)
	d := startDaemon(t, dir, "--store-size", "64M", "--segment-size", "4M", "--device-dir", filepath.Join(dir, "dev"))
	id, dev := d.newDevice("128M")
	first := randBytes(rand.New(rand.NewPCG(5, 5)), 1<<20)
	writeDev(t, dev, first, 0)
	out, err := exec.Command("dd", "if=/dev/urandom", "of="+dev, "bs=1M", "seek=1", "count=127", "oflag=direct").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "No space left on device") {
		t.Fatalf("dd of 127 MiB into a 64 MiB store: %v\n%s", err, out)
	}
	if got := readDev(t, dev, len(first), 0); !bytes.Equal(got, first) {
		t.Error("the data written before the store filled does not read back")
	}
	if h := d.cli(0, nil, "heads"); !strings.Contains(h, id) {
		t.Errorf("heads after ENOSPC: %q", h)
	}
	// deleting the volume frees the space for a new one
	d.cli(0, nil, "delete", id)
	_, dev2 := d.newDevice("16M")
	writeDev(t, dev2, first, 0)
}

// TestUblkRemoteIO: two daemons sharing one etcd and the secret; a volume
// on both (sync mode), made on a. b's /dev/ublkbN of it is a replica's:
// its writes go to the primary over HTTP and its reads come from there, so
// ext4 made and written through b reads back through a's device, and b's
// copy follows (same head).
func TestUblkRemoteIO(t *testing.T) {
	dir := t.TempDir()
	a := ublkDaemon(t, filepath.Join(dir, "a"), "--host-id", "a")
	bDir := filepath.Join(dir, "b")
	if err := os.MkdirAll(bDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bDir, "secret"), []byte(a.secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := ublkDaemon(t, bDir, "--host-id", "b", "--etcd", a.etcdArgs[1])
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(a.cli(0, nil, "hosts"), "b") {
		if time.Now().After(deadline) {
			t.Fatalf("b did not join a's cluster:\n%s", b.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	id := a.cli(0, nil, "newdisk", "2", "--size", "64M")
	adev := a.device(id)
	deadline = time.Now().Add(time.Minute)
	var bdev string
	for bdev == "" {
		if out, code := run(t, nil, "--server", b.url, "--data-dir", b.dataDir, "info", "--json", id); code == 0 {
			var vi replicator.VolumeInfo
			if json.Unmarshal([]byte(out), &vi) == nil {
				bdev = vi.Device
			}
		}
		if bdev == "" && time.Now().After(deadline) {
			t.Fatalf("b has no device for the volume:\n%s", b.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	data := randBytes(rand.New(rand.NewPCG(5, 5)), 1<<20)
	writeDev(t, bdev, data, 4096)
	if got := readDev(t, adev, len(data), 4096); !bytes.Equal(got, data) {
		t.Fatal("a write through the replica's device does not read back on the primary's")
	}
	// a file system through the replica's device
	sh(t, "mkfs.ext4", "-q", "-F", bdev)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, "mount", bdev, mnt)
	if err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "umount", mnt)
	sh(t, "e2fsck", "-f", "-n", adev) // what b wrote is on a, consistent
	deadline = time.Now().Add(time.Minute)
	for {
		ha, hb := a.cli(0, nil, "heads"), b.cli(0, nil, "heads")
		if ha == hb {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b's copy did not follow: a %q, b %q", ha, hb)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUblkFailover: three daemons, each an embedded etcd member (so etcd
// outlives any one of them), a volume on two of them (sync mode) with ext4
// on the primary's /dev/ublkbN. The primary's daemon is killed (after the
// file system is synced and unmounted: see below); the other host of the
// volume takes it over within the lease time and a little more, and its
// /dev/ublkbN of the volume mounts, holds every file, takes writes and
// checks clean with e2fsck.
func TestUblkFailover(t *testing.T) {
	testenv.RequireUblk(t)
	dir := t.TempDir()
	names := []string{"a", "b", "c"}
	secret := strings.Repeat("5ec7", 16)
	var peers []string
	ds := map[string]*daemon{}
	for _, n := range names {
		cp, pp := freePort(t), freePort(t)
		peers = append(peers, fmt.Sprintf("%s=http://127.0.0.1:%d", n, pp))
		dd := filepath.Join(dir, n)
		if err := os.MkdirAll(dd, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dd, "secret"), []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ds[n] = &daemon{t: t, dataDir: dd, etcdArgs: []string{"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", cp),
			"--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", pp)}}
	}
	var wg sync.WaitGroup
	for _, n := range names {
		d := ds[n]
		d.args = []string{"--store-size", "512M", "--segment-size", "4M", "--device-dir", filepath.Join(d.dataDir, "dev"),
			"--host-id", n, "--etcd-peers", strings.Join(peers, ","), "--lease-ttl", "3s"}
		t.Cleanup(func() { _ = d.stop(syscall.SIGKILL) })
		wg.Go(d.start) // a member serves once a majority runs: start them together
	}
	wg.Wait()
	a := ds["a"]
	var vi replicator.VolumeInfo
	if err := json.Unmarshal([]byte(a.cli(0, nil, "newdisk", "2", "--size", "128M", "--json")), &vi); err != nil {
		t.Fatal(err)
	}
	if len(vi.Hosts) != 2 || vi.Hosts[0] != "a" {
		t.Fatalf("newdisk 2 placed the volume on %v", vi.Hosts)
	}
	other := ds[vi.Hosts[1]]
	adev := a.device(vi.ID)
	src, mnt := filepath.Join(dir, "src"), filepath.Join(dir, "mnt")
	makeTree(t, src, 3)
	want := treeSum(t, src)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, "mkfs.ext4", "-q", "-F", adev)
	sh(t, "mount", adev, mnt)
	sh(t, "cp", "-a", src+"/.", mnt)
	sh(t, "sync", "-f", mnt)
	// The file system is unmounted before the kill: a killed daemon's
	// device waits for its daemon (ublk user recovery), and with it the
	// kernel's writeback of a mount on it, which would hold this VM; a real
	// primary's host would be gone with its kernel.
	sh(t, "umount", mnt)
	killed := time.Now()
	watchdog := time.AfterFunc(3*time.Minute, func() { // a hang below: say where the daemon was
		fmt.Fprintf(os.Stderr, "TestUblkFailover: 3 minutes after the kill; %s's log:\n%s\n", vi.Hosts[1], other.logs.String())
	})
	defer watchdog.Stop()
	_ = a.stop(syscall.SIGKILL)
	deadline := time.Now().Add(time.Minute)
	for {
		var in replicator.VolumeInfo
		out, code := run(t, nil, "--server", other.url, "--data-dir", other.dataDir, "info", "--json", vi.ID)
		if code == 0 && json.Unmarshal([]byte(out), &in) == nil && in.Role == "primary" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not take the volume over:\n%s", vi.Hosts[1], other.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("failover: %s is the primary %v after the kill (lease 3 s)", vi.Hosts[1], time.Since(killed).Round(10*time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's log:\n%s", vi.Hosts[1], other.logs.String())
		}
	})
	bdev := other.device(vi.ID)
	mnt2 := filepath.Join(dir, "mnt2")
	if err := os.MkdirAll(mnt2, 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, "timeout", "120", "mount", bdev, mnt2) // replays the journal
	if got := treeSum(t, mnt2); got != want {
		t.Fatalf("after the failover the fsynced files sum to %s, want %s", got, want)
	}
	makeTree(t, filepath.Join(mnt2, "after"), 4) // the new primary takes writes
	sh(t, "umount", mnt2)
	sh(t, "e2fsck", "-f", "-n", bdev)
}

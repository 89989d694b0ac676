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
	a, b, _, adev, bdev := replicatedDevices(t, dir, "--acquire-on-write=false") // b forwards, a stays the primary
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
	deadline := time.Now().Add(time.Minute)
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
// on the primary's /dev/ublkbN. The primary, a, runs with
// --device-recovery=false: its device must not hold IO for a daemon that
// will not come back (a file system mounted on it would hold this VM's
// writeback forever). A tree is written and synced (sync -f), then a
// bounded loop writes more files, unsynced, and a's daemon is killed while
// it runs, the file system mounted: the kernel fails the dead daemon's IO
// and removes its device, and the dead mount goes with umount -l. The
// other host of the volume takes it over within the lease time and a
// little more; its /dev/ublkbN of the volume mounts (the journal replays),
// holds every synced file, takes writes and checks clean with e2fsck.
// Restarted, a removes what is left of its old device and makes a new one.
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
		if n == "a" {
			d.args = append(d.args, "--device-recovery=false")
		}
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
	src, mnt, mnt2 := filepath.Join(dir, "src"), filepath.Join(dir, "mnt"), filepath.Join(dir, "mnt2")
	makeTree(t, src, 3)
	want := treeSum(t, src)
	for _, d := range []string{mnt, mnt2} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		// before the daemons are killed (cleanups run last first): a mount
		// left by a failure must not outlive the daemon of its device
		t.Cleanup(func() { _ = exec.Command("umount", "-l", d).Run() })
	}
	sh(t, "mkfs.ext4", "-q", "-F", adev)
	sh(t, "mount", adev, mnt)
	tree, more := filepath.Join(mnt, "tree"), filepath.Join(mnt, "more")
	for _, d := range []string{tree, more} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, "cp", "-a", src+"/.", tree)
	sh(t, "sync", "-f", mnt)
	w := startWriter(t, more)
	// let it write through a few journal commits (every 5 s), so that its
	// files' blocks are on their way to the device when the daemon dies
	w.waitFiles(60, 2*time.Minute)
	dmesgBefore := len(dmesg())
	killed := time.Now()
	watchdog := time.AfterFunc(3*time.Minute, func() { // a hang below: say where the daemon and the kernel were
		fmt.Fprintf(os.Stderr, "TestUblkFailover: 3 minutes after the kill; %s's log:\n%s\ndmesg:\n%s\n",
			vi.Hosts[1], other.logs.String(), strings.Join(dmesg(), "\n"))
	})
	defer watchdog.Stop()
	_ = a.stop(syscall.SIGKILL)
	if waitGone(adev, time.Minute) {
		t.Logf("the kernel removed %s (the dead daemon's device) within %v of the kill", adev, time.Since(killed).Round(10*time.Millisecond))
	} else {
		t.Logf("%s (the dead daemon's device) still exists %v after the kill", adev, time.Since(killed).Round(10*time.Millisecond))
	}
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
	// the writer wrote across the kill and the failover, or failed; stuck on
	// the dead device, it fails the test
	wlast, werr := w.stop()
	t.Logf("the unsynced writer made %d files, %d of them after the kill; it ended with %v, %q",
		w.files(), w.files()-w.atKill, werr, wlast)
	out, err := runFor(time.Minute, "umount", "-l", mnt)
	t.Logf("umount -l of the dead mount: err %v %s", err, strings.TrimSpace(out))
	if lines := dmesg(); len(lines) > dmesgBefore {
		t.Logf("dmesg since the kill (block, ublk and ext4 lines):\n%s", abridge(lines[dmesgBefore:], 10, 15))
	}

	bdev := other.device(vi.ID)
	sh(t, "timeout", "120", "mount", bdev, mnt2) // replays the journal
	if got := treeSum(t, filepath.Join(mnt2, "tree")); got != want {
		t.Fatalf("after the failover the fsynced files sum to %s, want %s", got, want)
	}
	kept, _ := os.ReadDir(filepath.Join(mnt2, "more"))
	t.Logf("%d of the unsynced files are on %s after the failover", len(kept), bdev)
	makeTree(t, filepath.Join(mnt2, "after"), 4) // the new primary takes writes
	sh(t, "umount", mnt2)
	sh(t, "e2fsck", "-f", "-n", bdev)

	// a's restart: its old device had no user recovery, so a removes what
	// is left of it and gives the volume a new one
	a.start()
	if i := strings.Index(a.logs.String(), "device of the previous run had no user recovery"); i < 0 {
		t.Errorf("restarted a does not say its old device had no recovery:\n%s", a.logs.String())
	} else {
		t.Logf("restarted a: ...%s", strings.SplitN(a.logs.String()[i:], "\n", 2)[0])
	}
	t.Logf("restarted a serves the volume's replica on %s (was %s)", a.device(vi.ID), adev)
	if err := a.stop(syscall.SIGTERM); err != nil {
		t.Errorf("restarted a's exit at SIGTERM: %v\n%s", err, a.logs.String())
	}
}

// writer is a shell loop writing files of random data into a directory,
// never syncing, at most writerFiles of them.
type writer struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    syncBuffer
	done   chan error
	atKill int // files when waitFiles returned
}

// writerFiles bounds the loop: 128 KiB each with a pause of 0.1 s, about
// a minute (more under emulation) and 50 MiB at most.
const writerFiles = 400

func startWriter(t *testing.T, dir string) *writer {
	t.Helper()
	w := &writer{t: t, done: make(chan error, 1)}
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do dd if=/dev/urandom of="$1/f$i" bs=64k count=2 2>&1 || exit 1; `+
		`echo "wrote f$i"; i=$((i+1)); sleep 0.1; done`, writerFiles)
	w.cmd = exec.Command("sh", "-c", script, "writer", dir)
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stop kills dd too
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL) })
	return w
}

// files is how many files the writer has written (dd succeeded): not read
// from the directory, which fails once the file system is shut down.
func (w *writer) files() int {
	return strings.Count(w.out.String(), "wrote f")
}

// waitFiles waits until the writer has written n files.
func (w *writer) waitFiles(n int, limit time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(limit)
	for w.files() < n {
		select {
		case err := <-w.done:
			w.t.Fatalf("the writer ended after %d files: %v\n%s", w.files(), err, w.out.String())
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the writer wrote %d files in %v, want %d", w.files(), limit, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.atKill = w.files()
}

// stop kills the writer and waits a minute at most for it to go: a writer
// that does not is stuck in the kernel on a dead device's IO. It returns
// the last line the writer printed and how it ended.
func (w *writer) stop() (string, error) {
	w.t.Helper()
	_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case err := <-w.done:
		lines := strings.Split(strings.TrimSpace(w.out.String()), "\n")
		return lines[len(lines)-1], err
	case <-time.After(time.Minute):
		w.t.Errorf("the writer did not exit within a minute of SIGKILL (stuck on IO of the dead device?)")
		return "", nil
	}
}

// waitGone waits up to limit for path to disappear and says whether it did.
func waitGone(path string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runFor runs a command and gives up waiting for it after limit (a process
// stuck in the kernel cannot be killed).
func runFor(limit time.Duration, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		return "", fmt.Errorf("%s still running after %v", name, limit)
	}
}

// abridge joins lines, keeping the first head and the last tail of many.
func abridge(lines []string, head, tail int) string {
	if len(lines) <= head+tail {
		return strings.Join(lines, "\n")
	}
	return strings.Join(lines[:head], "\n") + fmt.Sprintf("\n[%d lines]\n", len(lines)-head-tail) +
		strings.Join(lines[len(lines)-tail:], "\n")
}

// dmesg returns the kernel's messages about block devices, ublk and ext4.
func dmesg() []string {
	out, _ := runFor(30*time.Second, "dmesg")
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		for _, k := range []string{"ublk", "EXT4", "I/O error", "jbd2", "blk_", "hung_task", "blocked for"} {
			if strings.Contains(l, k) {
				lines = append(lines, l)
				break
			}
		}
	}
	return lines
}

// replicatedDevices starts daemons a and b (b joins a's etcd, with bArgs)
// and makes a volume on both, a its primary; it returns the volume's id and
// its device on each.
func replicatedDevices(t *testing.T, dir string, bArgs ...string) (a, b *daemon, id, adev, bdev string) {
	t.Helper()
	a = ublkDaemon(t, filepath.Join(dir, "a"), "--host-id", "a")
	bDir := filepath.Join(dir, "b")
	if err := os.MkdirAll(bDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bDir, "secret"), []byte(a.secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b = ublkDaemon(t, bDir, append([]string{"--host-id", "b", "--etcd", a.etcdArgs[1]}, bArgs...)...)
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(a.cli(0, nil, "hosts"), "b") {
		if time.Now().After(deadline) {
			t.Fatalf("b did not join a's cluster:\n%s", b.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	id = a.cli(0, nil, "newdisk", "2", "--size", "64M")
	adev = a.device(id)
	deadline = time.Now().Add(time.Minute)
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
	return a, b, id, adev, bdev
}

// TestUblkAcquireOnWrite: as TestUblkRemoteIO, but b moves the volume to
// itself at the first write on its /dev/ublkbN (serve's default
// --acquire-on-write): b is the primary after the write, and a's device,
// now a replica's, reads what b wrote from b.
func TestUblkAcquireOnWrite(t *testing.T) {
	dir := t.TempDir()
	a, b, id, adev, bdev := replicatedDevices(t, dir)
	data := randBytes(rand.New(rand.NewPCG(6, 6)), 1<<20)
	writeDev(t, bdev, data, 8192)
	var vi replicator.VolumeInfo
	if err := json.Unmarshal([]byte(a.cli(0, nil, "info", "--json", id)), &vi); err != nil {
		t.Fatal(err)
	}
	if vi.Primary != "b" {
		t.Fatalf("after a write on b's device the primary is %q, want b\n%s", vi.Primary, b.logs.String())
	}
	if got := readDev(t, adev, len(data), 8192); !bytes.Equal(got, data) {
		t.Fatal("what b wrote does not read back through a's device")
	}
	sh(t, "mkfs.ext4", "-q", "-F", bdev)
	sh(t, "e2fsck", "-f", "-n", adev)
}

package posixshim

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"cloudfs/segment"
	"cloudfs/segment/device"
	"cloudfs/segment/segtest"
)

// TestFsx runs fsx-style random operations on a few files through the
// mount and on an in-memory model, comparing every read and, at the end,
// every file.
func TestFsx(t *testing.T) {
	r := newRig(t, 0)
	r.mount(t)
	rng := rand.New(rand.NewPCG(testSeed(t), 7))
	ops := 3000
	if testing.Short() {
		ops = 600
	}
	const nfiles, maxLen = 3, 1 << 20
	files := make([]*os.File, nfiles)
	model := make([][]byte, nfiles)
	for i := range files {
		f, err := os.Create(filepath.Join(r.ns(), fmt.Sprintf("fsx%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		files[i] = f
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for op := range ops {
		i := rng.IntN(nfiles)
		f, m := files[i], model[i]
		switch k := rng.IntN(100); {
		case k < 40: // write
			off, n := rng.IntN(maxLen), 1+rng.IntN(70_000)
			data := pattern(n, byte(op))
			if _, err := f.WriteAt(data, int64(off)); err != nil {
				t.Fatalf("op %d: write %d+%d: %v", op, off, n, err)
			}
			if off+n > len(m) {
				m = append(m, make([]byte, off+n-len(m))...)
			}
			copy(m[off:], data)
		case k < 70: // read
			if len(m) == 0 {
				continue
			}
			off := rng.IntN(len(m))
			n := min(1+rng.IntN(100_000), len(m)-off)
			buf := make([]byte, n)
			if _, err := f.ReadAt(buf, int64(off)); err != nil {
				t.Fatalf("op %d: read %d+%d: %v", op, off, n, err)
			}
			if !bytes.Equal(buf, m[off:off+n]) {
				t.Fatalf("op %d: read %d+%d of file %d differs at %d", op, off, n, i, off+firstDiff(buf, m[off:off+n]))
			}
		case k < 85: // truncate
			size := rng.IntN(maxLen)
			if err := f.Truncate(int64(size)); err != nil {
				t.Fatalf("op %d: truncate %d: %v", op, size, err)
			}
			if size < len(m) {
				m = m[:size]
			} else {
				m = append(m, make([]byte, size-len(m))...)
			}
		case k < 90: // fsync
			if err := f.Sync(); err != nil {
				t.Fatalf("op %d: fsync: %v", op, err)
			}
		default: // close and reopen
			name := f.Name()
			f.Close()
			nf, err := os.OpenFile(name, os.O_RDWR, 0)
			if err != nil {
				t.Fatalf("op %d: reopen: %v", op, err)
			}
			files[i] = nf
		}
		model[i] = m
	}
	for i := range files {
		mustRead(t, files[i].Name(), model[i])
	}
	checkNamespace(t, r)
}

// writeTree makes a tree of directories, files of many sizes and symlinks.
func writeTree(t *testing.T, root string, rng *rand.Rand) {
	t.Helper()
	for d := range 5 {
		dir := filepath.Join(root, fmt.Sprintf("dir%d", d), "sub")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		for f := range 8 {
			mustWrite(t, filepath.Join(dir, fmt.Sprintf("f%d", f)), pattern(rng.IntN(1<<(4+2*f)), byte(d*8+f)))
		}
		if err := os.Symlink("sub/f1", filepath.Join(root, fmt.Sprintf("dir%d", d), "link")); err != nil {
			t.Fatal(err)
		}
	}
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed: %v", name, err)
	}
}

// TestTools runs real programs on the mount.
func TestTools(t *testing.T) {
	r := newRig(t, 0)
	r.mount(t)
	t.Run("cp-tar", func(t *testing.T) {
		needTool(t, "tar")
		src := t.TempDir()
		writeTree(t, src, rand.New(rand.NewPCG(1, 2)))
		dst := filepath.Join(r.ns(), "copy")
		run(t, "/", "cp", "-a", src, dst)
		run(t, "/", "diff", "-r", "--no-dereference", src, dst)
		tarball := filepath.Join(r.ns(), "tree.tar")
		run(t, src, "tar", "-cf", tarball, ".")
		out := filepath.Join(r.ns(), "untar")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		run(t, out, "tar", "-xpf", tarball)
		run(t, "/", "diff", "-r", "--no-dereference", src, out)
		run(t, out, "tar", "-df", tarball) // tar compares metadata too
	})
	t.Run("git", func(t *testing.T) {
		needTool(t, "git")
		repo := filepath.Join(r.ns(), "repo")
		if err := os.Mkdir(repo, 0o755); err != nil {
			t.Fatal(err)
		}
		git := func(args ...string) string {
			return run(t, repo, "git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com",
				"-c", "init.defaultBranch=main", "-c", "core.fsync=all"}, args...)...)
		}
		git("init", "-q")
		for i := range 5 {
			mustWrite(t, filepath.Join(repo, fmt.Sprintf("f%d.txt", i%3)), fmt.Appendf(nil, "version %d\n", i))
			git("add", "-A")
			git("commit", "-q", "-m", fmt.Sprintf("commit %d", i))
		}
		git("gc", "-q")
		git("fsck", "--strict")
		if n := git("rev-list", "--count", "HEAD"); n != "5\n" {
			t.Errorf("rev-list --count = %q", n)
		}
	})
	t.Run("sqlite", func(t *testing.T) {
		needTool(t, "sqlite3")
		db := filepath.Join(r.ns(), "test.db")
		script := "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);\n"
		for i := range 200 {
			script += fmt.Sprintf("INSERT INTO t(v) VALUES('%s');\n", bytes.Repeat([]byte{'a' + byte(i%26)}, i*5))
		}
		script += "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE; DELETE FROM t WHERE k % 3 = 0; VACUUM;\n"
		cmd := exec.Command("sqlite3", db)
		cmd.Stdin = bytes.NewBufferString(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sqlite3: %v\n%s", err, out)
		}
		if out := run(t, "/", "sqlite3", db, "PRAGMA integrity_check; SELECT count(*) FROM t;"); out != "ok\n134\n" {
			t.Errorf("sqlite3 check = %q", out)
		}
	})
	checkNamespace(t, r)
}

// TestCrashMount writes files through the mount, fsyncing some, then takes
// a crash image of the device while the shim is still mounted (no clean
// shutdown: no checkpoint, no flush), recovers the store from it, mounts it
// again and checks that every fsynced file is intact. The store passes
// Check.
func TestCrashMount(t *testing.T) {
	r := newRig(t, 0)
	r.mount(t)
	rng := rand.New(rand.NewPCG(testSeed(t), 3))
	synced := map[string][]byte{}
	for i := range 40 {
		dir := filepath.Join(r.ns(), fmt.Sprintf("d%d", i%4))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("f%d", i))
		data := pattern(rng.IntN(300_000), byte(i))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			synced[p[len(r.ns()):]] = data
		}
		f.Close()
	}
	// Unsynced changes after the last fsync may or may not survive.
	mustWrite(t, filepath.Join(r.ns(), "late"), []byte("not synced"))
	clone := r.dev.CrashClone(device.CrashCfg{UnsyncedPercent: 50, Rand: rng})

	st := segtest.Open(t, clone, segment.Options{})
	r2 := &rig{dev: clone, st: st, src: newSource(st), id: r.id}
	r2.mount(t)
	for rel, want := range synced {
		mustRead(t, r2.ns()+rel, want)
	}
	checkNamespace(t, r2)
}

// TestExclusive checks that a volume is a namespace or a disk file or a
// raw device, one at a time, and that the refusals are EBUSY.
func TestExclusive(t *testing.T) {
	r := newRig(t, 0)
	r.mount(t)
	if _, err := os.Stat(r.ns()); err != nil {
		t.Fatal(err)
	}
	_, err := os.OpenFile(filepath.Join(r.dir, disksName, r.id), os.O_RDWR, 0)
	wantErrno(t, "open disk file of a namespace", err, syscall.EBUSY)

	other, err := r.st.Create(testVolumeSize)
	if err != nil {
		t.Fatal(err)
	}
	id := other.Base().String()
	f, err := os.OpenFile(filepath.Join(r.dir, disksName, id), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(r.dir, id))
	wantErrno(t, "namespace of an open disk file", err, syscall.EBUSY)
	f.Close()

	raw, err := r.st.Create(testVolumeSize)
	if err != nil {
		t.Fatal(err)
	}
	r.src.mu.Lock()
	r.src.raw[raw.Base().String()] = true
	r.src.mu.Unlock()
	_, err = os.Stat(filepath.Join(r.dir, raw.Base().String()))
	wantErrno(t, "namespace of a raw device", err, syscall.EBUSY)

	_, err = os.Stat(filepath.Join(r.dir, segment.RandomID().String()))
	wantErrno(t, "namespace of a missing volume", err, syscall.ENOENT)
	_, err = os.Stat(filepath.Join(r.dir, "not-a-volume"))
	wantErrno(t, "a name that is no volume id", err, syscall.ENOENT)

	ents, err := os.ReadDir(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	for _, want := range []string{disksName, r.id, id} {
		if !slices.Contains(names, want) {
			t.Errorf("root lists %v, without %s", names, want)
		}
	}
}

// TestForeignRefused checks that a volume holding something else (here a
// byte pattern where a partition table would be) is refused, not formatted.
func TestForeignRefused(t *testing.T) {
	r := newRig(t, 0)
	junk := make([]byte, 4096)
	copy(junk, "not a cloudfs namespace")
	if _, err := r.vol.WriteAt(junk, 0); err != nil {
		t.Fatal(err)
	}
	r.mount(t)
	_, err := os.Stat(r.ns())
	wantErrno(t, "namespace of a foreign volume", err, syscall.EMEDIUMTYPE)
	b := make([]byte, 4096)
	if _, err := r.vol.ReadAt(b, 0); err != nil || !bytes.Equal(b, junk) {
		t.Errorf("foreign volume was changed: %v", err)
	}
	// A zero first block over data elsewhere is not blank either.
	other, err := r.st.Create(testVolumeSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.WriteAt(junk, 100<<20); err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(r.dir, other.Base().String()))
	wantErrno(t, "namespace of a volume with data past block 0", err, syscall.EMEDIUMTYPE)
}

// TestNoSpace fills a namespace's data area and a small store: ENOSPC, and
// the file system stays consistent and usable after deleting.
func TestNoSpace(t *testing.T) {
	r := newRig(t, 64<<20) // a store smaller than the volume
	r.mount(t)
	p := filepath.Join(r.ns(), "big")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	buf := pattern(1<<20, 9)
	var werr error
	for range 512 { // bounded: 512 MiB is more than the store holds
		if _, werr = f.Write(buf); werr != nil {
			break
		}
	}
	f.Close()
	wantErrno(t, "filling the store", werr, syscall.ENOSPC)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	checkNamespace(t, r)
}

// TestDiskFile puts ext4 on a disk file through a loop device, then checks
// that the bytes are the volume's: a branch of the volume holds the same
// file system.
func TestDiskFile(t *testing.T) {
	for _, tool := range []string{"losetup", "mkfs.ext4", "e2fsck", "mount"} {
		needTool(t, tool)
	}
	r := newRig(t, 0)
	r.mount(t)
	disk := filepath.Join(r.dir, disksName, r.id)
	fi, err := os.Stat(disk)
	if err != nil || fi.Size() != testVolumeSize {
		t.Fatalf("Stat(disk file) = %v, %v", fi, err)
	}
	loop := attachLoop(t, disk)
	run(t, "/", "mkfs.ext4", "-q", "-F", loop)
	mnt := t.TempDir()
	run(t, "/", "mount", loop, mnt)
	payload := pattern(3<<20, 5)
	mustWrite(t, filepath.Join(mnt, "payload"), payload)
	run(t, "/", "umount", mnt)
	run(t, "/", "e2fsck", "-f", "-n", loop)
	detachLoop(t, loop)

	// Unaligned IO on the disk file is read-modify-write of the sectors.
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("odd"), testVolumeSize-100); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tail := make([]byte, 512)
	if _, err := r.vol.ReadAt(tail, testVolumeSize-512); err != nil || string(tail[412:415]) != "odd" {
		t.Fatalf("volume tail = %q, %v", tail[412:415], err)
	}

	// The file system is in the volume: a branch of it mounts with the file.
	in, err := r.vol.Info()
	if err != nil {
		t.Fatal(err)
	}
	br, err := r.st.Branch(in.Version)
	if err != nil {
		t.Fatal(err)
	}
	bdisk := filepath.Join(r.dir, disksName, br.Base().String())
	loop2 := attachLoop(t, bdisk)
	run(t, "/", "e2fsck", "-f", "-n", loop2)
	mnt2 := t.TempDir()
	run(t, "/", "mount", "-o", "ro", loop2, mnt2)
	got, err := os.ReadFile(filepath.Join(mnt2, "payload"))
	run(t, "/", "umount", mnt2)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("payload in the branch: %d bytes, %v", len(got), err)
	}
	detachLoop(t, loop2)
}

// attachLoop runs losetup on file (the disk file lives on FUSE, so the loop
// driver does buffered IO through the shim) and detaches it at cleanup if
// the test has not.
func attachLoop(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", file).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	loop := string(bytes.TrimSpace(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	return loop
}

func detachLoop(t *testing.T, loop string) {
	t.Helper()
	if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("losetup -d %s: %v: %s", loop, err, out)
	}
}

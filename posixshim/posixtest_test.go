package posixshim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// posixTests is our conformance suite, in the spirit of go-fuse's
// posixtest: each test gets an empty directory and checks what POSIX (and
// Linux) promise there. TestPOSIX runs it on the mount and, as its control,
// on a plain temporary directory, so a test that fails on both is wrong.
var posixTests = map[string]func(t *testing.T, dir string){
	"FileBasic":      testFileBasic,
	"Append":         testAppend,
	"Truncate":       testTruncate,
	"SparseLarge":    testSparseLarge,
	"UnalignedIO":    testUnalignedIO,
	"Directories":    testDirectories,
	"ReaddirMany":    testReaddirMany,
	"Rename":         testRename,
	"RenameDir":      testRenameDir,
	"RenameExchange": testRenameExchange,
	"RenameNoRepl":   testRenameNoReplace,
	"Symlink":        testSymlink,
	"HardLink":       testHardLink,
	"Attributes":     testAttributes,
	"MtimeOnWrite":   testMtimeOnWrite,
	"UnlinkOpen":     testUnlinkOpen,
	"Fsync":          testFsync,
	"Statfs":         testStatfs,
	"Errors":         testErrors,
	"Fifo":           testFifo,
	"NameMax":        testNameMax,
}

func TestPOSIX(t *testing.T) {
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range posixTests {
			if !yield(k) {
				return
			}
		}
	})
	t.Run("tempdir", func(t *testing.T) {
		for _, name := range names {
			t.Run(name, func(t *testing.T) { posixTests[name](t, t.TempDir()) })
		}
	})
	t.Run("mount", func(t *testing.T) {
		r := newRig(t, 0)
		r.mount(t)
		for _, name := range names {
			t.Run(name, func(t *testing.T) {
				dir := filepath.Join(r.ns(), name)
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				posixTests[name](t, dir)
			})
		}
		checkNamespace(t, r)
	})
}

// checkNamespace runs the shim's fsck on the rig's mounted namespace.
func checkNamespace(t *testing.T, r *rig) {
	t.Helper()
	r.srv.mu.Lock()
	ns := r.srv.vols[r.id]
	r.srv.mu.Unlock()
	if ns == nil {
		return
	}
	ns.v.mu.Lock()
	defer ns.v.mu.Unlock()
	if err := ns.v.st.check(); err != nil {
		t.Errorf("namespace check: %v", err)
	}
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("ReadFile(%s): %d bytes, want %d (first difference at %d)", path, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed ^ byte(i>>9)
	}
	return b
}

func testFileBasic(t *testing.T, dir string) {
	p := filepath.Join(dir, "f")
	data := pattern(300_000, 1)
	mustWrite(t, p, data)
	mustRead(t, p, data)
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != int64(len(data)) || !fi.Mode().IsRegular() {
		t.Fatalf("Stat = %v, %v", fi, err)
	}
	// Overwrite the middle in place.
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XYZ"), 70_000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	copy(data[70_000:], "XYZ")
	mustRead(t, p, data)
	mustWrite(t, p, []byte("short"))
	mustRead(t, p, []byte("short"))
}

func testAppend(t *testing.T, dir string) {
	p := filepath.Join(dir, "log")
	var want []byte
	for i := range 50 {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		line := fmt.Appendf(nil, "line %d %s\n", i, bytes.Repeat([]byte{'a' + byte(i%26)}, i*37))
		if _, err := f.Write(line); err != nil {
			t.Fatal(err)
		}
		f.Close()
		want = append(want, line...)
	}
	mustRead(t, p, want)
}

func testTruncate(t *testing.T, dir string) {
	p := filepath.Join(dir, "t")
	data := pattern(200_000, 2)
	mustWrite(t, p, data)
	if err := os.Truncate(p, 100_001); err != nil {
		t.Fatal(err)
	}
	mustRead(t, p, data[:100_001])
	// Growing again must show zeros, not the old bytes.
	if err := os.Truncate(p, 200_000); err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(data[:100_001]), make([]byte, 200_000-100_001)...)
	mustRead(t, p, want)
	// Shrink, then write beyond the end: the gap reads as zeros.
	if err := os.Truncate(p, 10); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("end"), 50_000); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if fi, _ := f.Stat(); fi.Size() != 0 {
		t.Errorf("size after ftruncate(0) = %d", fi.Size())
	}
	f.Close()
	mustRead(t, p, nil)
	// Shrink inside a chunk, grow with a write past the end: the bytes
	// between the two ends were data once and must read as zeros now.
	mustWrite(t, p, data)
	if err := os.Truncate(p, 1000); err != nil {
		t.Fatal(err)
	}
	f, err = os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("end"), 50_000); err != nil {
		t.Fatal(err)
	}
	want = append(append(bytes.Clone(data[:1000]), make([]byte, 50_000-1000)...), "end"...)
	mustRead(t, p, want)
}

func testSparseLarge(t *testing.T, dir string) {
	p := filepath.Join(dir, "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const far = 20 << 30 // beyond the volume: files are sparse
	if _, err := f.WriteAt([]byte("far away"), far); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("near"), 4096); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != far+8 {
		t.Fatalf("Stat = %v, %v; want size %d", fi, err, far+8)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Blocks*512 > 4<<20 {
		t.Errorf("sparse file of %d bytes uses %d blocks", fi.Size(), st.Blocks)
	}
	buf := make([]byte, 1<<20)
	if _, err := f.ReadAt(buf, far-(1<<20)+8); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[len(buf)-8:], []byte("far away")) || !allZero(buf[:len(buf)-8]) {
		t.Errorf("read around the far write: wrong bytes")
	}
	if _, err := f.ReadAt(buf[:8], 4096); err != nil || string(buf[:4]) != "near" || !allZero(buf[4:8]) {
		t.Errorf("read near: %q, %v", buf[:8], err)
	}
}

func testUnalignedIO(t *testing.T, dir string) {
	p := filepath.Join(dir, "u")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var model []byte
	for i, w := range []struct{ off, n int }{{1, 10}, {511, 2}, {65535, 3}, {100, 70_000}, {131_071, 1}, {3, 1 << 18}, {200_000, 513}} {
		data := pattern(w.n, byte(i+10))
		if _, err := f.WriteAt(data, int64(w.off)); err != nil {
			t.Fatal(err)
		}
		if end := w.off + w.n; end > len(model) {
			model = append(model, make([]byte, end-len(model))...)
		}
		copy(model[w.off:], data)
	}
	mustRead(t, p, model)
	for _, r := range []struct{ off, n int }{{0, 1}, {511, 3}, {65530, 20}, {131_000, 1000}} {
		buf := make([]byte, r.n)
		if _, err := f.ReadAt(buf, int64(r.off)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, model[r.off:r.off+r.n]) {
			t.Errorf("ReadAt(%d, %d) differs", r.off, r.n)
		}
	}
}

func testDirectories(t *testing.T, dir string) {
	a := filepath.Join(dir, "a")
	if err := os.MkdirAll(filepath.Join(a, "b", "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(a)
	if err != nil || !fi.IsDir() {
		t.Fatalf("Stat(a) = %v, %v", fi, err)
	}
	if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 3 {
		t.Errorf("nlink of a directory with one subdirectory = %d, want 3", n)
	}
	mustWrite(t, filepath.Join(a, "b", "file"), []byte("x"))
	wantErrno(t, "rmdir non-empty", syscall.Rmdir(filepath.Join(a, "b")), syscall.ENOTEMPTY)
	wantErrno(t, "mkdir existing", syscall.Mkdir(a, 0o755), syscall.EEXIST)
	wantErrno(t, "rmdir file", syscall.Rmdir(filepath.Join(a, "b", "file")), syscall.ENOTDIR)
	wantErrno(t, "unlink dir", syscall.Unlink(filepath.Join(a, "b", "c")), syscall.EISDIR)
	ents, err := os.ReadDir(filepath.Join(a, "b"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"c", "file"}) {
		t.Errorf("ReadDir = %v", names)
	}
	if err := os.RemoveAll(a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat after RemoveAll: %v", err)
	}
}

func testReaddirMany(t *testing.T, dir string) {
	var want []string
	for i := range 600 {
		name := fmt.Sprintf("file-%04d-%s", i, bytes.Repeat([]byte{'n'}, i%100))
		mustWrite(t, filepath.Join(dir, name), nil)
		want = append(want, name)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("ReadDir: %d names, want %d", len(got), len(want))
	}
}

func testRename(t *testing.T, dir string) {
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, a, []byte("A"))
	mustWrite(t, b, []byte("B"))
	if err := os.Rename(a, b); err != nil { // replaces b
		t.Fatal(err)
	}
	mustRead(t, b, []byte("A"))
	if _, err := os.Stat(a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old name after rename: %v", err)
	}
	if err := os.Rename(b, filepath.Join(sub, "c")); err != nil { // across directories
		t.Fatal(err)
	}
	mustRead(t, filepath.Join(sub, "c"), []byte("A"))
	wantErrno(t, "rename missing", syscall.Rename(a, b), syscall.ENOENT)
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "rename file over dir", syscall.Rename(filepath.Join(sub, "c"), filepath.Join(dir, "empty")), syscall.EISDIR)
	// Renaming one name of an inode onto another does nothing.
	if err := os.Link(filepath.Join(sub, "c"), filepath.Join(sub, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(sub, "c"), filepath.Join(sub, "d")); err != nil {
		t.Fatal(err)
	}
	mustRead(t, filepath.Join(sub, "c"), []byte("A"))
	mustRead(t, filepath.Join(sub, "d"), []byte("A"))
}

func testRenameDir(t *testing.T, dir string) {
	x, y := filepath.Join(dir, "x"), filepath.Join(dir, "y")
	if err := os.MkdirAll(filepath.Join(x, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(x, "in", "f"), []byte("deep"))
	if err := os.Mkdir(y, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(x, "in"), filepath.Join(y, "moved")); err != nil {
		t.Fatal(err)
	}
	mustRead(t, filepath.Join(y, "moved", "f"), []byte("deep"))
	for p, want := range map[string]uint64{x: 2, y: 3} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if n := fi.Sys().(*syscall.Stat_t).Nlink; n != want {
			t.Errorf("nlink of %s = %d, want %d", filepath.Base(p), n, want)
		}
	}
	// A directory replaces an empty directory, not a full one (os.Rename
	// refuses any directory target).
	if err := syscall.Rename(filepath.Join(y, "moved"), x); err != nil {
		t.Fatal(err)
	}
	mustRead(t, filepath.Join(x, "f"), []byte("deep"))
	if err := os.Mkdir(filepath.Join(y, "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "rename dir over non-empty dir", syscall.Rename(filepath.Join(y, "e"), x), syscall.ENOTEMPTY)
	wantErrno(t, "rename dir into itself", syscall.Rename(x, filepath.Join(x, "sub")), syscall.EINVAL)
}

func testRenameExchange(t *testing.T, dir string) {
	a, d := filepath.Join(dir, "a"), filepath.Join(dir, "d")
	mustWrite(t, a, []byte("file"))
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, d, unix.RENAME_EXCHANGE); err != nil {
		if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) {
			t.Skipf("RENAME_EXCHANGE unsupported here: %v", err)
		}
		t.Fatal(err)
	}
	if fi, err := os.Stat(a); err != nil || !fi.IsDir() {
		t.Errorf("a after exchange: %v, %v", fi, err)
	}
	mustRead(t, d, []byte("file"))
	// Across directories, with a directory: link counts follow.
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, filepath.Join(sub, "f"), unix.RENAME_EXCHANGE); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("exchange with a missing name: %v, want ENOENT", err)
	}
	mustWrite(t, filepath.Join(sub, "f"), []byte("g"))
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, filepath.Join(sub, "f"), unix.RENAME_EXCHANGE); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sub)
	if err != nil {
		t.Fatal(err)
	}
	if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 3 {
		t.Errorf("nlink of sub after exchanging a directory in = %d, want 3", n)
	}
	mustRead(t, a, []byte("g"))
}

func testRenameNoReplace(t *testing.T, dir string) {
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	mustWrite(t, a, []byte("a"))
	mustWrite(t, b, []byte("b"))
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_NOREPLACE)
	if errors.Is(err, syscall.EINVAL) {
		t.Skip("RENAME_NOREPLACE unsupported here")
	}
	wantErrno(t, "rename noreplace onto existing", err, syscall.EEXIST)
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, filepath.Join(dir, "c"), unix.RENAME_NOREPLACE); err != nil {
		t.Fatal(err)
	}
	mustRead(t, filepath.Join(dir, "c"), []byte("a"))
}

func testSymlink(t *testing.T, dir string) {
	target := "some/where/../file"
	l := filepath.Join(dir, "link")
	if err := os.Symlink(target, l); err != nil {
		t.Fatal(err)
	}
	got, err := os.Readlink(l)
	if err != nil || got != target {
		t.Fatalf("Readlink = %q, %v", got, err)
	}
	fi, err := os.Lstat(l)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 || fi.Size() != int64(len(target)) {
		t.Fatalf("Lstat = %v, %v", fi, err)
	}
	mustWrite(t, filepath.Join(dir, "real"), []byte("through the link"))
	if err := os.Symlink("real", filepath.Join(dir, "rel")); err != nil {
		t.Fatal(err)
	}
	mustRead(t, filepath.Join(dir, "rel"), []byte("through the link"))
	wantErrno(t, "readlink of a file", func() error { _, err := os.Readlink(filepath.Join(dir, "real")); return err }(), syscall.EINVAL)
}

func testHardLink(t *testing.T, dir string) {
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	mustWrite(t, a, []byte("shared"))
	if err := os.Link(a, b); err != nil {
		t.Fatal(err)
	}
	fa, _ := os.Stat(a)
	fb, _ := os.Stat(b)
	if !os.SameFile(fa, fb) || fa.Sys().(*syscall.Stat_t).Nlink != 2 {
		t.Fatalf("after link: same=%v nlink=%d", os.SameFile(fa, fb), fa.Sys().(*syscall.Stat_t).Nlink)
	}
	mustWrite(t, b, []byte("changed through b"))
	mustRead(t, a, []byte("changed through b"))
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	mustRead(t, b, []byte("changed through b"))
	if fi, _ := os.Stat(b); fi.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Errorf("nlink after unlink = %d", fi.Sys().(*syscall.Stat_t).Nlink)
	}
	wantErrno(t, "link a directory", os.Link(dir, filepath.Join(dir, "dirlink")), syscall.EPERM)
}

func testAttributes(t *testing.T, dir string) {
	p := filepath.Join(dir, "f")
	mustWrite(t, p, []byte("x"))
	if err := os.Chmod(p, 0o4751); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	at, mt := time.Unix(1_000_000_000, 123_000_000), time.Unix(1_100_000_000, 456_000_000)
	if err := os.Chtimes(p, at, mt); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	// chown as root clears set-user-ID on some file systems; compare the
	// permission bits only.
	if st.Mode&0o777 != 0o751 || st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("mode %o uid %d gid %d, want 751 1234 5678", st.Mode, st.Uid, st.Gid)
	}
	if !fi.ModTime().Equal(mt) || time.Unix(st.Atim.Unix()).UnixNano() != at.UnixNano() {
		t.Errorf("mtime %v atime %v, want %v %v", fi.ModTime(), time.Unix(st.Atim.Unix()), mt, at)
	}
	if err := syscall.Chmod(dir, 0o2775); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode()&os.ModeSetgid == 0 {
		t.Errorf("dir mode %v lacks setgid", fi.Mode())
	}
}

func testMtimeOnWrite(t *testing.T, dir string) {
	p := filepath.Join(dir, "f")
	mustWrite(t, p, []byte("0123456789"))
	old := time.Unix(1_000_000_000, 0)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("ab"), 3); err != nil { // an overwrite
		t.Fatal(err)
	}
	f.Close()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().After(old.Add(time.Hour)) {
		t.Errorf("mtime after a write = %v, still %v", fi.ModTime(), old)
	}
}

func testUnlinkOpen(t *testing.T, dir string) {
	p := filepath.Join(dir, "tmp")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(pattern(100_000, 3)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100_004)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:100_000], pattern(100_000, 3)) || string(buf[100_000:]) != "more" {
		t.Errorf("unlinked open file reads wrong bytes")
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat of unlinked name: %v", err)
	}
	mustWrite(t, p, []byte("new file, same name"))
	mustRead(t, p, []byte("new file, same name"))
}

func testFsync(t *testing.T, dir string) {
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("durable")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		t.Errorf("fsync of a directory: %v", err)
	}
}

func testStatfs(t *testing.T, dir string) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks == 0 || st.Bfree > st.Blocks || st.Bsize == 0 {
		t.Errorf("Statfs = %+v", st)
	}
}

func testErrors(t *testing.T, dir string) {
	p := filepath.Join(dir, "f")
	_, err := os.Open(filepath.Join(dir, "missing"))
	wantErrno(t, "open missing", err, syscall.ENOENT)
	mustWrite(t, p, nil)
	_, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	wantErrno(t, "O_EXCL on existing", err, syscall.EEXIST)
	_, err = os.Create(filepath.Join(p, "under-a-file"))
	wantErrno(t, "create under a file", err, syscall.ENOTDIR)
	_, err = os.OpenFile(dir, os.O_WRONLY, 0)
	wantErrno(t, "open a directory for writing", err, syscall.EISDIR)
	wantErrno(t, "rmdir missing", syscall.Rmdir(filepath.Join(dir, "missing")), syscall.ENOENT)
}

func testFifo(t *testing.T, dir string) {
	p := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("Lstat(fifo) = %v, %v", fi, err)
	}
}

func testNameMax(t *testing.T, dir string) {
	long := string(bytes.Repeat([]byte{'x'}, 255))
	mustWrite(t, filepath.Join(dir, long), []byte("ok"))
	mustRead(t, filepath.Join(dir, long), []byte("ok"))
	_, err := os.Create(filepath.Join(dir, long+"x"))
	wantErrno(t, "create a 256-byte name", err, syscall.ENAMETOOLONG)
}

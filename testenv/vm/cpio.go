package vm

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// newc header field values the guest kernel's initramfs unpacker reads.
const (
	cpioMagic   = "070701" // "new ASCII" format (cpio -H newc), the one the kernel accepts
	cpioTrailer = "TRAILER!!!"
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// cpioWriter writes an uncompressed newc archive, the format the kernel
// unpacks into its tmpfs root. Uncompressed because the guest would otherwise
// spend its emulated CPU time on decompression (gzip costs about a second
// under TCG for a test binary's size) while the host copy costs milliseconds.
//
// Parent directories are added on demand and every path is written once:
// the first entry for a path wins, so callers add what must win first.
type cpioWriter struct {
	w     io.Writer
	ino   uint32
	seen  map[string]bool
	err   error
	bytes int64
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, seen: map[string]bool{"": true}}
}

// Dir adds directory name (absolute or relative to the archive root).
func (c *cpioWriter) Dir(name string) {
	name = clean(name)
	if c.seen[name] {
		return
	}
	c.Dir(path.Dir(name))
	c.seen[name] = true
	c.header(name, modeDir|0o755, 0)
}

// Symlink adds name pointing at target.
func (c *cpioWriter) Symlink(name, target string) {
	if !c.claim(name) {
		return
	}
	c.header(clean(name), modeSymlink|0o777, len(target))
	c.data(strings.NewReader(target), int64(len(target)))
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, major, minor uint32) {
	if !c.claim(name) {
		return
	}
	c.headerDev(clean(name), modeCharDev|0o600, 0, major, minor)
}

// Bytes adds a regular file with the given content and permission bits.
func (c *cpioWriter) Bytes(name string, perm fs.FileMode, b []byte) {
	if !c.claim(name) {
		return
	}
	c.header(clean(name), modeFile|uint32(perm.Perm()), len(b))
	c.data(strings.NewReader(string(b)), int64(len(b)))
}

// File adds the host file src (symlinks followed) as name, keeping its
// permission bits.
func (c *cpioWriter) File(name, src string) {
	if c.err != nil || c.seen[clean(name)] {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.err = err
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		c.err = err
		return
	}
	if !fi.Mode().IsRegular() {
		c.err = fmt.Errorf("%s: not a regular file", src)
		return
	}
	if fi.Size() > 1<<32-1 { // newc sizes are 32-bit
		c.err = fmt.Errorf("%s: %d bytes: too large for an initramfs", src, fi.Size())
		return
	}
	c.claim(name)
	c.header(clean(name), modeFile|uint32(fi.Mode().Perm()), int(fi.Size()))
	c.data(f, fi.Size())
}

// Has reports whether name was added.
func (c *cpioWriter) Has(name string) bool { return c.seen[clean(name)] }

// Close writes the trailer and returns the first error met.
func (c *cpioWriter) Close() error {
	c.header(cpioTrailer, 0, 0)
	return c.err
}

// claim reserves name and adds its parents; false if it was added already.
func (c *cpioWriter) claim(name string) bool {
	name = clean(name)
	if c.err != nil || c.seen[name] {
		return false
	}
	c.Dir(path.Dir(name))
	c.seen[name] = true
	return true
}

func (c *cpioWriter) header(name string, mode uint32, size int) {
	c.headerDev(name, mode, size, 0, 0)
}

func (c *cpioWriter) headerDev(name string, mode uint32, size int, major, minor uint32) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&modeDir != 0 {
		nlink = 2
	}
	// ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor
	// rdevminor namesize check; uid, gid and mtime stay 0 (root, epoch).
	h := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		cpioMagic, c.ino, mode, 0, 0, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0)
	c.write([]byte(h + name + "\x00"))
	c.pad()
}

func (c *cpioWriter) data(r io.Reader, size int64) {
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, io.LimitReader(r, size))
	c.bytes += n
	if err == nil && n != size {
		err = fmt.Errorf("cpio: short copy: %d of %d bytes", n, size)
	}
	c.err = err
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.bytes += int64(n)
	c.err = err
}

// pad aligns the stream to 4 bytes, as newc requires after names and data.
func (c *cpioWriter) pad() {
	if r := c.bytes % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// clean turns a guest path into an archive name: no leading slash.
func clean(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	return name
}

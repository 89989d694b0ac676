package device

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kinds of storage a File can be opened on, as reported by File.Kind.
const (
	KindFile  = "file"  // a regular file
	KindBlock = "block" // a block device or partition
)

// fileBlockSize is the largest alignment a File reports, and the one used
// when the kernel does not say (statx without STATX_DIOALIGN): the page size,
// the largest logical block size of any file system we run on, so O_DIRECT
// IO at this alignment works everywhere. Sizes are rounded to it.
const fileBlockSize = 4096

// Options configure Open. The zero value opens read-write with O_DIRECT.
type Options struct {
	// ReadOnly opens the device read-only; WriteAt and Discard return
	// ErrReadOnly.
	ReadOnly bool

	// Buffered skips O_DIRECT and goes through the page cache, for file
	// systems without O_DIRECT support (such as tmpfs before Linux 6.6)
	// and for tests. Buffers then need no memory alignment; offsets and
	// lengths still do.
	Buffered bool
}

// File is a Device backed by a regular file or a block device, accessed
// with pread, pwrite and fdatasync. Open it with Open. All methods are safe
// for concurrent use, subject to the Device rules on overlapping ranges.
type File struct {
	path      string
	f         *os.File
	rc        syscall.RawConn // holds a reference on the fd during each syscall
	kind      string
	size      int64
	blockSize int
	direct    bool
	readOnly  bool
	closed    atomic.Bool
}

var (
	_ Device    = (*File)(nil)
	_ Discarder = (*File)(nil)
)

// Open opens the regular file or block device at path.
//
// BlockSize is the finest alignment the device accepts, so that reads fetch
// no more than they need: for a regular file opened with O_DIRECT, the file
// system's O_DIRECT offset alignment (statx STATX_DIOALIGN; 512 on ext4 over
// a disk with 512-byte logical sectors), else 4096 if the kernel does not
// say, and 512 when Buffered; for a block device, its logical sector size.
// Callers that want writes never to straddle a physical sector align them to
// 4096 themselves (the store does). Devices with logical sectors above 4096
// are refused. Size is the file size at open (the File never grows the file)
// or the device size (BLKGETSIZE64), rounded down to a multiple of 4096.
//
// Unless opts.Buffered is set, the file is opened with O_DIRECT. If the file
// system rejects O_DIRECT, the error says so and suggests Options.Buffered.
// Errors from open(2) wrap its *fs.PathError, so errors.Is(err,
// fs.ErrNotExist) works. Character devices, directories and other files
// are refused.
func Open(path string, opts Options) (*File, error) {
	f, err := openFile(path, opts)
	if err != nil {
		return nil, err
	}
	d := &File{path: path, f: f, direct: !opts.Buffered, readOnly: opts.ReadOnly}
	if err := d.init(); err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

// openFile opens path with the flags opts asks for.
func openFile(path string, opts Options) (*os.File, error) {
	flag := os.O_RDWR
	if opts.ReadOnly {
		flag = os.O_RDONLY
	}
	flag |= unix.O_CLOEXEC
	if !opts.Buffered {
		flag |= unix.O_DIRECT
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, openError(err, !opts.Buffered)
	}
	return f, nil
}

// openError wraps an error from opening, explaining EINVAL under O_DIRECT:
// that is how Linux reports a file system without direct IO support.
func openError(err error, direct bool) error {
	if direct && errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("device: %w: file system does not support O_DIRECT (Options.Buffered opens through the page cache)", err)
	}
	return fmt.Errorf("device: %w", err)
}

// init fills in kind, size and block size from the open file.
func (d *File) init() error {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("device %s: %w", d.path, err)
	}
	d.rc = rc
	fi, err := d.f.Stat()
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	mode := fi.Mode()
	switch {
	case mode.IsRegular():
		d.kind, d.blockSize = KindFile, 512
		d.size = fi.Size() / fileBlockSize * fileBlockSize
		if d.direct {
			return d.control(d.initDirectAlign)
		}
		return nil
	case mode&os.ModeDevice != 0 && mode&os.ModeCharDevice == 0:
		d.kind = KindBlock
		return d.control(d.initBlock)
	default:
		return fmt.Errorf("device %s: mode %v is neither a regular file nor a block device", d.path, mode)
	}
}

// initDirectAlign asks the file system for its O_DIRECT alignment.
func (d *File) initDirectAlign(fd int) error {
	d.blockSize = fileBlockSize
	var stx unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &stx)
	if err != nil || stx.Mask&unix.STATX_DIOALIGN == 0 {
		return nil // an older kernel: 4096 works everywhere
	}
	off, mem := int(stx.Dio_offset_align), int(stx.Dio_mem_align)
	if off >= 512 && off <= fileBlockSize && off&(off-1) == 0 && mem <= fileBlockSize {
		d.blockSize = off
	}
	return nil
}

// initBlock reads a block device's geometry with ioctls.
func (d *File) initBlock(fd int) error {
	size, err := unix.IoctlGetUint64(fd, unix.BLKGETSIZE64)
	if err != nil {
		return fmt.Errorf("device %s: BLKGETSIZE64: %w", d.path, err)
	}
	logical, err := unix.IoctlGetInt(fd, unix.BLKSSZGET)
	if err != nil {
		return fmt.Errorf("device %s: BLKSSZGET: %w", d.path, err)
	}
	physical, err := unix.IoctlGetUint32(fd, unix.BLKPBSZGET)
	if err != nil {
		return fmt.Errorf("device %s: BLKPBSZGET: %w", d.path, err)
	}
	bs, err := blockDevBlockSize(logical, int(physical))
	if err != nil {
		return fmt.Errorf("device %s: %w", d.path, err)
	}
	d.blockSize = bs
	d.size = int64(size) / fileBlockSize * fileBlockSize
	return nil
}

// blockDevBlockSize picks the BlockSize for a block device: its logical
// sector size (a power of two from 512 to 4096), the finest unit it accepts.
func blockDevBlockSize(logical, physical int) (int, error) {
	switch {
	case logical > fileBlockSize || logical < 512 || logical&(logical-1) != 0:
		return 0, fmt.Errorf("logical sector size %d is unsupported (want 512 to %d)", logical, fileBlockSize)
	case physical < logical:
		return 0, fmt.Errorf("physical sector size %d below logical %d", physical, logical)
	}
	return logical, nil
}

// Kind returns KindFile or KindBlock.
func (d *File) Kind() string { return d.kind }

// Size returns the usable size in bytes, fixed at Open.
func (d *File) Size() int64 { return d.size }

// BlockSize returns the finest IO alignment (see Open): 512 to 4096 for a
// device, as described at Open.
func (d *File) BlockSize() int { return d.blockSize }

// ReadAt reads len(p) bytes at off with pread, retrying short reads and
// EINTR. Errors wrap ErrClosed, ErrUnaligned, ErrOutOfRange or the errno.
func (d *File) ReadAt(p []byte, off int64) (int, error) {
	if err := d.checkIO(p, off, false); err != nil {
		return 0, fmt.Errorf("device %s: read: %w", d.path, err)
	}
	var n int
	err := d.control(func(fd int) (err error) {
		n, err = fullIO(fd, p, off, unix.Pread, "pread", io.ErrUnexpectedEOF)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("device %s: read at %d: %w", d.path, off+int64(n), err)
	}
	return n, nil
}

// WriteAt writes len(p) bytes at off with pwrite, retrying short writes and
// EINTR. The data is durable only after Sync. Errors wrap ErrClosed,
// ErrReadOnly, ErrUnaligned, ErrOutOfRange or the errno.
func (d *File) WriteAt(p []byte, off int64) (int, error) {
	if err := d.checkIO(p, off, true); err != nil {
		return 0, fmt.Errorf("device %s: write: %w", d.path, err)
	}
	var n int
	err := d.control(func(fd int) (err error) {
		n, err = fullIO(fd, p, off, unix.Pwrite, "pwrite", io.ErrShortWrite)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("device %s: write at %d: %w", d.path, off+int64(n), err)
	}
	return n, nil
}

// checkIO validates a ReadAt or WriteAt request before any IO.
func (d *File) checkIO(p []byte, off int64, write bool) error {
	switch {
	case d.closed.Load():
		return ErrClosed
	case write && d.readOnly:
		return ErrReadOnly
	case d.direct && len(p) > 0 && !isAligned(p, d.blockSize):
		return fmt.Errorf("buffer not aligned to %d bytes in memory (O_DIRECT): %w", d.blockSize, ErrUnaligned)
	}
	return checkRange(off, int64(len(p)), d.blockSize, d.size)
}

// fullIO calls op (pread or pwrite) until all of p is transferred,
// retrying EINTR. A zero-byte transfer returns short.
func fullIO(fd int, p []byte, off int64, op func(int, []byte, int64) (int, error), name string, short error) (int, error) {
	n := 0
	for n < len(p) {
		m, err := op(fd, p[n:], off+int64(n))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return n, os.NewSyscallError(name, err)
		case m == 0:
			return n, short
		}
		n += m
	}
	return n, nil
}

// Sync makes completed writes durable with fdatasync, which also flushes a
// block device's volatile write cache. Errors wrap ErrClosed or the errno.
func (d *File) Sync() error {
	if d.closed.Load() {
		return fmt.Errorf("device %s: sync: %w", d.path, ErrClosed)
	}
	err := d.control(func(fd int) error {
		return retryEINTR("fdatasync", func() error { return unix.Fdatasync(fd) })
	})
	if err != nil {
		return fmt.Errorf("device %s: sync: %w", d.path, err)
	}
	return nil
}

// Discard punches a hole in a regular file (fallocate PUNCH_HOLE|KEEP_SIZE)
// or issues BLKDISCARD to a block device. It is advisory: the range then
// reads as zeros or its old contents, and a device that does not support
// discard (EOPNOTSUPP) is silently ignored. Errors wrap ErrClosed,
// ErrReadOnly, ErrUnaligned, ErrOutOfRange or the errno.
func (d *File) Discard(off, n int64) error {
	err := d.checkDiscard(off, n)
	if err == nil && n > 0 {
		err = d.control(func(fd int) error {
			return retryEINTR("discard", func() error { return d.discard(fd, off, n) })
		})
	}
	if err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("device %s: discard at %d length %d: %w", d.path, off, n, err)
	}
	return nil
}

// checkDiscard validates a Discard request before any IO.
func (d *File) checkDiscard(off, n int64) error {
	switch {
	case d.closed.Load():
		return ErrClosed
	case d.readOnly:
		return ErrReadOnly
	}
	return checkRange(off, n, d.blockSize, d.size)
}

// discard issues the kind-specific discard syscall.
func (d *File) discard(fd int, off, n int64) error {
	if d.kind == KindFile {
		return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	}
	r := [2]uint64{uint64(off), uint64(n)} // BLKDISCARD takes u64 range[2] = {start, len}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKDISCARD, uintptr(unsafe.Pointer(&r)))
	if errno != 0 {
		return errno
	}
	return nil
}

// Close closes the file. Calls in flight keep the descriptor open until
// they finish. A second Close returns ErrClosed.
func (d *File) Close() error {
	if d.closed.Swap(true) {
		return fmt.Errorf("device %s: close: %w", d.path, ErrClosed)
	}
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	return nil
}

// control runs fn on the file descriptor while holding a reference on it,
// so a concurrent Close cannot recycle the descriptor mid-call.
func (d *File) control(fn func(fd int) error) error {
	var opErr error
	if err := d.rc.Control(func(fd uintptr) { opErr = fn(int(fd)) }); err != nil {
		// Control fails only once the file is closing.
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return opErr
}

// retryEINTR calls fn until it returns something other than EINTR, and
// names a failing syscall.
func retryEINTR(name string, fn func() error) error {
	for {
		err := fn()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return os.NewSyscallError(name, err)
	}
}

// Create creates a sparse regular file of exactly size bytes at path for
// Open, and syncs it and its directory. size must be a non-negative
// multiple of 4096 (errors wrap ErrUnaligned or ErrOutOfRange). Create never
// overwrites: if path exists the error wraps fs.ErrExist.
func Create(path string, size int64) error {
	switch {
	case size < 0:
		return fmt.Errorf("device %s: create with size %d: %w", path, size, ErrOutOfRange)
	case size%fileBlockSize != 0:
		return fmt.Errorf("device %s: create with size %d, not a multiple of %d: %w", path, size, fileBlockSize, ErrUnaligned)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	if err := sizeAndSync(f, size); err != nil {
		os.Remove(path)
		return fmt.Errorf("device: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// sizeAndSync truncates f to size, syncs and closes it.
func sizeAndSync(f *os.File, size int64) error {
	err := f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// syncDir fsyncs a directory so a file created in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("device: sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("device: sync directory: %w", err)
	}
	return nil
}

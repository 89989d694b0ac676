//go:build e2e

package ublk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"cloudfs/testenv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// requireUblk skips a test where the kernel has no ublk or the process is
// not root; testenv.RequireUblk also marks the binary for the VM runner.
func requireUblk(t *testing.T) {
	t.Helper()
	testenv.RequireUblk(t)
}

// memBackend is a Backend in memory. Writes, zeroes and flushes complete on
// goroutines of their own, as a store's would; errors complete at once.
type memBackend struct {
	mu        sync.Mutex
	data      []byte
	readErr   error // if set, every read fails with it
	writeErr  error // if set, every write fails with it
	flushes   atomic.Int64
	fuaWrites atomic.Int64
	zeroes    atomic.Int64
}

func newMem(size int64) *memBackend { return &memBackend{data: make([]byte, size)} }

func (m *memBackend) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.readErr != nil {
		return 0, m.readErr
	}
	return copy(p, m.data[off:]), nil
}

func (m *memBackend) WriteAsync(p []byte, off int64, fua bool, done func(error)) {
	m.mu.Lock()
	err := m.writeErr
	m.mu.Unlock()
	if err != nil {
		done(err)
		return
	}
	go func() {
		m.mu.Lock()
		copy(m.data[off:], p)
		m.mu.Unlock()
		if fua {
			m.fuaWrites.Add(1)
		}
		done(nil)
	}()
}

func (m *memBackend) ZeroAsync(off, n int64, fua bool, done func(error)) {
	go func() {
		m.mu.Lock()
		clear(m.data[off : off+n])
		m.mu.Unlock()
		m.zeroes.Add(1)
		done(nil)
	}()
}

func (m *memBackend) FlushAsync(done func(error)) {
	go func() { m.flushes.Add(1); done(nil) }()
}

func (m *memBackend) fail(read, write error) {
	m.mu.Lock()
	m.readErr, m.writeErr = read, write
	m.mu.Unlock()
}

func (m *memBackend) snapshot(off, n int64) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.data[off : off+n])
}

func testConfig(t *testing.T, size int64) Config {
	return Config{Size: size, Queues: 2, Depth: 32, MaxIOBytes: 256 << 10, Timeout: 20 * time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))}
}

// create makes a device and deletes it at the end of the test.
func create(t *testing.T, be Backend, cfg Config) *Device {
	t.Helper()
	d, err := Create(be, cfg)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Delete(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Delete: %v", err)
		}
	})
	return d
}

// alignedBuf returns n bytes of page-aligned memory (O_DIRECT).
func alignedBuf(t *testing.T, n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(b) })
	return b
}

func openDirect(t *testing.T, d *Device, flags int) int {
	t.Helper()
	var fd int
	var err error
	for range 100 { // the block node appears shortly after START_DEV
		fd, err = unix.Open(d.BlockPath(), unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC|flags, 0)
		if !errors.Is(err, unix.ENOENT) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("open %s: %v", d.BlockPath(), err)
	}
	return fd
}

func pwrite(t *testing.T, fd int, p []byte, off int64) {
	t.Helper()
	if n, err := unix.Pwrite(fd, p, off); err != nil || n != len(p) {
		t.Fatalf("pwrite(%d bytes at %d) = %d, %v", len(p), off, n, err)
	}
}

func pread(t *testing.T, fd int, n int, off int64) []byte {
	t.Helper()
	p := alignedBuf(t, n)
	if got, err := unix.Pread(fd, p, off); err != nil || got != n {
		t.Fatalf("pread(%d bytes at %d) = %d, %v", n, off, got, err)
	}
	return p
}

func TestE2EFeatures(t *testing.T) {
	requireUblk(t)
	f, err := Features(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GET_FEATURES = %#x", f)
}

func TestE2EReadWrite(t *testing.T) {
	requireUblk(t)
	for _, noUserCopy := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoUserCopy=%v", noUserCopy), func(t *testing.T) {
			const size = 64 << 20
			be := newMem(size)
			cfg := testConfig(t, size)
			cfg.NoUserCopy = noUserCopy
			reg := prometheus.NewRegistry()
			cfg.Metrics = reg
			d := create(t, be, cfg)
			if got := d.Flags()&UBLK_F_USER_COPY != 0; got == noUserCopy {
				t.Fatalf("flags %#x with NoUserCopy=%v", d.Flags(), noUserCopy)
			}
			fd := openDirect(t, d, 0)
			defer unix.Close(fd)
			rng := rand.New(rand.NewPCG(1, 2))
			for _, c := range []struct{ off, n int64 }{{0, 4096}, {8192, 1 << 20}, {3 << 20, 512 << 10},
				{size - 4096, 4096}, {size - 256<<10, 256 << 10}, {12345 * 512, 64 << 10}} {
				want := alignedBuf(t, int(c.n))
				for i := range want {
					want[i] = byte(rng.Uint32())
				}
				pwrite(t, fd, want, c.off)
				if got := be.snapshot(c.off, c.n); !bytes.Equal(got, want) {
					t.Fatalf("backend at %d differs from the write", c.off)
				}
				if got := pread(t, fd, int(c.n), c.off); !bytes.Equal(got, want) {
					t.Fatalf("read at %d differs from the write", c.off)
				}
			}
			if err := unix.Fdatasync(fd); err != nil {
				t.Fatalf("fdatasync: %v", err)
			}
			if be.flushes.Load() == 0 {
				t.Fatal("fdatasync sent no FLUSH to the backend")
			}
			if n := testutil.ToFloat64(newMetrics(reg).requests[opWrite]); n == 0 {
				t.Fatal("no write counted in cloudfs_ublk_io_requests_total")
			}
		})
	}
}

func TestE2EFUA(t *testing.T) {
	requireUblk(t)
	const size = 16 << 20
	be := newMem(size)
	d := create(t, be, testConfig(t, size))
	fd := openDirect(t, d, unix.O_DSYNC)
	defer unix.Close(fd)
	pwrite(t, fd, alignedBuf(t, 4096), 0)
	if be.fuaWrites.Load() == 0 && be.flushes.Load() == 0 {
		t.Fatal("an O_DSYNC write reached the backend without FUA or a flush")
	}
	t.Logf("fua writes %d, flushes %d", be.fuaWrites.Load(), be.flushes.Load())
}

// Linux ioctls of <linux/fs.h>: _IO(0x12, 119) and _IO(0x12, 127).
const (
	ioctlBLKDISCARD = 0x1277
	ioctlBLKZEROOUT = 0x127f
)

func blkRange(t *testing.T, fd int, req uint, off, n uint64) {
	t.Helper()
	r := [2]uint64{off, n}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&r))); errno != 0 {
		t.Fatalf("ioctl %#x [%d, +%d): %v", req, off, n, errno)
	}
}

func TestE2EDiscardZeroes(t *testing.T) {
	requireUblk(t)
	const size = 16 << 20
	be := newMem(size)
	d := create(t, be, testConfig(t, size))
	fd := openDirect(t, d, 0)
	defer unix.Close(fd)
	ones := alignedBuf(t, 1<<20)
	for i := range ones {
		ones[i] = 0xff
	}
	for _, req := range []uint{ioctlBLKDISCARD, ioctlBLKZEROOUT} {
		pwrite(t, fd, ones, 1<<20)
		before := be.zeroes.Load()
		blkRange(t, fd, req, 1<<20+4096, 64<<10)
		if be.zeroes.Load() == before {
			t.Fatalf("ioctl %#x reached the backend as no discard or write-zeroes", req)
		}
		got := pread(t, fd, 1<<20, 1<<20)
		if !bytes.Equal(got[:4096], ones[:4096]) || !bytes.Equal(got[4096+64<<10:], ones[4096+64<<10:]) {
			t.Fatalf("ioctl %#x changed bytes outside its range", req)
		}
		if !bytes.Equal(got[4096:4096+64<<10], make([]byte, 64<<10)) {
			t.Fatalf("ioctl %#x: range does not read as zeros", req)
		}
	}
	// The whole device at once: requests larger than an IO buffer.
	pwrite(t, fd, ones, size-1<<20)
	blkRange(t, fd, ioctlBLKDISCARD, 0, size)
	if got := pread(t, fd, 1<<20, size-1<<20); !bytes.Equal(got, make([]byte, 1<<20)) {
		t.Fatal("a discard of the whole device does not read as zeros")
	}
}

func TestE2EOutOfRange(t *testing.T) {
	requireUblk(t)
	const size = 8 << 20
	d := create(t, newMem(size), testConfig(t, size))
	fd := openDirect(t, d, 0)
	defer unix.Close(fd)
	buf := alignedBuf(t, 8192)
	if n, err := unix.Pread(fd, buf, size); n != 0 {
		t.Fatalf("read at the end = %d, %v; want 0 bytes", n, err)
	}
	if n, err := unix.Pread(fd, buf, size-4096); n != 4096 || err != nil {
		t.Fatalf("read across the end = %d, %v; want the 4096 bytes inside", n, err)
	}
	if _, err := unix.Pwrite(fd, buf, size); err == nil {
		t.Fatal("write past the end succeeded")
	}
	pwrite(t, fd, buf[:4096], 0) // still serving
}

func TestE2EBackendErrors(t *testing.T) {
	requireUblk(t)
	const size = 8 << 20
	be := newMem(size)
	cfg := testConfig(t, size)
	cfg.Errno = func(err error) syscall.Errno {
		if errors.Is(err, errFull) {
			return syscall.ENOSPC
		}
		return 0
	}
	d := create(t, be, cfg)
	fd := openDirect(t, d, 0)
	defer unix.Close(fd)
	buf := alignedBuf(t, 4096)
	for _, c := range []struct {
		name   string
		err    error
		errno  syscall.Errno
		isRead bool
	}{
		{"write ENOSPC", fmt.Errorf("store: %w", syscall.ENOSPC), syscall.ENOSPC, false},
		{"write full via Config.Errno", fmt.Errorf("volume 1: %w", errFull), syscall.ENOSPC, false},
		{"write other", errors.New("store: broken"), syscall.EIO, false},
		{"read other", errors.New("store: corrupt"), syscall.EIO, true},
	} {
		if c.isRead {
			be.fail(c.err, nil)
			_, err := unix.Pread(fd, buf, 0)
			if !errors.Is(err, c.errno) {
				t.Errorf("%s: pread error %v, want %v", c.name, err, c.errno)
			}
		} else {
			be.fail(nil, c.err)
			_, err := unix.Pwrite(fd, buf, 0)
			if !errors.Is(err, c.errno) {
				t.Errorf("%s: pwrite error %v, want %v", c.name, err, c.errno)
			}
		}
		be.fail(nil, nil)
		pwrite(t, fd, buf, 4096) // the device goes on serving
	}
}

func TestE2EEightDevices(t *testing.T) {
	requireUblk(t)
	const size, n = 8 << 20, 8
	devs := make([]*Device, n)
	bes := make([]*memBackend, n)
	var wg sync.WaitGroup
	for i := range n {
		bes[i] = newMem(size)
		cfg := testConfig(t, size)
		cfg.Queues, cfg.Depth = 1, 16
		wg.Go(func() {
			d, err := Create(bes[i], cfg)
			if err != nil {
				t.Errorf("Create %d: %v", i, err)
				return
			}
			devs[i] = d
		})
	}
	wg.Wait()
	for _, d := range devs {
		if d == nil {
			continue
		}
		t.Cleanup(func() {
			if err := d.Delete(); err != nil {
				t.Errorf("Delete %d: %v", d.ID(), err)
			}
		})
	}
	if t.Failed() {
		t.FailNow()
	}
	for i, d := range devs {
		wg.Go(func() {
			fd := openDirect(t, d, 0)
			defer unix.Close(fd)
			want := alignedBuf(t, 64<<10)
			for j := range want {
				want[j] = byte(i)
			}
			pwrite(t, fd, want, int64(i)<<20)
			if got := pread(t, fd, len(want), int64(i)<<20); !bytes.Equal(got, want) {
				t.Errorf("device %d: read differs", d.ID())
			}
		})
	}
	wg.Wait()
}

func TestE2EDeleteTwice(t *testing.T) {
	requireUblk(t)
	const size = 8 << 20
	d, err := Create(newMem(size), testConfig(t, size))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	<-d.Done()
	if err := d.Delete(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Delete = %v, want ErrClosed", err)
	}
	if _, err := DeviceInfo(d.ID(), 0); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("GET_DEV_INFO after Delete = %v, want ENODEV", err)
	}
}

// Delete while /dev/ublkbN is open returns (an error wrapping ErrTimeout is
// allowed: DEL_DEV waits for the last close), and the device goes once the
// descriptor is closed.
func TestE2EDeleteWhileOpen(t *testing.T) {
	requireUblk(t)
	const size = 8 << 20
	cfg := testConfig(t, size)
	cfg.Timeout = 3 * time.Second
	d, err := Create(newMem(size), cfg)
	if err != nil {
		t.Fatal(err)
	}
	fd := openDirect(t, d, 0)
	pwrite(t, fd, alignedBuf(t, 4096), 0)
	err = d.Delete()
	t.Logf("Delete with the device open: %v", err)
	if err != nil && !errors.Is(err, ErrTimeout) {
		t.Fatalf("Delete with the device open = %v, want nil or ErrTimeout", err)
	}
	if n, err := unix.Pread(fd, alignedBuf(t, 4096), 0); err == nil && n > 0 {
		t.Errorf("read after Delete returned %d bytes", n)
	}
	unix.Close(fd)
	for range 200 {
		if _, err := DeviceInfo(d.ID(), 0); errors.Is(err, unix.ENODEV) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("device %d still exists after the last close", d.ID())
}

// Detach (what a crash leaves) and Recover: the block device stays, IO
// issued while no server runs waits and completes after recovery.
func TestE2ERecover(t *testing.T) {
	requireUblk(t)
	const size = 16 << 20
	be := newMem(size)
	cfg := testConfig(t, size)
	d, err := Create(be, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Flags()&UBLK_F_USER_RECOVERY == 0 {
		_ = d.Delete()
		t.Skipf("no UBLK_F_USER_RECOVERY in flags %#x", d.Flags())
	}
	fd := openDirect(t, d, 0)
	defer unix.Close(fd)
	want := alignedBuf(t, 64<<10)
	for i := range want {
		want[i] = byte(i * 7)
	}
	pwrite(t, fd, want, 1<<20)
	if err := d.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	info, err := DeviceInfo(d.ID(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after Detach: state %d", info.State)

	// A read while no server runs: the kernel holds it.
	type result struct {
		got []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		p := alignedBuf(t, len(want))
		n, err := unix.Pread(fd, p, 1<<20)
		if err == nil && n != len(p) {
			err = fmt.Errorf("short read %d", n)
		}
		res <- result{p, err}
	}()

	d2, err := Recover(d.ID(), be, cfg)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	t.Cleanup(func() {
		if err := d2.Delete(); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
	r := <-res
	if r.err != nil || !bytes.Equal(r.got, want) {
		t.Fatalf("read across recovery: %v, data equal %v", r.err, bytes.Equal(r.got, want))
	}
	pwrite(t, fd, want, 2<<20)
	if got := pread(t, fd, len(want), 2<<20); !bytes.Equal(got, want) {
		t.Fatal("read after recovery differs")
	}
	short := cfg
	short.Timeout = time.Second
	if _, err := Recover(d.ID(), be, short); err == nil {
		t.Fatal("Recover of a served device succeeded")
	}
}

// gatedBackend holds every write until its gate opens, and says when one
// has arrived.
type gatedBackend struct {
	*memBackend
	arrived chan struct{}
	gate    chan struct{}
}

func (g *gatedBackend) WriteAsync(p []byte, off int64, fua bool, done func(error)) {
	go func() {
		select {
		case g.arrived <- struct{}{}:
		default:
		}
		<-g.gate
		g.memBackend.WriteAsync(p, off, fua, done)
	}()
}

// crash drops the queues at once, requests held by the backend included,
// as a SIGKILL of the server would, and leaves the device to Recover.
func (d *Device) crash() error {
	d.markClosed()
	d.m.devices.Dec()
	return d.stopQueues(false)
}

// A write the backend holds when the server dies is reissued to the
// recovered server (UBLK_F_USER_RECOVERY_REISSUE) and completes.
func TestE2ERecoverInFlight(t *testing.T) {
	requireUblk(t)
	const size = 16 << 20
	mem := newMem(size)
	gated := &gatedBackend{memBackend: mem, arrived: make(chan struct{}, 1), gate: make(chan struct{})}
	defer close(gated.gate)
	cfg := testConfig(t, size)
	d, err := Create(gated, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Flags()&UBLK_F_USER_RECOVERY_REISSUE == 0 {
		_ = d.Delete()
		t.Skipf("no UBLK_F_USER_RECOVERY_REISSUE in flags %#x", d.Flags())
	}
	fd := openDirect(t, d, 0)
	defer unix.Close(fd)
	want := alignedBuf(t, 64<<10)
	for i := range want {
		want[i] = byte(i * 13)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := unix.Pwrite(fd, want, 3<<20)
		wrote <- err
	}()
	<-gated.arrived
	if err := d.crash(); err != nil {
		t.Fatalf("crash: %v", err)
	}
	d2, err := Recover(d.ID(), mem, cfg) // the new server's backend does not hold writes
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	t.Cleanup(func() {
		if err := d2.Delete(); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
	if err := <-wrote; err != nil {
		t.Fatalf("write in flight across the crash: %v", err)
	}
	if got := pread(t, fd, len(want), 3<<20); !bytes.Equal(got, want) {
		t.Fatal("data of the reissued write differs")
	}
}

// Several writers and readers at once over both queues, with few tags so
// that tags are reused under load: every byte read equals the mirror.
func TestE2EConcurrentVerify(t *testing.T) {
	requireUblk(t)
	const size, workers, region = 32 << 20, 4, 8 << 20
	be := newMem(size)
	cfg := testConfig(t, size)
	cfg.Depth = 8
	reg := prometheus.NewRegistry()
	cfg.Metrics = reg
	d := create(t, be, cfg)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			fd := openDirect(t, d, 0)
			defer unix.Close(fd)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			base := int64(w) * region
			mirror := make([]byte, region)
			buf := alignedBuf(t, 128<<10)
			for op := range 150 {
				n := (1 + rng.IntN(32)) * 4096
				off := int64(rng.IntN((region-n)/4096)) * 4096
				switch {
				case op%10 == 9:
					if err := unix.Fdatasync(fd); err != nil {
						t.Errorf("fdatasync: %v", err)
						return
					}
				case rng.IntN(2) == 0:
					for i := range n {
						buf[i] = byte(rng.Uint32())
					}
					if k, err := unix.Pwrite(fd, buf[:n], base+off); err != nil || k != n {
						t.Errorf("pwrite %d at %d: %d, %v", n, base+off, k, err)
						return
					}
					copy(mirror[off:], buf[:n])
				default:
					if k, err := unix.Pread(fd, buf[:n], base+off); err != nil || k != n {
						t.Errorf("pread %d at %d: %d, %v", n, base+off, k, err)
						return
					}
					if !bytes.Equal(buf[:n], mirror[off:off+int64(n)]) {
						t.Errorf("worker %d: read %d at %d differs from the mirror", w, n, off)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	m := newMetrics(reg)
	t.Logf("commits %v in %v batches", testutil.ToFloat64(m.commits), testutil.ToFloat64(m.batches))
}

// A device left by a server that will not come back is found by List and
// removed by Remove.
func TestE2ERemoveLeftover(t *testing.T) {
	requireUblk(t)
	const size = 8 << 20
	cfg := testConfig(t, size)
	cfg.NoRecovery = true
	d, err := Create(newMem(size), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	infos, err := List(0)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	found := false
	for _, info := range infos {
		t.Logf("listed: %+v", info)
		found = found || info.ID == d.ID()
	}
	if !found {
		t.Fatalf("List does not show device %d", d.ID())
	}
	if _, err := Recover(d.ID(), newMem(size), cfg); !errors.Is(err, ErrNotRecoverable) {
		t.Fatalf("Recover of a device without USER_RECOVERY = %v, want ErrNotRecoverable", err)
	}
	if err := Remove(d.ID(), 0); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := DeviceInfo(d.ID(), 0); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("GET_DEV_INFO after Remove = %v, want ENODEV", err)
	}
}

// A file system on the device: mkfs.ext4, mount, write, unmount, e2fsck
// clean, remount, same contents. Skipped where the guest lacks the tools
// (run-in-vm.sh -b mkfs.ext4 -b e2fsck puts them there).
func TestE2EExt4(t *testing.T) {
	requireUblk(t)
	mkfs, err1 := exec.LookPath("mkfs.ext4")
	fsck, err2 := exec.LookPath("e2fsck")
	if err1 != nil || err2 != nil {
		t.Skip("no mkfs.ext4 or e2fsck in the guest")
	}
	const size = 64 << 20
	d := create(t, newMem(size), testConfig(t, size))
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	unix.Close(openDirect(t, d, 0)) // waits for the node
	run(mkfs, "-q", "-F", d.BlockPath())
	dir := t.TempDir()
	if err := unix.Mount(d.BlockPath(), dir, "ext4", 0, ""); err != nil {
		t.Skipf("mount ext4: %v", err)
	}
	want := bytes.Repeat([]byte("cloudfs ublk ext4\n"), 100000)
	if err := os.WriteFile(dir+"/f", want, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	run(fsck, "-f", "-n", d.BlockPath())
	if err := unix.Mount(d.BlockPath(), dir, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Unmount(dir, 0) }()
	got, err := os.ReadFile(dir + "/f")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file after remount: %v, equal %v", err, bytes.Equal(got, want))
	}
}

// fileBackend serves a device from a file, so that its data outlives the
// process that serves it.
type fileBackend struct{ f *os.File }

func (b fileBackend) ReadAt(p []byte, off int64) (int, error) { return b.f.ReadAt(p, off) }
func (b fileBackend) WriteAsync(p []byte, off int64, _ bool, done func(error)) {
	go func() { _, err := b.f.WriteAt(p, off); done(err) }()
}
func (b fileBackend) ZeroAsync(off, n int64, _ bool, done func(error)) {
	go func() { _, err := b.f.WriteAt(make([]byte, n), off); done(err) }()
}
func (b fileBackend) FlushAsync(done func(error)) { go func() { done(b.f.Sync()) }() }

// crashChildEnv names the backing file of TestE2ECrashChild's device.
const crashChildEnv = "UBLK_E2E_CRASH_CHILD_FILE"

// TestE2ECrashChild is the server process of TestE2ECrashRecover: it
// serves a device from the file named in its environment, prints the
// device id, and runs until it is killed.
func TestE2ECrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("only run by TestE2ECrashRecover")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Create(fileBackend{f}, Config{Size: st.Size(), Queues: 2, Depth: 16, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("DEVICE %d\n", d.ID())
	<-d.Done()
}

// SIGKILL of the serving process, then Recover in another: the block
// device stays, a read issued while no server runs completes after the
// recovery, and data written before the crash is there.
func TestE2ECrashRecover(t *testing.T) {
	requireUblk(t)
	const size = 16 << 20
	path := t.TempDir() + "/backing"
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestE2ECrashChild$", "-test.v")
	child.Env = append(os.Environ(), crashChildEnv+"="+path)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var id uint32
	found := false
	for sc := bufio.NewScanner(out); !found && sc.Scan(); {
		_, err := fmt.Sscanf(sc.Text(), "DEVICE %d", &id)
		found = err == nil
	}
	if !found {
		_ = child.Process.Kill()
		t.Fatal("the child printed no device")
	}
	blk := fmt.Sprintf("/dev/ublkb%d", id)
	fd := openDirect(t, &Device{id: id}, 0)
	defer unix.Close(fd)
	want := alignedBuf(t, 128<<10)
	for i := range want {
		want[i] = byte(i*31 + 1)
	}
	pwrite(t, fd, want, 5<<20)
	if err := unix.Fdatasync(fd); err != nil {
		t.Fatal(err)
	}
	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = child.Wait() // "signal: killed"

	res := make(chan error, 1)
	go func() {
		got := alignedBuf(t, len(want))
		n, err := unix.Pread(fd, got, 5<<20)
		if err == nil && (n != len(got) || !bytes.Equal(got, want)) {
			err = fmt.Errorf("read %d bytes, equal %v", n, bytes.Equal(got, want))
		}
		res <- err
	}()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := Recover(id, fileBackend{f}, testConfig(t, size))
	if err != nil {
		t.Fatalf("Recover after SIGKILL: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Delete(); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
	if d.BlockPath() != blk {
		t.Fatalf("recovered %s, want %s", d.BlockPath(), blk)
	}
	if err := <-res; err != nil {
		t.Fatalf("read across the crash: %v", err)
	}
	pwrite(t, fd, want, 9<<20)
	if got := pread(t, fd, len(want), 9<<20); !bytes.Equal(got, want) {
		t.Fatal("read after recovery differs")
	}
}

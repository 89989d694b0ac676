package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"

	"cloudfs/posixshim"
	"cloudfs/segment"

	"golang.org/x/sys/unix"
)

// The shim bench (issue 7) runs the same file IO on four files in the bench
// directory, one after the other: a plain file opened O_DIRECT, the same
// plain file opened normally (page cache), and, with the POSIX shim mounted
// over a store freshly formatted on a file beside them, a volume's disk file
// (<mnt>/disks/<id>) and a regular file inside a namespace (<mnt>/<id>/).
// Every file gets, within --duration each: 1 MiB sequential writes from empty
// (--seq-qd goroutines), the holes that left filled (untimed), 4 KiB random
// writes over the written span at QD1 and at --qd, and 4 KiB random reads
// (--qd) with the page cache dropped, each block read at most once per
// pass. The random write row is QD1: FUSE without the writeback cache holds
// a file's inode lock through each write, so writes to one file reach the
// shim one at a time whatever the QD, and more waiters only add contention
// (QD32 measured several times slower than QD1); the --qd figures are in
// the detail.
//
// The limits are the plain file's figures. Writes compare with O_DIRECT:
// without FUSE's writeback cache (the shim does not enable it) a write(2)
// to either shim file returns only once the store has logged it on the
// device, as an O_DIRECT write does, while a page-cache write returns after
// a copy and, at these sizes, never reaches the disk. Reads compare with the
// page cache, cold: the shim's files are read through it too, so every read
// on either side is a page-cache miss served from the disk. The other plain
// variant's figure is printed in each row's detail.

const (
	// shimSpanShare: the span each file is written over is 1/8 of --size;
	// the store's file gets the rest, room for both volumes' writes
	// (about 3.2 spans: each volume logs the span once and two quarter
	// spans of 4 KiB writes at 4.5 KiB each, plus the namespace's journal)
	// with the cleaner's reserve to spare.
	shimSpanShare = 8
	// shimMinSpan is the smallest span worth measuring.
	shimMinSpan = 16 << 20
)

// benchShim measures file IO through the shim against a plain file.
func benchShim(c *config, dir string) ([]row, error) {
	rows, err := runShim(c, dir)
	if err != nil && len(rows) == 0 {
		rows = []row{failedRow("shim", "shim (POSIX shim over FUSE)", err)}
	}
	return rows, err
}

func runShim(c *config, dir string) ([]row, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the shim bench mounts a FUSE file system: run it as root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("the shim bench needs /dev/fuse: %w", err)
	}
	span := c.size / shimSpanShare &^ (seqBlock - 1)
	if span < shimMinSpan {
		return nil, fmt.Errorf("--size %s is too small for the shim bench (needs %s)", formatBytes(float64(c.size)),
			formatBytes(shimSpanShare*shimMinSpan))
	}
	s := shimBench{c: c, span: span, perm: permutation(span/blockSize, 13)}
	plainPath := filepath.Join(dir, "shim-plain.dat")
	direct, err := s.measure("plain O_DIRECT", plainPath, os.O_CREATE|os.O_TRUNC|unix.O_DIRECT)
	if err != nil {
		return nil, errSide("plain file O_DIRECT", err)
	}
	cached, err := s.measure("plain cached", plainPath, os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return nil, errSide("plain file", err)
	}
	if err := os.Remove(plainPath); err != nil {
		return nil, err
	}
	disk, file, err := s.throughShim(dir, c.size-span)
	if err != nil {
		return nil, err
	}
	return append(s.rows("disk file", disk, direct, cached), s.rows("shim file", file, direct, cached)...), nil
}

// shimBench is what every file of the shim bench is measured with.
type shimBench struct {
	c    *config
	span int64   // bytes each file is written and read over
	perm []int64 // the order of the 4 KiB blocks of span in a read pass
}

// shimFigures are one file's results.
type shimFigures struct {
	seq     loadResult
	write   loadResult // 4 KiB random writes at QD1
	writeQD loadResult // the same at --qd
	read    loadResult
}

// throughShim formats a store of storeSize bytes on a file in dir, mounts
// the shim over it on a directory in dir and measures a disk file and a
// file in a namespace. It unmounts and closes the store whatever happens.
func (s shimBench) throughShim(dir string, storeSize int64) (disk, file shimFigures, err error) {
	storePath := filepath.Join(dir, "shim-store.img")
	if err := prepareFile(storePath, storeSize); err != nil {
		return disk, file, err
	}
	e, err := openEngine(storePath)
	if err != nil {
		return disk, file, err
	}
	defer func() { err = errors.Join(err, e.close()) }()
	diskVol, err := e.volume(s.span)
	if err != nil {
		return disk, file, err
	}
	// The namespace's layout (superblock, checkpoint slots, journal) takes
	// about 1/32 of the volume: twice the span leaves room for the file.
	// The volume is thin, so the room costs nothing.
	nsVol, err := e.volume(2 * s.span)
	if err != nil {
		return disk, file, err
	}
	mnt, err := os.MkdirTemp(dir, "shim-mnt-")
	if err != nil {
		return disk, file, err
	}
	defer func() { err = errors.Join(err, os.Remove(mnt)) }()
	srv, err := posixshim.Mount(mnt, shimSource{e.st}, posixshim.Config{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return disk, file, err
	}
	logf("  shim mounted on %s", mnt)
	defer func() { err = errors.Join(err, unmountShim(srv, mnt)) }()
	disk, err = s.measure("disk file", filepath.Join(mnt, "disks", diskVol.Base().String()), 0)
	if err != nil {
		return disk, file, errSide("disk file", err)
	}
	file, err = s.measure("shim file", filepath.Join(mnt, nsVol.Base().String(), "bench.dat"), os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return disk, file, errSide("shim file", err)
	}
	return disk, file, nil
}

// unmountShim unmounts the shim; if the kernel refuses, it detaches the
// mount (MNT_DETACH) so that it never outlives the bench.
func unmountShim(srv *posixshim.Server, mnt string) error {
	err := srv.Unmount()
	if err == nil {
		logf("  shim unmounted")
		return nil
	}
	if derr := unix.Unmount(mnt, unix.MNT_DETACH); derr != nil {
		return errors.Join(err, fmt.Errorf("detach %s: %w", mnt, derr))
	}
	return errors.Join(err, srv.Wait())
}

// measure runs the three measurements on the file at path, opened O_RDWR
// with the extra flags.
func (s shimBench) measure(name, path string, flags int) (figs shimFigures, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|flags, 0o644)
	if err != nil {
		return figs, err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	c := s.c
	seq := load{workers: c.seqQD, duration: c.duration, maxOps: s.span / seqBlock}
	written := make([]bool, seq.maxOps) // by operation number, set by the one worker that ran it
	if figs.seq, err = seq.run(marking(seqWrites(f, s.span), written)); err != nil {
		return figs, fmt.Errorf("sequential write: %w", err)
	}
	logRun(name, figs.seq, "1 MiB sequential write "+mbps(figs.seq.rate()*seqBlock))
	if err = fillHoles(f, s.span, written); err == nil {
		err = f.Sync()
	}
	if err != nil {
		return figs, fmt.Errorf("fill: %w", err)
	}
	// QD1 (the row) and --qd (its detail), a quarter of a span of 4 KiB
	// writes each: the store's log has room for both (see shimSpanShare)
	if figs.write, err = s.randWrite(f, 1, 11); err != nil {
		return figs, err
	}
	logRun(name, figs.write, "4 KiB random write QD1 "+iops(figs.write.rate(), blockSize).Text)
	if figs.writeQD, err = s.randWrite(f, c.randQD, 12); err != nil {
		return figs, err
	}
	logRun(name, figs.writeQD, fmt.Sprintf("4 KiB random write QD%d %s", c.randQD, iops(figs.writeQD.rate(), blockSize).Text))
	rr := load{workers: c.randQD, duration: c.duration, maxOps: int64(len(s.perm))}
	figs.read, err = rounds(rr, func(l load) (loadResult, error) {
		if err := dropCache(f); err != nil {
			return loadResult{}, err
		}
		return l.run(permReads(f, s.perm))
	})
	if err != nil {
		return figs, fmt.Errorf("random read: %w", err)
	}
	logRun(name, figs.read, "4 KiB random read "+iops(figs.read.rate(), blockSize).Text)
	return figs, nil
}

// randWrite runs 4 KiB random writes over the span at queue depth qd,
// then syncs (untimed).
func (s shimBench) randWrite(f *os.File, qd int, seed uint64) (loadResult, error) {
	l := load{workers: qd, duration: s.c.duration, maxOps: s.span / 4 / blockSize}
	res, err := l.run(randWrites(f, s.span, seed))
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return res, fmt.Errorf("random write QD%d: %w", qd, err)
	}
	return res, nil
}

// rows are the three rows of one shim path against the plain file.
func (s shimBench) rows(path string, eng, direct, cached shimFigures) []row {
	c := s.c
	bw := func(r loadResult) measure { return throughput(r.rate() * seqBlock) }
	ios := func(r loadResult) measure { return iops(r.rate(), blockSize) }
	const writeLimit = "limit: plain file, O_DIRECT (a FUSE write returns once the store has logged it)"
	return []row{
		infoRow("shim", fmt.Sprintf("1 MiB seq write QD%d, %s", c.seqQD, path), bw(eng.seq), bw(direct.seq),
			writeLimit+"; plain file through the page cache: "+bw(cached.seq).Text),
		infoRow("shim", "4 KiB random write QD1, "+path, ios(eng.write), ios(direct.write),
			fmt.Sprintf("limit: plain file, O_DIRECT, QD1. FUSE holds the file's inode lock through each write-through "+
				"write, so writes to one file are serial, and at QD%d the waiters' contention makes it slower: "+
				"%s at QD%d (plain O_DIRECT %s); plain file through the page cache, QD1: %s",
				c.randQD, ios(eng.writeQD).Text, c.randQD, ios(direct.writeQD).Text, ios(cached.write).Text)),
		infoRow("shim", fmt.Sprintf("4 KiB random read QD%d, %s", c.randQD, path), ios(eng.read), ios(cached.read),
			"limit: plain file through the page cache, cold (dropped before each pass, every block read once per pass, "+
				"no readahead), like the shim's files; plain file O_DIRECT: "+ios(direct.read).Text),
	}
}

// marking wraps newOp so that a successful operation i sets done[i].
func marking(newOp func(int) opFunc, done []bool) func(int) opFunc {
	return func(worker int) opFunc {
		op := newOp(worker)
		return func(i int64) error {
			err := op(i)
			if err == nil {
				done[i] = true
			}
			return err
		}
	}
}

// fillHoles writes, with seqWrites' data, every 1 MiB block of span whose
// operation did not run before the deadline, so that the whole span is
// written before it is overwritten and read.
func fillHoles(f *os.File, span int64, written []bool) error {
	op := seqWrites(f, span)(0)
	for i, ok := range written {
		if !ok {
			if err := op(int64(i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// dropCache writes back and evicts f's pages and turns readahead off, so
// that the reads that follow miss the page cache. It works on FUSE files
// too: their pages are clean (write-through), and fadvise drops clean pages.
func dropCache(f *os.File) error {
	if err := f.Sync(); err != nil {
		return err
	}
	fd := int(f.Fd())
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise DONTNEED: %w", err)
	}
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM); err != nil {
		return fmt.Errorf("fadvise RANDOM: %w", err)
	}
	return nil
}

// permReads reads 4 KiB blocks in the order of perm (operation i reads
// block perm[i]) and checks every sector's stamp; a run of at most
// len(perm) operations reads each block at most once.
func permReads(f *os.File, perm []int64) func(int) opFunc {
	return func(int) opFunc {
		buf := payload(blockSize, 0)
		return func(i int64) error {
			off := perm[i] * blockSize
			if _, err := f.ReadAt(buf, off); err != nil {
				return err
			}
			return checkStamp(buf, off)
		}
	}
}

// permutation returns 0..n-1 in a random order drawn from seed.
func permutation(n int64, seed uint64) []int64 {
	p := make([]int64, n)
	for i := range p {
		p[i] = int64(i)
	}
	rand.New(rand.NewPCG(seed, 0)).Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
	return p
}

// shimSource is the posixshim.Source the daemon would provide, over one
// local store (modelled on posixshim's test source). No volume is ever a
// raw device here, so it refuses nothing; the shim itself keeps a volume
// from being a namespace and a disk file at once.
type shimSource struct{ st *segment.Store }

func (s shimSource) Open(id string, _ posixshim.Use) (posixshim.Disk, func(), error) {
	base, err := segment.ParseID(id)
	if err != nil {
		return nil, nil, fmt.Errorf("volume %q: %w", id, posixshim.ErrNotFound)
	}
	v, err := s.st.Volume(base)
	if err != nil {
		return nil, nil, err
	}
	in, err := v.Info()
	if err != nil {
		return nil, nil, err
	}
	return volDisk{Volume: v, size: int64(in.Size)}, func() {}, nil
}

func (s shimSource) List() []string {
	var ids []string
	for _, h := range s.st.Heads() {
		ids = append(ids, h.Base.String())
	}
	return ids
}

// volDisk adapts a segment.Volume to posixshim.Disk (and Blanker).
type volDisk struct {
	*segment.Volume
	size int64
}

var (
	_ posixshim.Disk    = volDisk{}
	_ posixshim.Zeroer  = volDisk{}
	_ posixshim.Blanker = volDisk{}
)

func (d volDisk) Size() int64 { return d.size }

// Blank reports whether the volume was never written.
func (d volDisk) Blank() (bool, error) {
	in, err := d.Info()
	if err != nil {
		return false, err
	}
	return in.Blank(), nil
}

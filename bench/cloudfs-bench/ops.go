package main

import (
	"bytes"
	"fmt"
	"io"

	"cloudfs/segment"
)

// The operations below run unchanged against the raw device.File and against
// a segment.Volume: both are an io.WriterAt and an io.ReaderAt, so the two
// sides of every comparison execute the same harness code.

// seqWrites writes 1 MiB blocks, operation i at (i MiB) modulo span.
func seqWrites(w io.WriterAt, span int64) func(int) opFunc {
	return func(worker int) opFunc {
		buf := payload(seqBlock, uint64(worker))
		return func(i int64) error {
			off := i * seqBlock % span
			stamp(buf, off, i)
			_, err := w.WriteAt(buf, off)
			return err
		}
	}
}

// randWrites writes 4 KiB blocks at random aligned offsets below span.
func randWrites(w io.WriterAt, span int64, seed uint64) func(int) opFunc {
	return func(worker int) opFunc {
		buf := payload(blockSize, seed+uint64(worker))
		offs := newOffsets(span, blockSize, worker, seed)
		return func(i int64) error {
			off := offs.next()
			stamp(buf, off, i)
			_, err := w.WriteAt(buf, off)
			return err
		}
	}
}

// randReads reads 4 KiB blocks at random aligned offsets below span. With
// verify, each block must carry the stamp seqWrites put there.
func randReads(r io.ReaderAt, span int64, seed uint64, verify bool) func(int) opFunc {
	return func(worker int) opFunc {
		buf := payload(blockSize, 0)
		offs := newOffsets(span, blockSize, worker, seed)
		return func(int64) error {
			off := offs.next()
			if _, err := r.ReadAt(buf, off); err != nil {
				return err
			}
			if verify {
				return checkStamp(buf, off)
			}
			return nil
		}
	}
}

// checkStamp checks the offset stamp of every sector of a block read at off.
func checkStamp(p []byte, off int64) error {
	want := make([]byte, 8)
	for i := 0; i < len(p); i += 512 {
		putOff(want, off+int64(i))
		if !bytes.Equal(p[i:i+8], want) {
			return fmt.Errorf("wrong data: sector at volume offset %d holds stamp %x, want %x", off+int64(i), p[i:i+8], want)
		}
	}
	return nil
}

// syncWrites writes 4 KiB at random offsets and then calls sync: pwrite +
// fdatasync on the raw file, WriteAt + Flush on a volume.
func syncWrites(w io.WriterAt, sync func() error, span int64, seed uint64) func(int) opFunc {
	write := randWrites(w, span, seed)
	return func(worker int) opFunc {
		op := write(worker)
		return func(i int64) error {
			if err := op(i); err != nil {
				return err
			}
			return sync()
		}
	}
}

// fuaWrites writes 4 KiB at random offsets with FUA and waits for each.
func fuaWrites(v *segment.Volume, span int64, seed uint64) func(int) opFunc {
	return randWrites(fuaWriter{v}, span, seed)
}

// fuaWriter is a volume whose WriteAt sets FUA.
type fuaWriter struct{ v *segment.Volume }

func (f fuaWriter) WriteAt(p []byte, off int64) (int, error) {
	ch := make(chan error, 1)
	f.v.WriteAsync(p, off, true, func(err error) { ch <- err })
	if err := <-ch; err != nil {
		return 0, err
	}
	return len(p), nil
}

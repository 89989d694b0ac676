package segment

import (
	"fmt"
	"hash/crc32"

	"cloudfs/segment/device"
)

// logReader reads records sequentially from sector address pos, expecting
// consecutive gseqs, in reads of up to 1 MiB.
type logReader struct {
	s    *Store
	pos  uint64 // sector address of the next record
	gseq uint64 // gseq expected there
	buf  []byte // device bytes from bufAt
	at   uint64 // sector address of buf[0]
	end  uint64 // if not 0, nothing at or past this sector address is read
}

func (s *Store) newLogReader(pos, gseq uint64) *logReader {
	return &logReader{s: s, pos: pos, gseq: gseq}
}

// jump continues at the start of segment seg.
func (r *logReader) jump(seg uint32) { r.pos = r.s.addr(seg, 0) }

// next returns the next record, its body (NBody sectors) and its address. It
// fails (wrapping ErrCorrupt or errEndOfLog) where the record does not verify.
func (r *logReader) next() (*Header, []byte, uint64, error) {
	hb, err := r.bytes(r.pos, HeaderSize)
	if err != nil {
		return nil, nil, 0, err
	}
	h, err := decodeHeader(hb, r.s.sb.UUID)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("at sector %d: %w", r.pos, err)
	}
	if h.GSeq != r.gseq {
		return nil, nil, 0, fmt.Errorf("at sector %d: gseq %d, want %d: %w", r.pos, h.GSeq, r.gseq, errEndOfLog)
	}
	seg := r.s.segOf(r.pos)
	if r.pos+uint64(1+h.NBody) > r.s.addr(seg, r.s.segSectors()) {
		return nil, nil, 0, fmt.Errorf("at sector %d: record crosses the segment end: %w", r.pos, ErrCorrupt)
	}
	rb, err := r.bytes(r.pos, int(h.Size()))
	if err != nil {
		return nil, nil, 0, err
	}
	if err := h.checkBody(rb[:HeaderSize], rb[HeaderSize:]); err != nil {
		return nil, nil, 0, fmt.Errorf("at sector %d: %w", r.pos, err)
	}
	addr := r.pos
	r.pos += uint64(1 + h.NBody)
	r.gseq++
	if h.Kind == KindPad && h.Aux != 0 {
		r.gseq = h.Aux // a recovery pad: the log continues at gseq Aux
	}
	return h, rb[HeaderSize:], addr, nil
}

// bytes returns n bytes at sector address a, reading ahead up to 1 MiB but
// never past the end of a's segment.
func (r *logReader) bytes(a uint64, n int) ([]byte, error) {
	if a >= r.at && (a-r.at)*SectorSize+uint64(n) <= uint64(len(r.buf)) {
		off := (a - r.at) * SectorSize
		return r.buf[off : off+uint64(n)], nil
	}
	seg := r.s.segOf(a)
	start := a &^ (BlockSize/SectorSize - 1)
	segEnd := r.s.addr(seg, r.s.segSectors())
	if r.end != 0 && r.end < segEnd {
		if a+uint64(n/SectorSize) > r.end {
			return nil, fmt.Errorf("at sector %d: the readable end %d: %w", a, r.end, errEndOfLog)
		}
		// read whole blocks: in a live store the applied end is a block
		// boundary (batches are padded), and nobody writes an opened
		// store's tail after recovery
		segEnd = min(segEnd, roundUp(r.end, BlockSize/SectorSize))
	}
	// whole blocks (O_DIRECT), at least 1 MiB, never past the segment's end
	size := min(roundUp(uint64(max(n+BlockSize, 1<<20)), BlockSize), (segEnd-start)*SectorSize)
	if cap(r.buf) < int(size) {
		// only what this read needs: a followed stream reads the few
		// blocks a round appended to the active segment, often
		r.buf = device.AlignedBuf(int(size))
	}
	r.buf = r.buf[:size]
	r.at = start
	if _, err := r.s.dev.ReadAt(r.buf, int64(start)*SectorSize); err != nil {
		r.buf = r.buf[:0]
		return nil, fmt.Errorf("read log at sector %d: %w", start, err)
	}
	off := (a - r.at) * SectorSize
	if off+uint64(n) > uint64(len(r.buf)) {
		return nil, fmt.Errorf("at sector %d: %d bytes past the segment end: %w", a, n, ErrCorrupt)
	}
	return r.buf[off : off+uint64(n)], nil
}

func roundUp(n, m uint64) uint64 { return (n + m - 1) / m * m }

func crcOf(b []byte) uint32 { return crc32.Checksum(b, crcTable) }

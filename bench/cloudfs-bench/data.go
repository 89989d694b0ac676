package main

import (
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"

	"cloudfs/segment/device"
)

const (
	blockSize = 4096    // the block of the random measurements, and the file's O_DIRECT alignment
	seqBlock  = 1 << 20 // the block of the sequential measurements
	// recordBytes is what one 4 KiB write costs in the engine's log: a
	// 512-byte record header and the body.
	recordBytes = 512 + blockSize
)

// payload returns an O_DIRECT-aligned buffer of n bytes of random data. The
// engine stores no all-zero sector (a zero sector costs no log space), so
// benchmark data must never contain one; stamp keeps it that way.
func payload(n int, seed uint64) []byte {
	p := device.AlignedBuf(n)
	_, _ = rand.NewChaCha8(seedBytes(seed)).Read(p) // never fails
	return p
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	s[31] = 1 // never the all-zero key
	return s
}

// stamp writes off and seq into the first 16 bytes of every 512-byte sector
// of p, so each written sector is distinct and non-zero (bit 63 is set).
func stamp(p []byte, off, seq int64) {
	for i := 0; i < len(p); i += 512 {
		putOff(p[i:], off+int64(i))
		binary.LittleEndian.PutUint64(p[i+8:], uint64(seq))
	}
}

// putOff writes the offset stamp of the sector at off: off with bit 63 set.
func putOff(p []byte, off int64) { binary.LittleEndian.PutUint64(p, uint64(off)|1<<63) }

// checksum is how the crash fill and the restart compare a block.
func checksum(p []byte) uint32 { return crc32.ChecksumIEEE(p) }

// offsets draws random block-aligned offsets below span bytes.
type offsets struct {
	rng  *rand.Rand
	span int64
	bs   int64
}

func newOffsets(span, bs int64, worker int, seed uint64) *offsets {
	return &offsets{rng: rand.New(rand.NewPCG(seed, uint64(worker))), span: span, bs: bs}
}

func (o *offsets) next() int64 { return o.rng.Int64N(o.span/o.bs) * o.bs }

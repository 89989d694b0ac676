package segment

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Sizes of the format. docs/FORMAT.md draws every structure byte by byte.
const (
	// SectorSize is the volume addressing unit and the log's record alignment.
	SectorSize = 512
	// BlockSize is the device IO unit: every device write is BlockSize aligned in
	// offset and length (O_DIRECT on 4Kn devices), and a batch never rewrites
	// a block an earlier batch wrote, so a torn write can only hit
	// unacknowledged data. (Recovery rewrites the block of a torn tail once,
	// its verified sectors unchanged; see endLog.)
	BlockSize = 4096
	// DefaultSegmentSize is the segment size nuke uses unless told otherwise.
	DefaultSegmentSize = 16 << 20
	// MinSegmentSize and MaxSegmentSize bound the segment size set at format time.
	MinSegmentSize = 4 << 20 // holds the largest record (1 MiB + header) several times
	MaxSegmentSize = 1 << 30
	// FormatVersion is the on-disk format this code reads and writes.
	FormatVersion = 1

	superblockOff = 0
	slotAOff      = 1 * BlockSize
	slotBOff      = 2 * BlockSize
	// segmentAreaOff aligns segments to 1 MiB, the erase-block friendly boundary.
	segmentAreaOff = 1 << 20
	// minSegments: the writer needs one active segment, the cleaner a spare, and a
	// checkpoint room to land.
	minSegments = 4
)

var (
	superMagic = [8]byte{'C', 'L', 'O', 'U', 'D', 'F', 'S', 0}
	slotMagic  = [8]byte{'C', 'F', 'C', 'K', 'P', 'T', '0', '1'}
	crcTable   = crc32.MakeTable(crc32.Castagnoli)
)

// Superblock is block 0 of a store. It is written once, by Format, and only read
// afterwards.
type Superblock struct {
	Version     uint32
	UUID        [16]byte
	SegmentSize int64
	Segments    int64 // number of segments in the segment area
	DeviceSize  int64 // device size at format time
	Created     int64 // unix nanoseconds
	// Secret is the store's private key material: view secrets (the access
	// tokens of the volumes this store owns) derive from it. It never leaves the
	// host.
	Secret [32]byte
}

// superblock layout (little endian):
//
//	off size field
//	  0    8 magic "CLOUDFS\0"
//	  8    4 format version
//	 12    4 sector size (512)
//	 16    4 block size (4096)
//	 20    4 reserved, zero
//	 24   16 store uuid
//	 40    8 segment size in bytes
//	 48    8 segment count
//	 56    8 segment area offset in bytes
//	 64    8 device size at format time
//	 72    8 created, unix nanoseconds
//	 80   32 store secret
//	112 3980 zero
//	4092   4 crc32c of bytes [0, 4092)

// SegmentAreaOffset is the byte offset of segment 0 on the device.
func (sb *Superblock) SegmentAreaOffset() int64 { return segmentAreaOff }

// Encode returns the superblock's 4096 bytes.
func (sb *Superblock) Encode() []byte {
	b := make([]byte, BlockSize)
	copy(b[0:8], superMagic[:])
	le := binary.LittleEndian
	le.PutUint32(b[8:], sb.Version)
	le.PutUint32(b[12:], SectorSize)
	le.PutUint32(b[16:], BlockSize)
	copy(b[24:40], sb.UUID[:])
	le.PutUint64(b[40:], uint64(sb.SegmentSize))
	le.PutUint64(b[48:], uint64(sb.Segments))
	le.PutUint64(b[56:], segmentAreaOff)
	le.PutUint64(b[64:], uint64(sb.DeviceSize))
	le.PutUint64(b[72:], uint64(sb.Created))
	copy(b[80:112], sb.Secret[:])
	le.PutUint32(b[BlockSize-4:], crc32.Checksum(b[:BlockSize-4], crcTable))
	return b
}

// DecodeSuperblock parses block 0. It returns ErrNotStore without the magic,
// ErrUnsupportedFormat for another format version, and ErrCorrupt for a bad
// checksum or inconsistent sizes. Nothing is ever guessed or repaired.
func DecodeSuperblock(b []byte) (*Superblock, error) {
	if len(b) < BlockSize {
		return nil, fmt.Errorf("superblock: %d bytes, want %d: %w", len(b), BlockSize, ErrCorrupt)
	}
	if !bytes.Equal(b[0:8], superMagic[:]) {
		return nil, fmt.Errorf("superblock: magic %q: %w", b[0:8], ErrNotStore)
	}
	le := binary.LittleEndian
	// The version is checked before the checksum: a newer format may checksum
	// differently, and "unsupported" is the truthful answer for it.
	sb := &Superblock{Version: le.Uint32(b[8:])}
	if sb.Version != FormatVersion {
		return nil, fmt.Errorf("superblock: format version %d, this build reads %d: %w",
			sb.Version, FormatVersion, ErrUnsupportedFormat)
	}
	if got, want := crc32.Checksum(b[:BlockSize-4], crcTable), le.Uint32(b[BlockSize-4:]); got != want {
		return nil, fmt.Errorf("superblock: crc %08x != %08x: %w", got, want, ErrCorrupt)
	}
	if !allZero(b[20:24]) || !allZero(b[112:BlockSize-4]) {
		return nil, fmt.Errorf("superblock: reserved bytes set: %w", ErrCorrupt)
	}
	copy(sb.UUID[:], b[24:40])
	sb.SegmentSize = int64(le.Uint64(b[40:]))
	sb.Segments = int64(le.Uint64(b[48:]))
	sb.DeviceSize = int64(le.Uint64(b[64:]))
	sb.Created = int64(le.Uint64(b[72:]))
	copy(sb.Secret[:], b[80:112])
	if err := sb.validate(le.Uint32(b[12:]), le.Uint32(b[16:]), le.Uint64(b[56:])); err != nil {
		return nil, err
	}
	return sb, nil
}

func (sb *Superblock) validate(sector, block uint32, area uint64) error {
	switch {
	case sector != SectorSize || block != BlockSize || area != segmentAreaOff:
		return fmt.Errorf("superblock: sector %d block %d area %d: %w", sector, block, area, ErrCorrupt)
	case sb.SegmentSize < MinSegmentSize || sb.SegmentSize > MaxSegmentSize || sb.SegmentSize%BlockSize != 0:
		return fmt.Errorf("superblock: segment size %d: %w", sb.SegmentSize, ErrCorrupt)
	case sb.Segments < minSegments || sb.Segments > (1<<31):
		return fmt.Errorf("superblock: %d segments: %w", sb.Segments, ErrCorrupt)
	case segmentAreaOff+sb.Segments*sb.SegmentSize > sb.DeviceSize:
		return fmt.Errorf("superblock: %d segments of %d bytes exceed the device (%d bytes): %w",
			sb.Segments, sb.SegmentSize, sb.DeviceSize, ErrCorrupt)
	}
	return nil
}

// slot is one of the two checkpoint slots: a pointer to the newest durable
// checkpoint body in the log, and where roll-forward starts.
type slot struct {
	Generation uint64
	BodyAddr   uint64 // sector address of the first checkpoint record
	BodyGSeq   uint64 // gseq of the first checkpoint record
	BodyChunks uint32 // number of checkpoint records
	BodyBytes  uint64 // total body bytes
	BodyCRC    uint32 // crc32c of the whole body
	ReplayAddr uint64 // sector address where roll-forward starts
	ReplayGSeq uint64 // gseq expected there
}

// slot layout (little endian), 4096 bytes:
//
//	off size field
//	  0    8 magic "CFCKPT01"
//	  8    8 generation (0: never written)
//	 16    8 body address (sectors)
//	 24    8 body gseq
//	 32    4 body chunks
//	 36    4 body crc32c
//	 40    8 body bytes
//	 48    8 replay address (sectors)
//	 56    8 replay gseq
//	 64 4028 zero
//	4092   4 crc32c of bytes [0, 4092) seeded with the store uuid

func (s *slot) encode(uuid [16]byte) []byte {
	b := make([]byte, BlockSize)
	copy(b[0:8], slotMagic[:])
	le := binary.LittleEndian
	le.PutUint64(b[8:], s.Generation)
	le.PutUint64(b[16:], s.BodyAddr)
	le.PutUint64(b[24:], s.BodyGSeq)
	le.PutUint32(b[32:], s.BodyChunks)
	le.PutUint32(b[36:], s.BodyCRC)
	le.PutUint64(b[40:], s.BodyBytes)
	le.PutUint64(b[48:], s.ReplayAddr)
	le.PutUint64(b[56:], s.ReplayGSeq)
	le.PutUint32(b[BlockSize-4:], seededCRC(uuid, b[:BlockSize-4]))
	return b
}

// decodeSlot parses a checkpoint slot. A slot that was never written (all
// zeros) decodes to generation 0 without error; anything else that does not
// verify is ErrCorrupt (recovery then uses the other slot).
func decodeSlot(b []byte, uuid [16]byte) (*slot, error) {
	if len(b) < BlockSize {
		return nil, fmt.Errorf("checkpoint slot: %d bytes: %w", len(b), ErrCorrupt)
	}
	if allZero(b[:BlockSize]) {
		return &slot{}, nil
	}
	if !bytes.Equal(b[0:8], slotMagic[:]) {
		return nil, fmt.Errorf("checkpoint slot: magic %q: %w", b[0:8], ErrCorrupt)
	}
	le := binary.LittleEndian
	if got, want := seededCRC(uuid, b[:BlockSize-4]), le.Uint32(b[BlockSize-4:]); got != want {
		return nil, fmt.Errorf("checkpoint slot: crc %08x != %08x: %w", got, want, ErrCorrupt)
	}
	if !allZero(b[64 : BlockSize-4]) {
		return nil, fmt.Errorf("checkpoint slot: reserved bytes set: %w", ErrCorrupt)
	}
	s := &slot{
		Generation: le.Uint64(b[8:]),
		BodyAddr:   le.Uint64(b[16:]),
		BodyGSeq:   le.Uint64(b[24:]),
		BodyChunks: le.Uint32(b[32:]),
		BodyCRC:    le.Uint32(b[36:]),
		BodyBytes:  le.Uint64(b[40:]),
		ReplayAddr: le.Uint64(b[48:]),
		ReplayGSeq: le.Uint64(b[56:]),
	}
	if s.Generation == 0 || s.BodyChunks == 0 {
		return nil, fmt.Errorf("checkpoint slot: generation %d chunks %d: %w", s.Generation, s.BodyChunks, ErrCorrupt)
	}
	return s, nil
}

// seededCRC is crc32c(uuid || b): a block of another store (a device reformatted
// without being wiped) never verifies in this one.
func seededCRC(uuid [16]byte, b []byte) uint32 {
	return crc32.Update(crc32.Checksum(uuid[:], crcTable), crcTable, b)
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

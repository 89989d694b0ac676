package posixshim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The layout of a namespace inside a volume's address space (docs/FORMAT.md,
// "POSIX shim"):
//
//	+-------------+-------------+-------------+-----------+------------------+
//	| superblock  | checkpoint  | checkpoint  | journal   | data chunks      |
//	| (64 KiB)    | slot 0      | slot 1      |           | (64 KiB each)    |
//	+-------------+-------------+-------------+-----------+------------------+
//
// Every region starts on a chunk boundary. The volume is thin: regions cost
// store space only where written.
const (
	// sectorSize is the unit of every IO on a Disk.
	sectorSize = 512
	// chunkSize is the allocation unit of file data: big enough that a map
	// entry (about 8 bytes) per chunk keeps the metadata of a full volume
	// near 1/8000 of its size, small enough that a small file costs little
	// (the store keeps only the non-zero sectors of a chunk anyway).
	chunkSize = 64 << 10
	// superblockSize is the region reserved for the superblock (one chunk,
	// so the regions after it stay chunk aligned).
	superblockSize = chunkSize
	// minSlotSize and minJournalSize are the smallest metadata regions; they
	// grow with the volume (slotFraction, journalFraction) so that the
	// checkpoint of a volume full of files still fits.
	minSlotSize     = 1 << 20
	minJournalSize  = 4 << 20
	maxJournalSize  = 64 << 20 // bounds replay work at mount
	slotFraction    = 128      // a slot is 1/128 of the volume: 8 bytes per 1 KiB of data
	journalFraction = 64
	// minDataChunks is the least data area a namespace gets.
	minDataChunks = 16
	// layoutVersion is the version this code writes and reads.
	layoutVersion = 1
)

// magic opens the superblock of a shim namespace.
var magic = [8]byte{'C', 'F', 'S', 'P', 'O', 'S', 'I', 'X'}

// castagnoli is the CRC-32C table of every checksum of the layout.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// superblock describes a formatted namespace. It is written once, at format,
// and never changes.
type superblock struct {
	Version    uint32
	ChunkSize  uint32
	VolumeSize uint64 // bytes, at format time
	Slot       [2]uint64
	SlotSize   uint64
	JournalOff uint64
	JournalLen uint64
	DataOff    uint64
	DataChunks uint32
	UUID       [16]byte
	Created    int64 // unix nanoseconds
}

// sbLen is the encoded length of a superblock, checksum included.
const sbLen = 104

// newSuperblock computes the layout for a volume of size bytes.
func newSuperblock(size int64) (*superblock, error) {
	slot := roundUp(max(minSlotSize, uint64(size)/slotFraction), chunkSize)
	jlen := roundUp(min(max(minJournalSize, uint64(size)/journalFraction), maxJournalSize), chunkSize)
	sb := &superblock{Version: layoutVersion, ChunkSize: chunkSize, VolumeSize: uint64(size), SlotSize: slot,
		JournalLen: jlen}
	sb.Slot[0] = superblockSize
	sb.Slot[1] = sb.Slot[0] + slot
	sb.JournalOff = sb.Slot[1] + slot
	sb.DataOff = sb.JournalOff + jlen
	if uint64(size) < sb.DataOff+minDataChunks*chunkSize {
		return nil, fmt.Errorf("volume of %d bytes, need %d: %w", size, sb.DataOff+minDataChunks*chunkSize, ErrTooSmall)
	}
	chunks := (uint64(size) - sb.DataOff) / chunkSize
	sb.DataChunks = uint32(min(chunks, 1<<32-1))
	return sb, nil
}

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

// encode returns the superblock's sbLen bytes.
func (sb *superblock) encode() []byte {
	b := make([]byte, 0, sbLen)
	b = append(b, magic[:]...)
	b = binary.LittleEndian.AppendUint32(b, sb.Version)
	b = binary.LittleEndian.AppendUint32(b, sb.ChunkSize)
	for _, v := range []uint64{sb.VolumeSize, sb.Slot[0], sb.Slot[1], sb.SlotSize, sb.JournalOff, sb.JournalLen, sb.DataOff} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = binary.LittleEndian.AppendUint32(b, sb.DataChunks)
	b = append(b, sb.UUID[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(sb.Created))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeSuperblock decodes and validates the superblock at the start of b
// against a volume of size bytes. Errors wrap ErrForeign (no magic),
// ErrUnsupported or ErrCorrupt.
func decodeSuperblock(b []byte, size int64) (*superblock, error) {
	if len(b) < sbLen || !bytes.Equal(b[:8], magic[:]) {
		return nil, fmt.Errorf("superblock: no magic %q: %w", magic[:], ErrForeign)
	}
	le := binary.LittleEndian
	// The version is checked before the crc, so that a later layout may
	// checksum differently and still be refused as unsupported.
	if v := le.Uint32(b[8:]); v != layoutVersion {
		return nil, fmt.Errorf("superblock: version %d, this shim reads %d: %w", v, layoutVersion, ErrUnsupported)
	}
	if got, want := crc32.Checksum(b[:sbLen-4], castagnoli), le.Uint32(b[sbLen-4:]); got != want {
		return nil, fmt.Errorf("superblock: crc %08x != %08x: %w", got, want, ErrCorrupt)
	}
	if len(b) >= sectorSize && !allZero(b[sbLen:sectorSize]) {
		return nil, fmt.Errorf("superblock: reserved bytes [%d, %d) not zero: %w", sbLen, sectorSize, ErrCorrupt)
	}
	sb := &superblock{Version: le.Uint32(b[8:]), ChunkSize: le.Uint32(b[12:]), VolumeSize: le.Uint64(b[16:]),
		Slot: [2]uint64{le.Uint64(b[24:]), le.Uint64(b[32:])}, SlotSize: le.Uint64(b[40:]),
		JournalOff: le.Uint64(b[48:]), JournalLen: le.Uint64(b[56:]), DataOff: le.Uint64(b[64:]),
		DataChunks: le.Uint32(b[72:]), Created: int64(le.Uint64(b[92:]))}
	copy(sb.UUID[:], b[76:92])
	if err := sb.validate(size); err != nil {
		return nil, fmt.Errorf("superblock: %w", err)
	}
	return sb, nil
}

// validate checks that the regions are aligned, ordered, disjoint and
// within a volume of size bytes.
func (sb *superblock) validate(size int64) error {
	aligned := func(v uint64) bool { return v%chunkSize == 0 }
	switch {
	case sb.ChunkSize != chunkSize:
		return fmt.Errorf("chunk size %d, want %d: %w", sb.ChunkSize, chunkSize, ErrCorrupt)
	case sb.VolumeSize != uint64(size):
		return fmt.Errorf("formatted for %d bytes, volume has %d: %w", sb.VolumeSize, size, ErrCorrupt)
	case !aligned(sb.SlotSize) || sb.SlotSize < minSlotSize || sb.SlotSize > uint64(size),
		!aligned(sb.JournalLen) || sb.JournalLen < minJournalSize || sb.JournalLen > maxJournalSize:
		return fmt.Errorf("region sizes %d/%d: %w", sb.SlotSize, sb.JournalLen, ErrCorrupt)
	case sb.Slot[0] != superblockSize, sb.Slot[1] != sb.Slot[0]+sb.SlotSize,
		sb.JournalOff != sb.Slot[1]+sb.SlotSize, sb.DataOff != sb.JournalOff+sb.JournalLen:
		return fmt.Errorf("regions out of order: %w", ErrCorrupt)
	case sb.DataOff+uint64(sb.DataChunks)*chunkSize > uint64(size) || sb.DataChunks < minDataChunks:
		return fmt.Errorf("%d data chunks at %d beyond %d: %w", sb.DataChunks, sb.DataOff, size, ErrCorrupt)
	}
	return nil
}

// chunkOff returns the volume offset of data chunk c.
func (sb *superblock) chunkOff(c uint32) int64 { return int64(sb.DataOff) + int64(c)*chunkSize }

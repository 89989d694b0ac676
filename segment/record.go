package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
)

// Kind is the type of a log record.
type Kind uint8

// Record kinds. docs/FORMAT.md describes the fields each one uses.
const (
	KindData       Kind = 1 // a write: extent [LBA, LBA+NSect), present sectors in the body
	KindCreate     Kind = 2 // a new volume (lsn 1); Aux = size in bytes
	KindBranch     Kind = 3 // a new volume branched from version Link of volume Source
	KindDelete     Kind = 4 // local: the volume Base is deleted on this store
	KindPad        Kind = 5 // local: NBody sectors of filler up to the next block; Aux: gseq after it (recovery pad), 0: gseq+1
	KindNext       Kind = 6 // local: the log continues at segment Aux
	KindCheckpoint Kind = 7 // local: chunk LSN of checkpoint generation Aux
	KindGap        Kind = 8 // entries FirstLSN..LSN of Base were compacted away (no data)
	// KindView: a view change. The store that wrote it owns volume Base from
	// this entry on, in epoch Epoch (greater than the epoch before it); Link
	// is the public version id of the entry before it (lsn LSN-1). No data.
	KindView Kind = 9
	kindMax       = KindView
)

var kindNames = [...]string{"", "data", "create", "branch", "delete", "pad", "next", "checkpoint", "gap", "view"}

func (k Kind) String() string {
	if k == 0 || k > kindMax {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// chained reports whether records of this kind are entries of a volume's hash
// chain (streamed to replicas), as opposed to records local to this store.
func (k Kind) chained() bool {
	return k == KindData || k == KindCreate || k == KindBranch || k == KindGap || k == KindView
}

// Record versions (header byte 53). A view record has version 2, every other
// kind version 1: a build that predates view records refuses a log or stream
// holding one with ErrUnsupportedFormat, instead of taking it for a corrupt
// record (the end of the log, then written over). See docs/FORMAT.md §14.
const (
	recordV1 = 1
	recordV2 = 2 // KindView
)

// recordVersion is the record version a record of kind k is written with.
func recordVersion(k Kind) byte {
	if k == KindView {
		return recordV2
	}
	return recordV1
}

// Record flags (portable).
const (
	// FlagZero: the whole extent reads as zeros (discard, write-zeroes); the
	// record has no bitmap and no body, and NSect may exceed MaxEntrySectors.
	FlagZero uint16 = 1 << 0
	// FlagDropped: the cleaner dropped the body because later entries
	// overwrote every stored sector; the bitmap is the entry's own, so its
	// clear bits still read as zeros, while its set bits are left untouched
	// when the entry is applied. NBody is 0.
	FlagDropped uint16 = 1 << 1
)

// Local flags: meaningful on this store only; cleared by stream readers.
const (
	// lflagRelocated: the cleaner copied the record here from address From.
	// Applying it moves, in the maps of the record's volume and of its
	// snapshots, exactly the sectors that still point at the old copy. Owner
	// records which map held them when the cleaner read the record (for
	// diagnosis; a gap uses Owner[0:4] for its count, see gapCount).
	lflagRelocated uint32 = 1 << 0
	// lflagOwned: the store created this entry as the token holder (create,
	// branch, view): it holds the volume's view secret for the record's epoch.
	lflagOwned uint32 = 1 << 1
)

const (
	// HeaderSize is the size of a record header; the body follows it.
	HeaderSize = SectorSize
	// MaxEntrySectors is the longest extent one data record covers (1 MiB): the
	// bitmap has one bit per sector. Larger writes split into several records,
	// each valid alone.
	MaxEntrySectors = 2048
	// MaxZeroSectors is the longest extent one FlagZero record covers (512 MiB).
	MaxZeroSectors = 1<<20 - 1
	bitmapOff      = 256
	portableOff    = 48  // the portable part: [48, 512)
	sumCoverOff    = 52  // the sum covers the body then [52, 512)
	entropyEnd     = 136 // E covers [52, 136): kind .. link
)

var recordMagic = [4]byte{'C', 'F', 'R', '1'}

// Header is a decoded record header. The zero bitmap holds one bit per sector
// of the extent: set means the sector is stored in the body, clear means it
// reads as zeros.
type Header struct {
	// local fields
	GSeq   uint64 // store-wide record sequence: every record is exactly one more than the one before it
	Owner  ID     // lflagRelocated: the map that holds the data
	LFlags uint32
	From   uint64 // lflagRelocated: sector address of the previous copy

	// portable fields
	Sum      uint32 // crc32c(body || header[52:512])
	Kind     Kind
	Flags    uint16
	NSect    uint32 // extent length in sectors (data), 0 otherwise
	NBody    uint32 // sectors stored after the header
	LBA      uint64 // first sector of the extent
	LSN      uint64 // per-volume sequence number; create/branch = 1
	Epoch    uint64 // ownership epoch
	Aux      uint64 // kind-specific, see Kind
	Base     ID     // the volume's base id
	Link     ID     // data: token S(n-1); branch: version branched from; create: zero
	ID       ID     // this entry's public version id I(n)
	Entropy  ID     // E(n), kept so that compacted entries keep their history
	Source   ID     // branch: base id of the volume branched from
	FirstLSN uint64 // gap: first compacted lsn
	Bitmap   [MaxEntrySectors / 8]byte
}

// record header layout, 512 bytes, little endian:
//
//	off size field        part
//	  0    4 magic "CFR1"
//	  4    4 hdr crc      local: crc32c(store uuid || header[8:512])
//	  8    8 gseq         local
//	 16   20 owner        local
//	 36    4 local flags  local
//	 40    8 from         local
//	 48    4 sum          portable: crc32c(body || header[52:512])
//	 52    1 kind
//	 53    1 record version (1; 2 for a view record)
//	 54    2 flags
//	 56    4 nsect
//	 60    4 nbody
//	 64    8 lba
//	 72    8 lsn
//	 80    8 epoch
//	 88    8 aux
//	 96   20 base
//	116   20 link
//	136   20 id
//	156   20 entropy
//	176   20 source
//	196    8 first lsn
//	204   52 reserved, zero
//	256  256 bitmap, bit i = byte[i/8] & (1 << (i%8))

// Present reports whether sector i of the extent is stored in the body.
func (h *Header) Present(i int) bool { return h.Bitmap[i>>3]&(1<<(i&7)) != 0 }

func (h *Header) setPresent(i int) { h.Bitmap[i>>3] |= 1 << (i & 7) }

// presentCount is the number of set bitmap bits.
func (h *Header) presentCount() int {
	n := 0
	for i := 0; i < len(h.Bitmap); i += 8 {
		n += bits.OnesCount64(binary.LittleEndian.Uint64(h.Bitmap[i:]))
	}
	return n
}

// Size is the record's size in bytes: header and body.
func (h *Header) Size() int64 { return int64(1+h.NBody) * SectorSize }

// encode writes the header into b[:512], computing the header crc with uuid.
// The caller has set Sum.
func (h *Header) encode(b []byte, uuid [16]byte) {
	clear(b[:HeaderSize])
	le := binary.LittleEndian
	copy(b[0:4], recordMagic[:])
	le.PutUint64(b[8:], h.GSeq)
	copy(b[16:36], h.Owner[:])
	le.PutUint32(b[36:], h.LFlags)
	le.PutUint64(b[40:], h.From)
	h.encodePortable(b)
	le.PutUint32(b[4:], seededCRC(uuid, b[8:HeaderSize]))
}

// encodePortable writes fields [48, 512).
func (h *Header) encodePortable(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[48:], h.Sum)
	b[52] = byte(h.Kind)
	b[53] = recordVersion(h.Kind)
	le.PutUint16(b[54:], h.Flags)
	le.PutUint32(b[56:], h.NSect)
	le.PutUint32(b[60:], h.NBody)
	le.PutUint64(b[64:], h.LBA)
	le.PutUint64(b[72:], h.LSN)
	le.PutUint64(b[80:], h.Epoch)
	le.PutUint64(b[88:], h.Aux)
	copy(b[96:116], h.Base[:])
	copy(b[116:136], h.Link[:])
	copy(b[136:156], h.ID[:])
	copy(b[156:176], h.Entropy[:])
	copy(b[176:196], h.Source[:])
	le.PutUint64(b[196:], h.FirstLSN)
	clear(b[204:bitmapOff])
	copy(b[bitmapOff:HeaderSize], h.Bitmap[:])
}

// sealSum sets Sum from the crc32c of the body (bodyCRC) and the portable
// header bytes; b is scratch of at least 512 bytes.
func (h *Header) sealSum(bodyCRC uint32, b []byte) {
	h.encodePortable(b)
	h.Sum = crc32.Update(bodyCRC, crcTable, b[sumCoverOff:HeaderSize])
}

// entropyOf computes E(n): the hash of the portable fields that name the update
// (kind..link, the bitmap) and of the body's crc32c. See docs/FORMAT.md.
func (h *Header) entropyOf(bodyCRC uint32, b []byte) ID {
	h.encodePortable(b)
	var c [4]byte
	binary.LittleEndian.PutUint32(c[:], bodyCRC)
	return hash(b[sumCoverOff:entropyEnd], b[bitmapOff:HeaderSize], c[:])
}

// decodeHeader parses and validates a record header read from this store's
// device: magic, header crc (seeded with uuid) and field consistency. It does
// not check the body (see checkBody).
func decodeHeader(b []byte, uuid [16]byte) (*Header, error) {
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("record header: %d bytes: %w", len(b), ErrCorrupt)
	}
	if [4]byte(b[0:4]) != recordMagic {
		return nil, fmt.Errorf("record header: magic %x: %w", b[0:4], ErrCorrupt)
	}
	le := binary.LittleEndian
	if got, want := seededCRC(uuid, b[8:HeaderSize]), le.Uint32(b[4:]); got != want {
		return nil, fmt.Errorf("record header: crc %08x != %08x: %w", got, want, ErrCorrupt)
	}
	h := &Header{GSeq: le.Uint64(b[8:]), LFlags: le.Uint32(b[36:]), From: le.Uint64(b[40:])}
	copy(h.Owner[:], b[16:36])
	if err := h.decodePortable(b); err != nil {
		return nil, err
	}
	return h, nil
}

// DecodeWireHeader parses the portable part of a record header received from
// another store (a stream): magic, zeroed local fields and field
// consistency. The caller verifies Sum once the body is read.
func DecodeWireHeader(b []byte) (*Header, error) {
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("record header: %d bytes: %w", len(b), ErrCorrupt)
	}
	if [4]byte(b[0:4]) != recordMagic {
		return nil, fmt.Errorf("record header: magic %x: %w", b[0:4], ErrCorrupt)
	}
	// a sender zeroes the local fields; anything else there is damage that
	// no checksum covers
	if !allZero(b[4:48]) {
		return nil, fmt.Errorf("record header: local fields of a wire record not zero: %w", ErrCorrupt)
	}
	h := &Header{}
	if err := h.decodePortable(b); err != nil {
		return nil, err
	}
	if !h.Kind.chained() {
		return nil, fmt.Errorf("record header: %v is local to a store, not an entry: %w", h.Kind, ErrCorrupt)
	}
	return h, nil
}

func (h *Header) decodePortable(b []byte) error {
	le := binary.LittleEndian
	h.Sum = le.Uint32(b[48:])
	h.Kind = Kind(b[52])
	if v := b[53]; v != recordV1 && v != recordV2 {
		return fmt.Errorf("record header: record version %d: %w", v, ErrUnsupportedFormat)
	} else if h.Kind >= 1 && h.Kind <= kindMax && v != recordVersion(h.Kind) {
		return fmt.Errorf("record header: %v record of record version %d: %w", h.Kind, v, ErrCorrupt)
	}
	h.Flags = le.Uint16(b[54:])
	h.NSect = le.Uint32(b[56:])
	h.NBody = le.Uint32(b[60:])
	h.LBA = le.Uint64(b[64:])
	h.LSN = le.Uint64(b[72:])
	h.Epoch = le.Uint64(b[80:])
	h.Aux = le.Uint64(b[88:])
	copy(h.Base[:], b[96:116])
	copy(h.Link[:], b[116:136])
	copy(h.ID[:], b[136:156])
	copy(h.Entropy[:], b[156:176])
	copy(h.Source[:], b[176:196])
	h.FirstLSN = le.Uint64(b[196:])
	copy(h.Bitmap[:], b[bitmapOff:HeaderSize])
	if !allZero(b[204:bitmapOff]) {
		return fmt.Errorf("record header: reserved bytes set: %w", ErrCorrupt)
	}
	return h.validate()
}

// maxBodySectors bounds NBody for any kind (data records and checkpoint chunks).
const maxBodySectors = MaxEntrySectors

func (h *Header) validate() error {
	bad := func(what string) error {
		return fmt.Errorf("record header: %v record: %s: %w", h.Kind, what, ErrCorrupt)
	}
	if h.Kind == 0 || h.Kind > kindMax {
		return fmt.Errorf("record header: %v: %w", h.Kind, ErrCorrupt)
	}
	if h.NBody > maxBodySectors {
		return bad(fmt.Sprintf("body of %d sectors", h.NBody))
	}
	if h.Kind != KindData {
		if h.NSect != 0 || h.Flags != 0 || h.Bitmap != ([MaxEntrySectors / 8]byte{}) {
			return bad("extent fields set")
		}
		if h.Kind != KindPad && h.Kind != KindCheckpoint && h.NBody != 0 {
			return bad(fmt.Sprintf("body of %d sectors", h.NBody))
		}
		if h.Kind == KindGap && (h.FirstLSN == 0 || h.FirstLSN > h.LSN) {
			return bad(fmt.Sprintf("lsn range %d..%d", h.FirstLSN, h.LSN))
		}
		if h.Kind == KindView && (h.LSN < 2 || h.Epoch < 2 || h.Aux != 0) {
			return bad(fmt.Sprintf("lsn %d, epoch %d, aux %d", h.LSN, h.Epoch, h.Aux))
		}
		if (h.Kind == KindCreate || h.Kind == KindBranch) &&
			(h.LSN != 1 || h.Aux == 0 || h.Aux%SectorSize != 0 || h.Aux/SectorSize > maxVolumeSectors) {
			return bad(fmt.Sprintf("lsn %d, size %d", h.LSN, h.Aux))
		}
		return nil
	}
	if h.Flags&^(FlagZero|FlagDropped) != 0 || h.Flags == FlagZero|FlagDropped {
		return bad(fmt.Sprintf("flags %#x", h.Flags))
	}
	if h.Flags&FlagDropped != 0 {
		if h.NSect == 0 || h.NSect > MaxEntrySectors || h.NBody != 0 {
			return bad(fmt.Sprintf("dropped extent of %d sectors with a body of %d", h.NSect, h.NBody))
		}
		for i := int(h.NSect); i < MaxEntrySectors; i++ {
			if h.Present(i) {
				return bad("bitmap bit beyond the extent")
			}
		}
	} else if h.Flags&FlagZero != 0 {
		if h.NSect == 0 || h.NSect > MaxZeroSectors || h.NBody != 0 || h.Bitmap != ([MaxEntrySectors / 8]byte{}) {
			return bad(fmt.Sprintf("zero extent of %d sectors with a body of %d", h.NSect, h.NBody))
		}
	} else {
		if h.NSect == 0 || h.NSect > MaxEntrySectors {
			return bad(fmt.Sprintf("extent of %d sectors", h.NSect))
		}
		for i := int(h.NSect); i < MaxEntrySectors; i++ {
			if h.Present(i) {
				return bad("bitmap bit beyond the extent")
			}
		}
		if want := uint32(h.presentCount()); h.NBody != want {
			return bad(fmt.Sprintf("body of %d sectors, bitmap says %d", h.NBody, want))
		}
	}
	if h.LBA+uint64(h.NSect) < h.LBA || h.LBA+uint64(h.NSect) > maxVolumeSectors {
		return bad(fmt.Sprintf("extent at sector %d", h.LBA))
	}
	return nil
}

// checkEntropy verifies that an entry's entropy E(n) derives from its bytes
// (its portable fields, bitmap and body). Anyone can recompute E, so this
// catches an entry changed in transit or on disk with its checksums
// recomputed, not a forger who recomputes E too: the version id, which only
// the view secret's holder can derive, authenticates content only to that
// holder; hosts authenticate each other for the rest. A gap carries the
// entropy of the last entry it stands for and has no content to check.
func (h *Header) checkEntropy(body []byte) error {
	if !h.Kind.chained() || h.Kind == KindGap || h.Flags&FlagDropped != 0 {
		return nil
	}
	if e := h.entropyOf(crcOf(body), make([]byte, HeaderSize)); e != h.Entropy {
		return fmt.Errorf("%v entry lsn %d of %v: entropy does not derive from its content: %w", h.Kind, h.LSN, h.Base, ErrCorrupt)
	}
	return nil
}

// maxVolumeSectors bounds volume sizes (2^52 bytes = 4 PiB) so that sector
// arithmetic never overflows.
const maxVolumeSectors = 1 << 43

// checkBody verifies the record's Sum over body (NBody sectors) and header
// bytes hdr[52:512]. A pad is not checked (its header crc covers its header;
// its body is filler).
func (h *Header) checkBody(hdr, body []byte) error {
	if h.Kind == KindPad {
		return nil
	}
	got := crc32.Update(crc32.Checksum(body, crcTable), crcTable, hdr[sumCoverOff:HeaderSize])
	if got != h.Sum {
		return fmt.Errorf("%v record lsn %d of %v: sum %08x != %08x: %w", h.Kind, h.LSN, h.Base, got, h.Sum, ErrCorrupt)
	}
	return nil
}

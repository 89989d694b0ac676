package segment

import "errors"

// Sentinel errors. Callers match them with errors.Is; every error the store returns
// wraps one of these or an error from the device.
var (
	// ErrNotStore: the device does not hold a cloudfs store (no superblock magic).
	ErrNotStore = errors.New("segment: not a cloudfs store")
	// ErrUnsupportedFormat: the store was written by a newer or unknown format
	// version. The store is refused as it is, never "repaired".
	ErrUnsupportedFormat = errors.New("segment: unsupported store format")
	// ErrCorrupt: bytes read from the device or a stream fail a checksum or a
	// structural check.
	ErrCorrupt = errors.New("segment: corrupt")
	// ErrNoSpace: the store is full; the write was not performed and nothing
	// acknowledged before it is lost.
	ErrNoSpace = errors.New("segment: no space left in store")
	// ErrNotFound: no volume or version with that id.
	ErrNotFound = errors.New("segment: not found")
	// ErrReadOnly: this store does not hold the volume's access token (it is a
	// replica), so it cannot append to the volume.
	ErrReadOnly = errors.New("segment: volume is read-only here (no access token)")
	// ErrLink: an entry does not extend the volume's chain (wrong parent link,
	// lsn or epoch); it was rejected and changed nothing.
	ErrLink = errors.New("segment: entry does not link to the volume's head")
	// ErrOutOfRange: an IO beyond the volume's size, or not sector aligned.
	ErrOutOfRange = errors.New("segment: IO out of range or unaligned")
	// ErrVersionUnavailable: a branch or stream asked for a version that is not
	// a volume head, not a retained snapshot, or no longer in the log.
	ErrVersionUnavailable = errors.New("segment: version not available")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("segment: store closed")
	// ErrDeviceFailed: a device write or sync failed; the store stops accepting
	// writes (reads still work) until it is reopened and recovered.
	ErrDeviceFailed = errors.New("segment: device failed, store is read-only until reopened")
	// ErrStaleEpoch: an epoch older than one this store has seen for the
	// volume. TakeOver returns it for an epoch not above the volume's epoch
	// (or below its fence); Apply and ApplyLive for an entry of an epoch
	// below the highest seen (a fenced old primary's), and then it also
	// wraps ErrLink: such an entry is one that does not extend the chain as
	// this store holds it, rejected and changing nothing.
	ErrStaleEpoch = errors.New("segment: stale epoch")
	// ErrExists: a volume with that id already exists.
	ErrExists = errors.New("segment: already exists")
)

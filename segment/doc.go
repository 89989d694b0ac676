// Package segment is cloudfs's storage engine: one log-structured store per
// host, on a file, a block device or a partition, holding many volumes.
//
// # Layout
//
// A superblock, two checkpoint slots, then segments (16 MiB by default). Every
// write of every volume becomes a record appended to the one log: a 512-byte
// header (volume, lsn, epoch, extent, zero bitmap, the hash chain's link and
// version id, checksums) followed by only the non-zero sectors. The same bytes
// are the replication wire format. docs/FORMAT.md draws every structure.
//
// # Writing
//
// Writes are group-committed by one writer goroutine: the ops queued at a
// moment are planned into one batch, written with one device write per
// segment touched, synced once if any of them asked for durability (FLUSH,
// FUA, metadata), applied to the index, and acknowledged in log order.
//
//	st, _ := segment.Open(dev, segment.Options{})
//	v, _ := st.Create(10 << 30)
//	v.WriteAsync(buf, 4096, false /* fua */, func(err error) { ... })
//	v.FlushAsync(func(err error) { ... })
//
// # Versions, tokens, branches
//
// Each entry has a version id from a hash chain; only the holder of the
// volume's token (the store that created it, or the last to take it over)
// can extend the chain, and Apply verifies each entry's link before
// appending it. Branch freezes a volume's extent map as a snapshot in O(1);
// the volume and the branch both read through it.
//
// # Ownership
//
// Every entry carries its volume's ownership epoch. TakeOver appends a view
// entry that makes this store the owner in a new, higher epoch (the cluster
// decides epochs; the store enforces their order); stores that apply it,
// the old owner included, follow the new owner. Fence records a newer epoch
// without an entry. Apply refuses entries of an epoch older than the newest
// seen (ErrStaleEpoch), so a paused old owner cannot get its writes logged.
//
// # Recovery, cleaning, checking
//
// Open loads the newest valid checkpoint and rolls forward verifying every
// record, stopping at the first that does not verify. The cleaner copies the
// live records of the emptiest segments to the log's end. Check verifies a
// store offline, independently of the code that wrote it.
//
// The package never imports the replicator, ublk, the POSIX shim or cmd; it
// sees devices only through device.Device.
package segment

// Package posixshim is the POSIX shim: a FUSE file system (go-fuse's fs node
// API) in which each volume appears as a directory on first lookup, holding
// files stored inside that volume and replicated with it, and in which
// disks/<id> exposes a volume's whole disk as one regular file (for QEMU and
// losetup on hosts without ublk). It owns the layout of a namespace inside a
// volume's address space (docs/FORMAT.md §15).
//
// # Usage
//
// The daemon implements Source over its store (and remote volumes) and
// mounts the shim:
//
//	srv, err := posixshim.Mount("/mnt/cloudfs", src, posixshim.Config{Logger: log})
//	...
//	ls /mnt/cloudfs/<40-hex id>       # opens (and formats, if blank) the namespace
//	qemu ... -drive file=/mnt/cloudfs/disks/<id>,format=raw
//	...
//	err = srv.Unmount()               # checkpoints, flushes and releases every volume
//
// The root lists disks/ and the volumes Source.List returns plus those in
// use. A namespace stays open until the mount ends; a disk file is open
// while a process holds it open.
//
// # Layout and crash consistency
//
// A namespace is a superblock, two checkpoint slots, a journal of
// checksummed metadata records and 64 KiB data chunks (layout.go). The
// metadata lives in memory (state.go), a pure structure that journal records
// change through one apply function, live and at replay. Every change writes
// its data first, then its records in one journal write; the store keeps a
// prefix of a volume's writes after a crash, so replay at mount (which stops
// at the first torn or stale frame) always sees data before the records that
// point to it. fsync is a FLUSH of the volume.
//
// # Rules
//
// posixshim imports segment (for its error sentinels), never ublk,
// replicator or cmd: it reaches volumes only through the Disk and Source
// interfaces it declares. It is the only package whose API speaks
// syscall.Errno, translating errors once, in toErrno, at the FUSE boundary;
// EIO is only for real IO errors. A volume is either a raw disk, a disk file
// or a POSIX namespace, never two at once: the shim refuses a namespace
// whose volume is open as a disk file and the other way round, Source
// refuses a volume exposed as a raw device, and each refusal is EBUSY with a
// log line that says why. A volume whose bytes are not a shim layout is
// refused (EMEDIUMTYPE), never formatted. deps_test.go at the repository
// root checks the imports.
package posixshim

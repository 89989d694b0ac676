// Package posixshim will be the POSIX shim: a FUSE file system (go-fuse) in
// which each volume appears as a directory on first lookup, holding small
// files (VM configurations, locks, swap) stored inside that volume and
// replicated with it, and the layout of those files inside a volume.
//
// # Status
//
// There is no code here yet. The shim arrives with issue 7.
//
// # Rules
//
// posixshim imports segment (and packages beneath it), never ublk, replicator
// or cmd. It is the only package whose API speaks syscall.Errno, translating
// errors once, at the FUSE boundary. A volume is either a raw disk or a POSIX
// namespace, never both at once: the shim must refuse a volume in use as a
// disk with a clear error. deps_test.go at the repository root checks the
// imports.
package posixshim

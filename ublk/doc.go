// Package ublk will be the userspace ublk driver that exposes each cloudfs
// volume as a block device /dev/ublkbN: the /dev/ublk-control device
// (ADD_DEV, SET_PARAMS, START_DEV, STOP_DEV, DEL_DEV, GET_FEATURES), one
// queue runner per queue on its own locked OS thread, the per-tag state
// machine (FETCH_REQ, then COMMIT_AND_FETCH_REQ), feature probing and
// USER_RECOVERY. It defines the asynchronous Backend interface it drives.
//
// # Status
//
// There is no code here yet. The driver arrives with issue 4 ("ublk");
// reference/ublk-vm in the shared project notes holds a proven minimal server
// and the pitfalls found against a 6.12 kernel.
//
// # Rules
//
// ublk imports ioring (and the standard library and golang.org/x/sys/unix),
// never segment, replicator or posixshim: it reaches a volume only through
// Backend, and segment.Volume satisfies Backend structurally, which cmd
// asserts. A queue thread must never wait for a backend: requests are handed
// off and their completions committed in batches, so a slow replica cannot
// stall a queue. Only the thread that owns a queue's ring may submit to it.
// Kernel structures keep the kernel's names and sizes, checked at build time.
// deps_test.go at the repository root checks the imports.
package ublk

// Package ublk is the userspace ublk driver that exposes each cloudfs
// volume as a block device /dev/ublkbN: the /dev/ublk-control commands
// (GET_FEATURES, ADD_DEV, SET_PARAMS, START_DEV, STOP_DEV, DEL_DEV,
// GET_DEV_INFO, GET_PARAMS, START_USER_RECOVERY, END_USER_RECOVERY), one
// queue per hardware queue on its own locked OS thread, the per-tag state
// machine (FETCH_REQ, then COMMIT_AND_FETCH_REQ), feature probing and user
// recovery. It defines the asynchronous Backend interface it drives.
//
// # Usage
//
//	d, err := ublk.Create(vol, ublk.Config{Size: size, Logger: log, Metrics: reg})
//	// d.BlockPath() is /dev/ublkbN; serve until told otherwise, then:
//	err = d.Delete() // STOP_DEV, queues down, DEL_DEV; bounded by Config.Timeout
//
// A restarted daemon re-attaches to the devices its predecessor left:
//
//	infos, _ := ublk.List(0)              // every /dev/ublkcN, with its state and pid
//	d, err := ublk.Recover(id, vol, cfg)  // START_USER_RECOVERY, FETCH, END_USER_RECOVERY
//	err = ublk.Remove(id, 0)              // or drop a device nobody will recover
//
// Device.Detach leaves a device to Recover without a crash (an upgrade).
//
// # Data path
//
// Each queue thread owns one io_uring (SQE128) on /dev/ublkcN. It submits a
// FETCH_REQ per tag before START_DEV. A completed fetch carries a request
// (ublksrv_io_desc, mmap'd from the kernel), which is checked (range, size,
// op) and handed to the Backend: READ to Backend.ReadAt on a goroutine of its
// own, WRITE (after pread of its data from /dev/ublkcN with USER_COPY),
// FLUSH, DISCARD and WRITE_ZEROES to the …Async methods, which return at
// once. Results come back from any goroutine into a list under a mutex, and
// an eventfd read armed on the queue's ring (ioring.Waker) wakes the thread;
// it prepares one COMMIT_AND_FETCH_REQ per result and submits them all with
// the next io_uring_enter, which also waits for the next completion. A queue
// thread never waits on a backend.
//
// Data moves with UBLK_F_USER_COPY where the kernel offers it (pread and
// pwrite on /dev/ublkcN at UBLKSRV_IO_BUF_OFFSET + qid<<41 + tag<<25, into
// per-tag buffers the backend owns until done); otherwise the kernel copies
// to and from the same per-tag buffers, whose addresses the commands carry.
//
// The device declares 512-byte logical and 4 KiB physical blocks, a volatile
// write cache with FUA (so FLUSH and FUA reach the backend: acknowledged
// writes need not be durable before a FLUSH), and discard and write-zeroes
// (single range, up to 1 GiB per request), both Backend.ZeroAsync.
//
// # Errors
//
// A request the driver cannot serve completes alone and the device goes on:
// an unknown op with EOPNOTSUPP, a range outside the device or larger than
// the buffer with EIO. A backend error becomes the errno of the IO at one
// boundary (errnoOf): Config.Errno if it maps the error, else a
// syscall.Errno in its chain or an Errno() method, else EIO. The daemon maps
// segment.ErrNoSpace to ENOSPC in Config.Errno.
//
// # Teardown
//
// Every control command runs on a fresh ring and descriptor and is bounded by
// Config.Timeout; a command that times out is cancelled by closing its ring.
// Delete cannot hang forever: see its doc for what is left behind when
// STOP_DEV, the queues or DEL_DEV overrun (DEL_DEV waits for the last close
// of /dev/ublkbN; the device is already gone for IO, and its id is freed at
// that close).
//
// # Recovery
//
// Devices are created with UBLK_F_USER_RECOVERY and, when offered,
// UBLK_F_USER_RECOVERY_REISSUE (Config.NoRecovery turns it off). When the
// serving process dies, the kernel keeps /dev/ublkbN and holds its IO;
// Recover attaches a new server, and the held requests (and, with REISSUE,
// those the dead server had received but not completed) are served by it.
// A daemon must therefore acknowledge nothing it cannot find again after a
// restart: the store's group commit guarantees that for FLUSHed data.
//
// # Status
//
// Working and tested against Debian's 6.12 kernel in the test VM: create,
// read/write in both copy modes, FLUSH, FUA, discard, write-zeroes, range
// checks, backend errors as EIO and ENOSPC, 8 devices at once, delete (also
// while open), detach and recover with IO held and reissued across it.
// Not used yet: zero copy, AUTO_BUF_REG, PER_IO_DAEMON, UNPRIVILEGED_DEV,
// NEED_GET_DATA, zoned devices.
//
// # Rules
//
// ublk imports ioring (and the standard library, golang.org/x/sys/unix and
// the Prometheus client), never segment, replicator or posixshim: it reaches a
// volume only through Backend, and segment.Volume satisfies Backend
// structurally, which cmd asserts. A queue thread must never wait for a
// backend: requests are handed off and their completions committed in
// batches, so a slow replica cannot stall a queue. Only the thread that owns
// a queue's ring may submit to it. Kernel structures keep the kernel's names
// and sizes, checked at build time. deps_test.go at the repository root
// checks the imports.
package ublk

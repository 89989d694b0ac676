// Package ioring will be cloudfs's own binding to Linux io_uring: ring setup
// and teardown, SQE and CQE encoding (the 128-byte SQE of IORING_SETUP_SQE128
// too), IORING_OP_URING_CMD, and batching: callers queue many operations with
// Prepare… calls and hand them to the kernel with one Submit.
//
// # Status
//
// There is no code here yet. The ring arrives with issue 4 ("ublk"), which
// needs it for the ublk control and queue commands; segment/device may use it
// later for device IO where that pays.
//
// # Rules
//
// ioring imports only the standard library and golang.org/x/sys/unix. It sits
// beneath every other package that does IO, so it must never import another
// cloudfs package or a third-party module, never know what a ublk command or a
// store entry means, and never start goroutines or lock OS threads behind the
// caller's back: the thread that owns a ring is the caller's choice (ublk
// needs one locked thread per queue). deps_test.go at the repository root
// checks the imports.
package ioring

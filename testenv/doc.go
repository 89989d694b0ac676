// Package testenv holds cloudfs's test environments: RequireRoot,
// RequireUblk and RequireFUSE, loop devices (LoopDevice), the daemon binary
// (CloudfsBinary), and, in testenv/vm and testenv/vmrun, the throw-away
// QEMU VM that runs the ublk tests on Debian's 6.12 kernel through go test
// -exec. testenv/cluster starts multi-host clusters of cloudfs daemons in
// network namespaces. dm-flakey and fault injection come later (issue 5).
//
// # Writing an e2e test
//
// Tests that need root or the kernel are built with the e2e tag and start
// with a requirement, which skips cleanly when it is not met:
//
//	//go:build e2e
//
//	func TestMkfsOnUblk(t *testing.T) {
//		testenv.RequireUblk(t)
//		dev := ... // serve a volume as /dev/ublkbN
//	}
//
// make test-e2e runs them through the runner (.bin/vmrun). A test binary
// that calls RequireUblk runs in the VM, where /dev/ublk-control exists,
// the package directory and its testdata are the working directory, the
// loopback network is up, InVM reports true, and mkfs.ext4, e2fsck, fio,
// blkdiscard and busybox are in PATH. Any other test binary runs on the
// host. On a host whose kernel has ublk, the same tests run there with
// plain go test -tags e2e as root. go doc cloudfs/testenv/vm describes the
// guest and the CLOUDFS_VM_* variables.
//
// Why Go and not a script: the runner is also the guest's init, so the
// guest needs no shell plumbing, arguments and environment pass through
// JSON instead of quoting, and the parts (initramfs writer, module
// dependencies, environment filter) have unit tests.
//
// # Rules
//
// testenv may import any cloudfs package except cmd, but only _test.go files
// and bench may import testenv: the daemon must never carry test rigs. Tests
// that need root or the kernel are built with the e2e tag and skip cleanly
// when what they need is missing. deps_test.go at the repository root checks
// the imports.
package testenv

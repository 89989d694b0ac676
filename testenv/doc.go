// Package testenv will hold cloudfs's test environments: RequireRoot,
// RequireUblk and RequireFUSE, loop devices and dm-flakey, the throw-away
// QEMU VM that runs the ublk tests on a 6.12 kernel (through go test -exec),
// multi-host clusters in network namespaces, and fault injection.
//
// # Status
//
// There is no code here yet. The ublk VM arrives with issue 4, the
// multi-host clusters with issue 5.
//
// # Rules
//
// testenv may import any cloudfs package except cmd, but only _test.go files
// and bench may import testenv: the daemon must never carry test rigs. Tests
// that need root or the kernel are built with the e2e tag and skip cleanly
// when what they need is missing. deps_test.go at the repository root checks
// the imports.
package testenv

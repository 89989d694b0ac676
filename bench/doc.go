// Package bench will hold cloudfs's benchmarks: Benchmark functions written
// with b.Loop, fio job files, and the harness that runs them and prints each
// result as a ratio against the same machine's raw device or network, for the
// targets in DESIGN.md §9. Ratios measured in one run are what count; single
// times are not compared against fixed numbers.
//
// # Status
//
// The harness is in bench/cloudfs-bench (what "make bench" runs; its package
// doc lists the measurements and flags). It covers the store's targets;
// replication's come with the replicator. bench/ublk-bench ("make
// bench-ublk") runs fio on a volume's ublk device beside a loop device over
// a plain file; on hosts without ublk it runs in testenv's emulated VM, where
// only the harness, not the figures, means anything. Each part of cloudfs
// brings its Benchmark functions as it arrives.
//
// # Rules
//
// bench may import any cloudfs package except cmd, testenv included. Nothing
// outside tests imports bench, and timed assertions belong here, never in
// the test suite. deps_test.go at the repository root checks the imports.
package bench

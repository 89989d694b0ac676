// Package segtest opens segment stores for tests: it formats a device that
// holds no store, logs through the test's output, and registers a cleanup
// that closes the store and runs segment.Check on the device, so that every
// test ends with an offline fsck (bbolt's btesting). It must never be
// imported by non-test code other than benchmarks.
package segtest

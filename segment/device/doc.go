// Package device owns the storage a store lives on: the [Device] interface
// and its implementations, [File] for regular files and block devices and
// [Mem] for memory.
//
// A Device is a fixed-size array of blocks addressed by byte offset. It does
// not know about segments, records or keys, and it must never log, start
// goroutines or keep a clock: callers decide when to retry, what to log and
// when to Sync. Sub-packages provide test tooling: faultdev injects errors,
// torn writes and latency, and devicetest is the conformance suite that every
// Device implementation passes.
//
// # Alignment
//
// Every offset and length passed to ReadAt and WriteAt is a multiple of
// BlockSize(), which is 512 or 4096. A [File] opened with O_DIRECT (the
// default) also needs buffers aligned in memory; [AlignedBuf] returns such a
// buffer and is safe to use with every Device.
//
// # Durability
//
// Data written is volatile until Sync returns nil. [Mem] models this
// precisely: [Mem.CrashClone] returns the contents a power cut could leave,
// keeping every synced block and a seeded random subset, possibly torn at a
// 512-byte sector boundary, of the blocks written since the last Sync.
//
// # Usage
//
//	if err := device.Create("/var/lib/cloudfs/vol0", 1<<30); err != nil {
//		return err
//	}
//	dev, err := device.Open("/var/lib/cloudfs/vol0", device.Options{})
//	if err != nil {
//		return err
//	}
//	defer dev.Close()
//	buf := device.AlignedBuf(dev.BlockSize())
//	copy(buf, "hello")
//	if _, err := dev.WriteAt(buf, 0); err != nil {
//		return err
//	}
//	return dev.Sync()
//
// In tests, use device.NewMem(64<<20, 4096) and, to simulate a power cut,
// mem.CrashClone(device.CrashCfg{UnsyncedPercent: 50, Rand: rng}).
//
// File is Linux only: it uses O_DIRECT, fdatasync and block device ioctls.
package device

// Package faultdev wraps a device.Device to inject faults: failed reads,
// writes and syncs, torn writes that land only a prefix of their 512-byte
// sectors, and seeded random latency. It is for tests and must never be
// used in production wiring.
//
// # Usage
//
//	mem := device.NewMem(64<<20, 4096)
//	dev := faultdev.Wrap(mem,
//		faultdev.Nth(faultdev.OpSync, 3),     // the third Sync fails
//		faultdev.Torn(5, 2 /* keepSectors */), // the fifth write tears
//	)
//	// ... run the store on dev until it sees faultdev.ErrInjected ...
//	dev.Disarm()
//	crashed := mem.CrashClone(device.CrashCfg{UnsyncedPercent: 50, Rand: rng})
//
// Calls are numbered per Op from 1, counting every call including failed
// ones. Faults are checked in the order given to Wrap; the first that
// fails a call wins, and latency applies before it.
package faultdev

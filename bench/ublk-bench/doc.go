// Package main is ublk-bench, the harness "make bench-ublk" runs: fio on a
// cloudfs volume's block device (/dev/ublkbN, served by a real `cloudfs
// serve`) beside fio on a loop device over a plain file of the same size in
// the same directory, in one run, each figure printed beside the loop
// device's with the ratio and the target DESIGN.md §9 sets for the store.
//
// # Usage
//
//	make bench-ublk                        # in the ublk test VM, or on the host if it has ublk
//	make bench-ublk BENCHFLAGS='--runtime 30s --size 4G --json out.json'
//	CLOUDFS_BIN=.bin/cloudfs ublk-bench --dir /mnt/nvme   # as root, where /dev/ublk-control exists
//
// make bench-ublk builds this program, the daemon and the VM runner as
// static binaries. When the host has no /dev/ublk-control it runs the
// program inside testenv's VM (.bin/vmrun -mode vm, Debian's 6.12 kernel,
// /tmp a tmpfs of about 2.7 GiB); otherwise it runs it directly, unchanged.
// It needs root, fio and losetup.
//
// # What it does
//
// In a fresh directory under --dir it starts `cloudfs serve` ($CLOUDFS_BIN,
// or --cloudfs) on a store file of --store-size (3 x --size), makes a
// volume of --size and waits for its device; it creates a file of --size
// beside the store, allocated in full, and attaches it with losetup
// --direct-io=on. Then each job runs on the loop device and then on the
// volume's device, with fio's direct=1, --ioengine (libaio) and the same
// options, stopping at its size or after --runtime:
//
//	seqwrite   1 MiB sequential writes, QD4, from the start     ublk/loop MB/s >= 0.8
//	randwrite  4 KiB random writes, QD32, half the region        ublk/loop IOPS >= 1.2
//	randread   4 KiB random reads, QD32                          ublk/loop IOPS >= 0.8
//	flush      4 KiB random write + fdatasync, QD1, mean time    ublk/loop latency <= 1.2
//	           of one pair (fio's run time over its writes)
//
// The region of the jobs after seqwrite is the prefix both devices wrote in
// it, so no read hits a hole (the volume answers those without reading the
// store). All writes together stay under 1.75 x --size, so the store's
// cleaner does not run. The targets are the store's (engine over raw file,
// DESIGN.md §9) applied to the devices, where the kernel's round trip to
// the daemon is part of the price.
//
// At the end, and on any failure or SIGINT, it deletes the volume, stops
// the daemon (which removes its devices), detaches the loop device and
// removes the directory.
//
// # Output
//
// The table "what | ublk (cloudfs) | loop (plain file) | ratio | target |
// verdict", then each job's completion latency percentiles (and fdatasync's),
// and the fio options; --json writes the same rows, with the raw fio
// figures, to a file. In the test VM, which emulates the CPU (TCG), the
// verdict is "n/a (TCG)" and a note says so before and after the table:
// those figures say nothing about speed; only the harness is exercised.
// The exit status is 1 if a job or the cleanup failed, never because a
// target was missed.
package main

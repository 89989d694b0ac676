// Package main is cloudfs-bench, the harness "make bench" runs: it measures
// the targets of DESIGN.md §9 and prints each engine figure beside the same
// machine's limit, measured in the same run on the same file with the same
// block size and queue depth, as a ratio, with the target and PASS or MISS.
//
// # Usage
//
//	make bench                                  # everything, about two minutes
//	make bench BENCHFLAGS='--only randwrite,flush --duration 3s'
//	go run ./bench/cloudfs-bench --size 2G --fill 1G --json out.json --profile-dir /tmp
//
// All files live in a fresh directory under --dir (default $TMPDIR). The
// store and raw files are opened with O_DIRECT through segment/device.File
// and written in full once, sequentially, before anything is measured, so
// every ext4 extent is allocated and no read hits a hole (the shim bench's
// plain files say in each row how they are opened).
//
// # Paired measurements (the main file, --size)
//
// Each runs the same harness code first on the raw file (pwrite, pread and
// fdatasync of device.File) and then through one volume of a store formatted
// afresh on that file (default options: background checkpoints on):
//
//	randwrite  4 KiB random writes, --qd goroutines        engine/raw IOPS >= 1.2
//	seqwrite   1 MiB sequential writes, --seq-qd goroutines engine/raw MB/s >= 0.8
//	randread   4 KiB random reads, --qd goroutines,        engine/raw IOPS >= 0.8
//	           over a volume written in full beforehand
//	flush      QD1 4 KiB write then Flush (and, printed     engine/raw median latency <= 1.2
//	           too, a FUA write) vs pwrite + fdatasync
//
// Write measurements run in rounds of --budget of the file; each engine round
// formats the store afresh, so the figure is the log's speed without the
// cleaner. Data is random and stamped with its offset in every sector: the
// engine stores no all-zero sector, and reads check the stamps.
//
// # Replication (the main file and replica.img beside it, --size)
//
// A primary store on the main file and a replica store on a second file, in
// one process, the replica following over HTTP on 127.0.0.1 and
// acknowledging (the same disk and CPUs: a floor for two hosts):
//
//	replication  4 KiB random writes, --qd, 2-way sync     sync/unreplicated IOPS >= 0.7
//	             QD1 write latency vs unreplicated + a      printed, no target
//	             loopback TCP round trip
//	resync       catch-up of a replica 1/4 of --size behind  >= 0.8 x min(raw sequential
//	             (64 KiB writes)                            write, loopback TCP)
//
// # The POSIX shim (shim.go, root and /dev/fuse)
//
// The shim mounted over a fresh store: 1 MiB sequential writes, 4 KiB random
// writes (QD1: FUSE serialises writes to one file) and reads through a disk
// file (disks/<id>) and through a file in a volume's namespace, beside the
// same operations on a plain file in the same directory; printed for scale,
// no target.
//
// # The crash fill (its own file, --fill-file)
//
// restart, branch and memory share one fill, run in a child process (this
// program re-executed with a hidden first argument) so that its store can be
// killed: the child writes --fill bytes of 4 KiB random writes over a thin
// --fill-volume volume with default options, checkpoints, measures the live
// heap per byte written (memory), times Branch of the volume's head after a
// 4 KiB write, --branches times (branch), then writes until the log since the
// last checkpoint is 90% of the amount that triggers the next one, reports,
// and is SIGKILLed. The parent times segment.Open of the same file (restart),
// reads back the child's last acknowledged writes, and times a raw
// sequential read of what recovery had to read.
//
// # Output
//
// The table "what | engine | limit (raw) | ratio | target | PASS/MISS", then
// details (latency percentiles, group commit sizes); --json writes the same
// rows to a file. The exit status is 1 if a measurement failed, never because
// a target was missed.
package main

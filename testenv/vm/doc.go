// Package vm runs a program, usually a test binary, inside a throw-away
// QEMU virtual machine whose kernel has ublk, for hosts whose kernel has not
// (DESIGN.md §7). testenv/vmrun wraps it as a go test -exec runner; the same
// static binary is the guest's /init (GuestMain), so host and guest share
// this code and agree on the protocol without a shell script in between.
//
// # Usage
//
//	CGO_ENABLED=0 go build -o .bin/vmrun ./testenv/vmrun
//	sudo .bin/vmrun -prepare        # once: apt installs, kernel download
//	CGO_ENABLED=0 go test -tags e2e -exec "$PWD/.bin/vmrun" ./ublk/...
//	.bin/vmrun -mode vm ./prog args # any static program
//
// make test-e2e does all of this. Test binaries that call
// testenv.RequireUblk (which references the MarkerSymbol function) boot the
// VM, one boot per package; the rest run directly on the host. CLOUDFS_VM=vm
// or host forces either.
//
// # The guest
//
// Debian trixie's 6.12 cloud kernel (linux-image-cloud-amd64, resolved to
// its current build and cached) boots under TCG (KVM cannot run a stock
// kernel on this project's PVM hosts; see reference/ublk-vm/NOTES.md) with
// 2 vCPUs and 3 GiB, from an uncompressed initramfs built per run:
//
//   - /init: the runner itself, the guest agent. It mounts /proc, /sys,
//     /dev (devtmpfs), /dev/pts, /dev/shm and /run, lets the tmpfs root
//     grow to 90% of memory (so /tmp holds about 2.7 GiB), loads ublk_drv,
//     loop and virtio_blk, brings lo up (127.0.0.1 and ::1), runs the
//     program, and powers off.
//   - The program at its host path, with its shared libraries if it has
//     any (a -race binary), started in its host working directory, which
//     holds that directory's files and its testdata tree (not other
//     subdirectories: they are other packages). Writes there stay in the
//     guest.
//   - Its environment: the host's CLOUDFS_* variables, GOTRACEBACK,
//     GODEBUG, GOMAXPROCS, GOGC, GOMEMLIMIT, GORACE, GOCOVERDIR and the
//     names in CLOUDFS_VM_ENV; then PATH, HOME=/root, TMPDIR=/tmp and
//     CLOUDFS_VM_GUEST=1 (testenv.InVM).
//   - busybox (sh, dd, modprobe, ...), and host programs with their shared
//     libraries at their host paths, first in PATH: DefaultPrograms
//     (mkfs.ext4, e2fsck, tune2fs, dumpe2fs, debugfs, fio, blkdiscard,
//     losetup, mount, umount, blockdev) and CLOUDFS_VM_PROGRAMS.
//   - The files and trees of CLOUDFS_VM_FILES at their host paths; the
//     directories of executable ones come first in PATH.
//   - Modules for modprobe (with a generated modules.dep): brd, null_blk,
//     dm_flakey, dm_delay, dm_log_writes, veth, bridge and their
//     dependencies; CLOUDFS_VM_MODULES are loaded at boot. ext4, fuse and
//     virtiofs are built in; 9p is not in this kernel.
//   - /dev/vda carries results back; CLOUDFS_VM_DISK=1G adds a sparse
//     scratch disk /dev/vdb.
//
// The program's stdout and stderr stream to the runner's stdout through a
// virtio serial port (megabytes a second, where a UART under TCG moves
// 150 KB/s); the kernel console goes to a file whose end failures print,
// and the exit status comes on a serial port of its own, away from kernel
// messages. Files that
// -test.* flags write (-test.testlogfile, -test.gocoverdir,
// -test.coverprofile, profiles, -test.outputdir) and GOCOVERDIR come back
// to the same host paths, so go test's caching and -cover work.
//
// # Exit status
//
// The program's own status (128+n if signal n killed it), ExitTimeout (124)
// when the wall-clock limit (CLOUDFS_VM_TIMEOUT, else -test.timeout plus two
// minutes, else 30 minutes) killed QEMU, or ExitVMFailure (125) when the
// VM could not be prepared, did not boot, panicked or ended without the
// program's status. Failures print the end of the guest console on stderr.
// A guest kernel that dies before the program starts (TCG crashes about one
// boot in 60 under load) is booted again, up to three times.
//
// # Host and cache
//
// The first run installs what is missing with apt-get (root only):
// qemu-system-x86, busybox-static, fio, e2fsprogs and util-linux as the
// programs need. It fetches the kernel .deb from the host's own Debian
// archive with a private apt configuration (the host's sources and dpkg
// state stay untouched), unpacks it and keeps the kernel and its module
// tree (about 40 MB) in the cache: CLOUDFS_VM_CACHE, else
// /var/cache/cloudfs-testenv for root, else $XDG_CACHE_HOME/cloudfs-testenv.
// A lock there makes parallel first runs fetch once. Delete the cache to
// pick up a newer kernel. The other variables are listed at FromEnv.
//
// # Rules
//
// This is test equipment: only testenv, its commands, tests and bench use
// it. Its guest protocol (the spec file, the console markers) is private
// to this package.
package vm

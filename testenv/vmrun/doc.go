// Package main is vmrun, the runner of the ublk test VM: go test -exec
// vmrun runs each test binary in a throw-away QEMU guest with Debian's 6.12
// kernel when the binary needs one (it calls testenv.RequireUblk), and on
// the host otherwise. It exits with the program's status, 124 when the time
// limit killed the VM and 125 when the VM failed. The same static binary is
// the guest's /init. go doc cloudfs/testenv/vm describes the guest, the
// cache and the CLOUDFS_VM_* variables; build it with CGO_ENABLED=0.
package main

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"cloudfs/testenv/vm"
)

func main() {
	if vm.IsGuest() {
		vm.GuestMain() // the same binary is the guest's /init
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("vmrun", flag.ContinueOnError)
	prepare := fs.Bool("prepare", false, "install the host packages and fetch the kernel, then exit")
	mode := fs.String("mode", "", "auto, vm or host (default $CLOUDFS_VM, else auto)")
	verbose := fs.Bool("v", false, "print timings and the guest console (as CLOUDFS_VM_VERBOSE=1)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vmrun [-prepare] [-mode auto|vm|host] [-v] program [args...]\n"+
			"       go test -exec vmrun ...\nsee go doc cloudfs/testenv/vm for the CLOUDFS_VM_* variables\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := vm.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmrun:", err)
		return vm.ExitVMFailure
	}
	if *mode != "" {
		cfg.Mode = *mode
	}
	cfg.Verbose = cfg.Verbose || *verbose
	if *prepare {
		return exit(0, vm.Prepare(cfg))
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT)
	defer stop()
	rc, err := vm.Run(ctx, cfg, fs.Arg(0), fs.Args()[1:])
	return exit(rc, err)
}

func exit(rc int, err error) int {
	if err == nil {
		return rc
	}
	fmt.Fprintln(os.Stderr, "vmrun:", err)
	if errors.Is(err, context.Canceled) {
		return 130 // interrupted, as a shell reports SIGINT
	}
	return vm.ExitCode(err)
}

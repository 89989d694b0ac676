package cli

import (
	"context"
	"os/signal"
	"syscall"

	"cloudfs/cmd/cloudfs/daemon"
	"cloudfs/posixshim"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type mountOptions struct {
	g        *globalOptions
	logLevel string
}

func (o *mountOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
}

func newMountCommand(g *globalOptions) *cobra.Command {
	o := &mountOptions{g: g}
	c := &cobra.Command{
		Use:   "mount <dir>",
		Short: "Mount the POSIX shim (FUSE) of the daemon's volumes on <dir>, until SIGTERM or SIGINT",
		Long: `Mount the POSIX shim on <dir> in this process, reaching every volume through
the daemon's HTTP API (which sends block IO to each volume's primary):
<dir>/<id> is a volume's files (a directory that appears on first lookup,
formatted if the volume was never written), <dir>/disks/<id> its whole disk
as one file, for QEMU (-drive file=...,format=raw) and losetup where the
kernel has no ublk. fsync is a FLUSH of the volume. Runs until SIGTERM or
SIGINT, then unmounts. "cloudfs serve --mount <dir>" mounts the same inside
the daemon, which also keeps a volume's block device and the shim apart;
this process cannot: do not use a volume here and as /dev/ublkbN at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c, args[0]) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *mountOptions) run(c *cobra.Command, dir string) error {
	log, err := newLogger(o.logLevel, "text")
	if err != nil {
		return &exitError{ExitUsage, err}
	}
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	srv, err := posixshim.Mount(dir, daemon.NewHTTPSource(cl), posixshim.Config{Logger: log})
	if err != nil {
		return err
	}
	log.Info("mounted", "dir", dir, "daemon", cl.URL)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case <-ctx.Done():
		return srv.Unmount()
	case err := <-done: // unmounted from outside (umount)
		return err
	}
}

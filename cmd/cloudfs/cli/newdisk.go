package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type newdiskOptions struct {
	g    *globalOptions
	size string
	mode string
	json bool
}

func (o *newdiskOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.size, "size", "10G", "the volume's size (K, M, G, T suffixes; a multiple of 512 bytes)")
	fs.StringVar(&o.mode, "mode", "", "replication mode: sync, quorum or async (default quorum from 3 replicas, sync for 2)")
	fs.BoolVar(&o.json, "json", false, "print the new volume as JSON")
}

func newNewdiskCommand(g *globalOptions) *cobra.Command {
	o := &newdiskOptions{g: g}
	c := &cobra.Command{
		Use:   "newdisk [replicas]",
		Short: "Create a volume; print its id",
		Long: `Create a volume and print its 40-hex id on stdout, and the hosts that keep it
on stderr ("host <id>"). replicas is how many live hosts keep it (default 3,
or all of them when the cluster has fewer); the daemon's host is the primary,
the others follow it (catch-up by delta, then live) and acknowledge what they
have logged. --mode says what a write waits for: sync, every replica in sync;
quorum (the default from 3 replicas), a majority of the hosts; async, the
primary's log alone. The creation is all or none.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c, args) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *newdiskOptions) run(c *cobra.Command, args []string) error {
	n := 0 // the daemon's default: 3, or fewer in a smaller cluster
	if len(args) == 1 {
		var err error
		if n, err = strconv.Atoi(args[0]); err != nil || n < 1 {
			return &exitError{ExitUsage, fmt.Errorf("replicas %q: want a positive number", args[0])}
		}
	}
	size, err := parseSize(o.size)
	if err != nil || size%512 != 0 {
		return &exitError{ExitUsage, fmt.Errorf("--size %q: want a multiple of 512 bytes", o.size)}
	}
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	switch o.mode {
	case "", "sync", "quorum", "async":
	default:
		return &exitError{ExitUsage, fmt.Errorf("--mode %q: want sync, quorum or async", o.mode)}
	}
	vi, err := cl.CreateReplicated(c.Context(), uint64(size), n, o.mode)
	if err != nil {
		return o.g.apiError(err)
	}
	if o.json {
		return printJSON(c.OutOrStdout(), vi)
	}
	fmt.Fprintln(c.OutOrStdout(), vi.ID)
	for _, h := range vi.Hosts {
		fmt.Fprintf(c.ErrOrStderr(), "host %s\n", h)
	}
	return nil
}

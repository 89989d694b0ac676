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
	json bool
}

func (o *newdiskOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.size, "size", "10G", "the volume's size (K, M, G, T suffixes; a multiple of 512 bytes)")
	fs.BoolVar(&o.json, "json", false, "print the new volume as JSON")
}

func newNewdiskCommand(g *globalOptions) *cobra.Command {
	o := &newdiskOptions{g: g}
	c := &cobra.Command{
		Use:   "newdisk [replicas]",
		Short: "Create a volume; print its id",
		Long: `Create a volume on the daemon and print its 40-hex id on stdout.
replicas is how many hosts keep it (default 3, or fewer when the cluster has
fewer hosts). Until replication across hosts arrives, a cluster is one host:
replicas above 1 are refused.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c, args) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *newdiskOptions) run(c *cobra.Command, args []string) error {
	if len(args) == 1 {
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 {
			return &exitError{ExitUsage, fmt.Errorf("replicas %q: want a positive number", args[0])}
		}
		if n > 1 {
			return fmt.Errorf("this cluster has 1 host; %d replicas need %d hosts", n, n)
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
	vi, err := cl.Create(c.Context(), uint64(size))
	if err != nil {
		return o.g.apiError(err)
	}
	if o.json {
		return printJSON(c.OutOrStdout(), vi)
	}
	fmt.Fprintln(c.OutOrStdout(), vi.ID)
	fmt.Fprintf(c.ErrOrStderr(), "host %s\n", o.g.server)
	return nil
}

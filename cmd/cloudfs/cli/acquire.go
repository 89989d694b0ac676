package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type acquireOptions struct {
	g    *globalOptions
	json bool
}

func (o *acquireOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
}

func newAcquireCommand(g *globalOptions) *cobra.Command {
	o := &acquireOptions{g: g}
	c := &cobra.Command{
		Use:   "acquire <id>",
		Short: "Make the daemon's host the volume's primary (planned hand-over, e.g. before moving its VM here)",
		Long: `Make the daemon's host, which keeps a replica of the volume, its primary. The
primary holds new writes, lets those in flight finish, waits until this host
has everything, and hands the volume over in the cluster's catalog (a new
epoch); this host then serves it and the held writes come here. The volume's
IO pauses for the hand-over alone (printed). The old primary becomes a
replica.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c, args[0]) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *acquireOptions) run(c *cobra.Command, id string) error {
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	res, err := cl.Acquire(c.Context(), id)
	if err != nil {
		return o.g.apiError(err)
	}
	if o.json {
		return printJSON(c.OutOrStdout(), res)
	}
	fmt.Fprintf(c.OutOrStdout(), "%s: primary %s (was %s), epoch %d; writes paused %.1f ms\n", res.Volume, res.To,
		res.From, res.Epoch, res.PausedMS)
	return nil
}

package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type setModeOptions struct {
	g    *globalOptions
	json bool
}

func (o *setModeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
}

func newSetModeCommand(g *globalOptions) *cobra.Command {
	o := &setModeOptions{g: g}
	c := &cobra.Command{
		Use:   "set-mode <id> sync|quorum|async",
		Short: "Change how a replicated volume's writes wait for its replicas",
		Long: `Change a replicated volume's mode in the cluster's catalog; its primary
applies it from its next write. quorum: a write waits for a majority of the
volume's hosts (the primary counted), and fails after --ack-timeout without
one. sync: it waits for every replica in sync (a silent one leaves the set).
async: for the primary's log alone. For instance, a quorum volume that force
made sync goes back to quorum once its replicas are back.`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c, args[0], args[1]) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *setModeOptions) run(c *cobra.Command, id, mode string) error {
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	res, err := cl.SetMode(c.Context(), id, mode)
	if err != nil {
		return o.g.apiError(err)
	}
	if o.json {
		return printJSON(c.OutOrStdout(), res)
	}
	fmt.Fprintf(c.OutOrStdout(), "%s: mode %s (was %s)\n", res.Volume, res.Mode, res.Was)
	return nil
}

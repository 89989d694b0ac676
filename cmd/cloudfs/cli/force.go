package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type forceOptions struct {
	g    *globalOptions
	yes  bool
	json bool
}

func (o *forceOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.yes, "yes", false, "do it: writes other hosts acknowledged and this one lacks are not in the volume")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
}

func newForceCommand(g *globalOptions) *cobra.Command {
	o := &forceOptions{g: g}
	c := &cobra.Command{
		Use:   "force <id> --yes",
		Short: "Make the daemon's host the volume's primary when no failover can (no quorum left): a last resort",
		Long: `Make the daemon's host, which keeps a replica of the volume, its primary
without the checks of a failover: when the primary is gone and too few of the
volume's hosts are live for a quorum, or this host is not the most up to date.
Writes that other hosts acknowledged and this host does not have are NOT in
the volume from then on; if the old primary returns, it keeps them as a fork
(a branch; see info). A quorum volume becomes a sync volume, which this host
can serve alone (set-mode brings it back to quorum once its replicas are
back). Refused while the primary is live (use acquire). Needs --yes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c, args[0]) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *forceOptions) run(c *cobra.Command, id string) error {
	if !o.yes {
		return &exitError{ExitUsage, errors.New("force loses every acknowledged write this host lacks: say --yes to do it")}
	}
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	res, err := cl.Force(c.Context(), id)
	if err != nil {
		return o.g.apiError(err)
	}
	if o.json {
		return printJSON(c.OutOrStdout(), res)
	}
	fmt.Fprintf(c.ErrOrStderr(), "WARNING: %s forced; writes the old primary (%s) acknowledged that this host lacks are "+
		"not in the volume; if %s returns it keeps them as a fork\n", res.Volume, res.From, res.From)
	fmt.Fprintf(c.OutOrStdout(), "%s: primary %s (was %s), epoch %d\n", res.Volume, res.To, res.From, res.Epoch)
	return nil
}

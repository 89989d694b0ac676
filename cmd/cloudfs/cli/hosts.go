package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type hostsOptions struct {
	g    *globalOptions
	json bool
}

func (o *hostsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print the hosts as JSON")
}

func newHostsCommand(g *globalOptions) *cobra.Command {
	o := &hostsOptions{g: g}
	c := &cobra.Command{
		Use:   "hosts",
		Short: "List the live hosts of the cluster",
		Long: `List the hosts of the daemon's cluster as etcd has them: every host joins under
a lease it renews, so a host that died drops out when its lease expires.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return o.run(c) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *hostsOptions) run(c *cobra.Command) error {
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	hosts, err := cl.Hosts(c.Context())
	if err != nil {
		return o.g.apiError(err)
	}
	if o.json {
		return printJSON(c.OutOrStdout(), hosts)
	}
	tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tURL\tFREE\tJOINED")
	for _, h := range hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.ID, h.URL, humanBytes(h.FreeBytes), h.Joined.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

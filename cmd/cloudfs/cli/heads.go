package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type headsOptions struct {
	g    *globalOptions
	json bool
}

func (o *headsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print a JSON list of {id, version}")
}

func newHeadsCommand(g *globalOptions) *cobra.Command {
	o := &headsOptions{g: g}
	c := &cobra.Command{
		Use:   "heads",
		Short: "Print every volume as <base id>:<current version id>",
		Long: `Print one line per volume of the daemon, <base id>:<current version id>,
as GET /heads does. Two hosts hold the same history of a volume exactly when
their lines for it are equal.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return o.run(c) },
	}
	o.AddFlags(c.Flags())
	return c
}

type headJSON struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

func (o *headsOptions) run(c *cobra.Command) error {
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	heads, err := cl.Heads(c.Context())
	if err != nil {
		return o.g.apiError(err)
	}
	if !o.json {
		for _, h := range heads {
			fmt.Fprintln(c.OutOrStdout(), h)
		}
		return nil
	}
	out := []headJSON{}
	for _, h := range heads {
		id, version, _ := strings.Cut(h, ":")
		out = append(out, headJSON{id, version})
	}
	return printJSON(c.OutOrStdout(), out)
}

package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type branchOptions struct {
	g    *globalOptions
	json bool
}

func (o *branchOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print the new volume as JSON")
}

func newBranchCommand(g *globalOptions) *cobra.Command {
	o := &branchOptions{g: g}
	c := &cobra.Command{
		Use:   "branch <version>",
		Short: "Make a writable branch (snapshot, clone) of a version; print its id",
		Long: `Make a new writable volume whose contents are <version>: the current
version of a volume (from heads or info), or a version a branch was already
taken of. It takes constant time and copies no data; the source continues
unchanged. Prints the new volume's id.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c, args[0]) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *branchOptions) run(c *cobra.Command, version string) error {
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	vi, err := cl.Branch(c.Context(), version)
	if err != nil {
		return o.g.apiError(err)
	}
	if o.json {
		return printJSON(c.OutOrStdout(), vi)
	}
	fmt.Fprintln(c.OutOrStdout(), vi.ID)
	return nil
}

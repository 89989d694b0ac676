package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type deleteOptions struct {
	g     *globalOptions
	force bool
}

func (o *deleteOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.force, "force", false, "delete even if the volume's block device is open (its users get IO errors)")
}

func newDeleteCommand(g *globalOptions) *cobra.Command {
	o := &deleteOptions{g: g}
	c := &cobra.Command{
		Use:   "delete <id>",
		Short: "Delete a volume (and its block device) from the daemon's host",
		Long: `Delete a volume and its block device. A volume whose device is open (mounted,
or used by a VM) is refused unless --force. Its space is reclaimed by the
cleaner; branches taken of it keep the data they read through to.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := o.g.client()
			if err != nil {
				return err
			}
			if err := cl.Delete(c.Context(), args[0], o.force); err != nil {
				return o.g.apiError(err)
			}
			fmt.Fprintf(c.ErrOrStderr(), "deleted %s\n", args[0])
			return nil
		},
	}
	o.AddFlags(c.Flags())
	return c
}

package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newDeleteCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "delete <id>",
		Short: "Delete a volume from the daemon's store",
		Long: `Delete a volume. Its space is reclaimed by the cleaner; branches taken of
it keep the data they read through to.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if err := cl.Delete(c.Context(), args[0]); err != nil {
				return g.apiError(err)
			}
			fmt.Fprintf(c.ErrOrStderr(), "deleted %s\n", args[0])
			return nil
		},
	}
}

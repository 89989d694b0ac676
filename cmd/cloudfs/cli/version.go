package cli

import (
	"fmt"

	"cloudfs/cmd/cloudfs/daemon"

	"github.com/spf13/cobra"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			version, commit, goVersion := daemon.BuildInfo()
			fmt.Fprintf(c.OutOrStdout(), "cloudfs %s (commit %s, %s)\n", version, commit, goVersion)
			return nil
		},
	}
}

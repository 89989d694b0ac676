package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes scripts can rely on.
const (
	ExitOK      = 0
	ExitFailure = 1 // the operation failed
	ExitUsage   = 2 // bad arguments or flags
	ExitCorrupt = 3 // check found problems
)

// exitError carries an exit code with an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode returns the process exit status for err (nil: ExitOK).
func ExitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	}
	return ExitFailure
}

// NewRootCommand returns the cloudfs command with every verb.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "cloudfs",
		Short:         "cloudfs: virtual machine storage on the local disks of Linux hosts",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{ExitUsage, err}
	})
	g := &globalOptions{}
	g.AddFlags(root.PersistentFlags())
	root.AddCommand(newNukeCommand(), newCheckCommand(), newServeCommand(g), newNewdiskCommand(g),
		newHeadsCommand(g), newInfoCommand(g), newBranchCommand(g), newDeleteCommand(g),
		newStreamCommand(g), newApplyCommand(g), newHostsCommand(g), newMountCommand(g), newAcquireCommand(g), newForceCommand(g), newSetModeCommand(g), newVersionCommand())
	return root
}

// parseSize parses a byte count with an optional K, M, G or T suffix (powers
// of 1024), e.g. "1G", "512M", "4096".
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "B"))
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		case 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number with an optional K, M, G or T suffix", s)
	}
	return v * mult, nil
}

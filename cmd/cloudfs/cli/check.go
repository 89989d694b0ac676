package cli

import (
	"encoding/json"
	"fmt"

	"cloudfs/cmd/cloudfs/daemon"
	"cloudfs/segment"
	"cloudfs/segment/device"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type checkOptions struct {
	json bool
}

func (o *checkOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
}

func newCheckCommand() *cobra.Command {
	o := &checkOptions{}
	c := &cobra.Command{
		Use:   "check <device-or-file>",
		Short: "Verify a store offline (fsck); it must not be in use",
		Long: `Verify a store offline: recover it as serve would (without writing), read
and verify every record, and check every volume's chain and extent map and the
space accounting. Exit status 0: clean; 3: problems found (listed); 1: the
store could not be read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c, args[0]) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *checkOptions) run(c *cobra.Command, path string) error {
	unlock, err := daemon.Lock(path, false)
	if err != nil {
		return err
	}
	defer unlock()
	dev, err := device.Open(path, device.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer dev.Close()
	rep, err := segment.Check(dev)
	if rep == nil {
		return err
	}
	out := c.OutOrStdout()
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(rep); jerr != nil {
			return jerr
		}
	} else {
		fmt.Fprintf(out, "%s: %d volumes, %d snapshots, %d of %d segments in use, %d records verified, %d MiB live\n",
			path, rep.Volumes, rep.Snapshots, rep.UsedSegments, rep.Segments, rep.Records, rep.LiveBytes>>20)
		for _, p := range rep.Problems {
			fmt.Fprintf(out, "problem: %s\n", p)
		}
	}
	if err != nil {
		return &exitError{ExitCorrupt, err}
	}
	return nil
}

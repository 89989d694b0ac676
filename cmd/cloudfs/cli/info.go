package cli

import (
	"cloudfs/replicator"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type infoOptions struct {
	g    *globalOptions
	json bool
}

func (o *infoOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print the volume as JSON")
}

func newInfoCommand(g *globalOptions) *cobra.Command {
	o := &infoOptions{g: g}
	c := &cobra.Command{
		Use:   "info <id>",
		Short: "Show a volume: version, lsn, size, role, parent, bytes used, replicas and their lag",
		Args:  cobra.ExactArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return o.run(c, args[0]) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *infoOptions) run(c *cobra.Command, id string) error {
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	vi, err := cl.Info(c.Context(), id)
	if err != nil {
		return o.g.apiError(err)
	}
	if o.json {
		return printJSON(c.OutOrStdout(), vi)
	}
	tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	row("id", vi.ID)
	row("version", vi.Version)
	row("lsn", vi.LSN)
	row("epoch", vi.Epoch)
	row("size", humanBytes(int64(vi.Size)))
	row("role", vi.Role)
	if vi.Parent != "" {
		row("parent", vi.Parent)
	}
	row("used", humanBytes(int64(vi.UsedBytes)))
	row("zeroed", humanBytes(int64(vi.ZeroBytes)))
	row("extents", vi.Extents)
	if vi.Device != "" {
		row("device", vi.Device)
	}
	if vi.Mode != "" {
		row("mode", vi.Mode)
		row("primary", vi.Primary)
		for _, r := range vi.Replicas {
			row("replica "+r.Host, replicaLine(r))
		}
		for _, f := range vi.Forks {
			row("fork on "+f.Host, fmt.Sprintf("%s: a history the primary's does not continue, kept as this branch "+
				"(head %s, lsn %d, %s)", f.Branch, f.Version, f.LSN, f.At.Format(time.RFC3339)))
		}
	}
	return tw.Flush()
}

// humanBytes prints n bytes with a binary unit, e.g. "10 GiB", "1.5 MiB".
func humanBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f, i = f/1024, i+1
	}
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d %s", int64(f), units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// replicaLine is one replica as info and heads --replicas show it: its
// version and lsn, how far behind the answering host it is, and, in the
// primary's view, whether it counts for the mode now.
func replicaLine(r replicator.ReplicaInfo) string {
	if r.Err != "" {
		return "unreachable: " + r.Err
	}
	line := fmt.Sprintf("%s lsn %d, %d entries behind", r.Version, r.LSN, r.LagEntries)
	if r.LagBytes > 0 {
		line += " (" + humanBytes(r.LagBytes) + ")"
	}
	if r.InSync {
		line += ", in sync"
	}
	return line
}

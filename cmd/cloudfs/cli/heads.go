package cli

import (
	"fmt"
	"strings"

	"cloudfs/replicator"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type headsOptions struct {
	g        *globalOptions
	json     bool
	replicas bool
}

func (o *headsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print a JSON list of {id, version}")
	fs.BoolVarP(&o.replicas, "replicas", "r", false,
		"under each replicated volume, its mode, every replica's version, lag (entries, bytes) and state, and the forks kept here")
}

func newHeadsCommand(g *globalOptions) *cobra.Command {
	o := &headsOptions{g: g}
	c := &cobra.Command{
		Use:   "heads",
		Short: "Print every volume as <base id>:<current version id>",
		Long: `Print one line per volume of the daemon, <base id>:<current version id>,
as GET /heads does. Two hosts hold the same history of a volume exactly when
their lines for it are equal. With --replicas, each volume in the cluster's
catalog is followed by its mode and primary and one line per replica.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return o.run(c) },
	}
	o.AddFlags(c.Flags())
	return c
}

type headJSON struct {
	ID       string                   `json:"id"`
	Version  string                   `json:"version"`
	Mode     string                   `json:"mode,omitempty"`
	Primary  string                   `json:"primary,omitempty"`
	Replicas []replicator.ReplicaInfo `json:"replicas,omitempty"`
	Forks    []replicator.ForkInfo    `json:"forks,omitempty"`
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
	out := []headJSON{}
	for _, h := range heads {
		id, version, _ := strings.Cut(h, ":")
		hj := headJSON{ID: id, Version: version}
		if o.replicas {
			if vi, err := cl.Info(c.Context(), id); err == nil {
				hj.Mode, hj.Primary, hj.Replicas, hj.Forks = vi.Mode, vi.Primary, vi.Replicas, vi.Forks
			}
		}
		out = append(out, hj)
	}
	if o.json {
		return printJSON(c.OutOrStdout(), out)
	}
	w := c.OutOrStdout()
	for _, h := range out {
		fmt.Fprintf(w, "%s:%s\n", h.ID, h.Version)
		if h.Mode != "" {
			fmt.Fprintf(w, "  mode %s, primary %s\n", h.Mode, h.Primary)
		}
		for _, r := range h.Replicas {
			fmt.Fprintf(w, "  replica %s: %s\n", r.Host, replicaLine(r))
		}
		for _, f := range h.Forks {
			fmt.Fprintf(w, "  fork %s on %s: a history the primary's does not continue (head %s, lsn %d)\n", f.Branch,
				f.Host, f.Version, f.LSN)
		}
	}
	return nil
}

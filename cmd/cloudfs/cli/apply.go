package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type applyOptions struct {
	g        *globalOptions
	json     bool
	progress string
}

func (o *applyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.StringVar(&o.progress, "progress", "auto", "progress on stderr: auto (when a terminal), always or never")
}

func newApplyCommand(g *globalOptions) *cobra.Command {
	o := &applyOptions{g: g}
	c := &cobra.Command{
		Use:   "apply",
		Short: "Append a stream (from cloudfs stream) read from stdin",
		Long: `Send the stream on stdin to the daemon, which verifies every entry (checksums,
chain links) and appends them; the volume then has the sender's version. A
stream that does not verify is refused and changes nothing (or, beyond its
first 64 MiB of entries, leaves the volume at its last verified version).
Entries the daemon already has are skipped.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return o.run(c) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *applyOptions) run(c *cobra.Command) error {
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	p := startProgress(progressTo(c.ErrOrStderr(), o.progress), "applied")
	res, err := cl.Apply(c.Context(), progressReader{c.InOrStdin(), p})
	p.Stop()
	if err != nil {
		return o.g.apiError(err)
	}
	if o.json {
		return printJSON(c.OutOrStdout(), res)
	}
	fmt.Fprintf(c.OutOrStdout(), "%s:%s lsn %d: %d entries applied, %d already here, %s\n",
		res.Volume, res.Version, res.LSN, res.Entries, res.Skipped, humanBytes(res.Bytes))
	return nil
}

package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"cloudfs/replicator"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type streamOptions struct {
	g        *globalOptions
	from     string
	lsn      uint64
	follow   bool
	progress string
}

func (o *streamOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.from, "from", "", "stream the entries after this version (default: from the volume's creation)")
	fs.Uint64Var(&o.lsn, "lsn", 0, "the lsn of --from, if known (else the daemon looks it up)")
	fs.BoolVar(&o.follow, "follow", false, "after catching up, keep streaming new entries until interrupted")
	fs.StringVar(&o.progress, "progress", "auto", "progress on stderr: auto (when a terminal), always or never")
}

func newStreamCommand(g *globalOptions) *cobra.Command {
	o := &streamOptions{g: g}
	c := &cobra.Command{
		Use:   "stream <id>",
		Short: "Write a volume's entries after a version to stdout",
		Long: `Write to stdout a stream of the volume's entries after --from (a version
id; default: everything since the volume was created), up to its current
version; with --follow, then every new entry as it is committed. Another
host's "cloudfs apply" appends the stream and then has the same version.
The stream is binary: stdout must be a file or a pipe.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c, args[0]) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *streamOptions) run(c *cobra.Command, id string) error {
	out := c.OutOrStdout()
	if f, ok := out.(*os.File); ok && isTerminal(f) {
		return &exitError{ExitUsage, errors.New("stdout is a terminal: redirect the stream to a file or pipe it into cloudfs apply")}
	}
	cl, err := o.g.client()
	if err != nil {
		return err
	}
	rc, err := cl.Stream(c.Context(), id, replicator.StreamOptions{From: o.from, LSN: o.lsn, Follow: o.follow})
	if err != nil {
		return o.g.apiError(err)
	}
	defer rc.Close()
	p := startProgress(progressTo(c.ErrOrStderr(), o.progress), "streamed")
	_, err = io.Copy(progressWriter{out, p}, rc)
	p.Stop()
	if err != nil {
		return fmt.Errorf("stream of %s: %w", id, err)
	}
	return nil
}

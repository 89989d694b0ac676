package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"

	"cloudfs/replicator"

	"github.com/spf13/pflag"
)

// Exit codes of the verbs that talk to a daemon, besides ExitOK, ExitFailure
// and ExitUsage.
const (
	ExitNotFound    = 4 // no such volume or version
	ExitUnreachable = 5 // no daemon answered at --server
)

// globalOptions are the root's flags, shared by every verb.
type globalOptions struct {
	server     string
	dataDir    string
	secretFile string
}

func (o *globalOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.server, "server", envOr("CLOUDFS_SERVER", "http://127.0.0.1:8090"),
		"the daemon's API, for the verbs that talk to one (env CLOUDFS_SERVER)")
	fs.StringVar(&o.dataDir, "data-dir", envOr("CLOUDFS_DATA_DIR", "/var/lib/cloudfs"),
		"the host's data directory: its store file and cluster secret (env CLOUDFS_DATA_DIR)")
	fs.StringVar(&o.secretFile, "secret-file", os.Getenv("CLOUDFS_SECRET_FILE"),
		"the cluster secret's file (default <data-dir>/secret; env CLOUDFS_SECRET_FILE)")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (o *globalOptions) secretPath() string {
	if o.secretFile != "" {
		return o.secretFile
	}
	return filepath.Join(o.dataDir, "secret")
}

// client returns an API client for --server with the cluster secret.
func (o *globalOptions) client() (*replicator.Client, error) {
	secret, err := replicator.LoadSecret(o.secretPath())
	if err != nil {
		return nil, fmt.Errorf("cluster secret (needed to talk to the daemon; --secret-file or --data-dir): %w", err)
	}
	return &replicator.Client{URL: o.server, Secret: secret}, nil
}

// apiError turns a client error into a CLI error with the right exit code.
func (o *globalOptions) apiError(err error) error {
	var ae *replicator.APIError
	var ne net.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && ae.Code == http.StatusNotFound:
		return &exitError{ExitNotFound, errors.New(ae.Message)}
	case errors.As(err, &ae) && ae.Code == http.StatusBadRequest:
		return &exitError{ExitUsage, errors.New(ae.Message)}
	case errors.As(err, &ae):
		return fmt.Errorf("%s", ae.Message)
	case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &ne) && !errors.Is(err, context.Canceled):
		return &exitError{ExitUnreachable, fmt.Errorf("no cloudfs daemon answers at %s (is cloudfs serve running?): %w", o.server, err)}
	}
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

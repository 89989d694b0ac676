package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"cloudfs/cmd/cloudfs/daemon"
	"cloudfs/segment"
	"cloudfs/segment/device"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type nukeOptions struct {
	size        string
	segmentSize string
	force       bool
}

func (o *nukeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.size, "size", "", "size of the store file to create when it does not exist (e.g. 10G)")
	fs.StringVar(&o.segmentSize, "segment-size", "16M", "segment size, set once at format time (4M to 1G)")
	fs.BoolVar(&o.force, "force", false, "format even if the device or file already holds a cloudfs store")
}

func newNukeCommand() *cobra.Command {
	o := &nukeOptions{}
	c := &cobra.Command{
		Use:   "nuke <device-or-file>",
		Short: "Format a partition, block device or file as an empty cloudfs store",
		Long: `Format a partition, block device or file as an empty cloudfs store.
A file that does not exist is created sparse with --size. A device or file that
already holds a cloudfs store is refused unless --force: formatting destroys
every volume on it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return o.run(c, args[0]) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *nukeOptions) run(c *cobra.Command, path string) error {
	segSize, err := parseSize(o.segmentSize)
	if err != nil {
		return &exitError{ExitUsage, err}
	}
	if err := o.createIfMissing(path); err != nil {
		return err
	}
	unlock, err := daemon.Lock(path, true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := refuseInUse(path, o.force); err != nil {
		return err
	}
	dev, err := device.Open(path, device.Options{})
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := refuseStore(dev, path, o.force); err != nil {
		return err
	}
	sb, err := segment.Format(dev, segment.FormatOptions{SegmentSize: segSize})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.OutOrStdout(), "formatted %s: store %x, %d segments of %d MiB (%d MiB of log)\n",
		path, sb.UUID, sb.Segments, sb.SegmentSize>>20, sb.Segments*sb.SegmentSize>>20)
	return nil
}

// createIfMissing creates a sparse store file of --size bytes if path does
// not exist (and its directory, too).
func (o *nukeOptions) createIfMissing(path string) error {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if o.size == "" {
		return &exitError{ExitUsage, fmt.Errorf("%s does not exist: give --size to create a store file", path)}
	}
	size, err := parseSize(o.size)
	if err != nil {
		return &exitError{ExitUsage, err}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return device.Create(path, size&^(segment.BlockSize-1))
}

// refuseStore fails if dev already holds a cloudfs store, unless force.
func refuseStore(dev device.Device, path string, force bool) error {
	buf := device.AlignedBuf(segment.BlockSize)
	if _, err := dev.ReadAt(buf, 0); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	_, err := segment.DecodeSuperblock(buf)
	if errors.Is(err, segment.ErrNotStore) || force {
		return nil
	}
	return fmt.Errorf("%s already holds a cloudfs store (formatting destroys every volume on it; use --force): %v", path, describe(err))
}

func describe(err error) string {
	if err == nil {
		return "superblock verifies"
	}
	return err.Error()
}

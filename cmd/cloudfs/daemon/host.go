package daemon

import (
	"context"
	"io"

	"cloudfs/replicator"
	"cloudfs/segment"
)

// Host is the store as the API sees it on this host. Today it passes
// through; with ublk (issue 4) creating a volume also makes its device and
// deleting one removes it.
type Host struct {
	st *segment.Store
}

var _ replicator.Store = (*Host)(nil)

func (h *Host) Heads() []segment.Head                           { return h.st.Heads() }
func (h *Host) Volume(base segment.ID) (*segment.Volume, error) { return h.st.Volume(base) }
func (h *Host) Create(size uint64) (*segment.Volume, error)     { return h.st.Create(size) }
func (h *Host) Branch(v segment.ID) (*segment.Volume, error)    { return h.st.Branch(v) }
func (h *Host) Delete(base segment.ID) error                    { return h.st.Delete(base) }
func (h *Host) Apply(r io.Reader) (segment.ApplyStats, error)   { return h.st.Apply(r) }

func (h *Host) Locate(base, version segment.ID) (segment.Position, error) {
	return h.st.Locate(base, version)
}

func (h *Host) Stream(w io.Writer, base segment.ID, from segment.Position) (segment.StreamStats, error) {
	return h.st.Stream(w, base, from)
}

func (h *Host) Follow(ctx context.Context, w io.Writer, base segment.ID, from segment.Position) (segment.StreamStats, error) {
	return h.st.Follow(ctx, w, base, from)
}

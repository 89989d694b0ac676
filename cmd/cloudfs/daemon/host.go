package daemon

import (
	"context"
	"fmt"
	"io"

	"cloudfs/replicator"
	"cloudfs/segment"
)

// Host is the store as the API sees it on this host: creating, branching
// or applying a volume also gives it a block device, deleting one removes
// the device first (refused while it is open, unless forced).
type Host struct {
	st   *segment.Store
	devs *devices     // nil: no ublk on this kernel
	repl *replication // the cluster's catalog and this host's followers
	acks *replicator.Acks
	shim *shimSource // nil: no POSIX shim mounted
}

// orphan returns the block API's test for a volume with no primary serving
// it: an orphan in rt whose store here has not taken it over (yet).
func (h *Host) orphan(rt *routes) func(segment.ID) bool {
	return func(base segment.ID) bool {
		if !rt.orphaned(base) {
			return false
		}
		v, err := h.st.Volume(base)
		if err != nil {
			return false
		}
		in, err := v.Info()
		return err == nil && !in.Owned
	}
}

// devsAcks is the replication writes go through.
func (h *Host) devsAcks() *replicator.Acks { return h.acks }

var _ replicator.Store = (*Host)(nil)

func (h *Host) Heads() []segment.Head                           { return h.st.Heads() }
func (h *Host) Volume(base segment.ID) (*segment.Volume, error) { return h.st.Volume(base) }

func (h *Host) Create(size uint64) (*segment.Volume, error)  { return h.withDevice(h.st.Create(size)) }
func (h *Host) Branch(v segment.ID) (*segment.Volume, error) { return h.withDevice(h.st.Branch(v)) }

// withDevice gives a new volume its device. A volume without one is still
// a volume (served over HTTP); the failure is logged.
func (h *Host) withDevice(v *segment.Volume, err error) (*segment.Volume, error) {
	if err != nil || h.devs == nil {
		return v, err
	}
	if derr := h.devs.add(v.Base()); derr != nil {
		h.devs.log.Error("volume has no device", "volume", v.Base(), "err", derr)
	}
	h.devs.saveState()
	return v, nil
}

func (h *Host) Delete(base segment.ID, force bool) error {
	if !force && h.shim.inUse(base) {
		return fmt.Errorf("volume %v is in use by the POSIX shim: %w; unmount it or delete with --force", base,
			replicator.ErrBusy)
	}
	if h.devs != nil {
		if err := h.devs.remove(base, force); err != nil {
			return err
		}
	}
	if err := h.st.Delete(base); err != nil {
		return err
	}
	if h.repl != nil {
		h.repl.forgetIfPrimary(base)
	}
	return nil
}

func (h *Host) Apply(r io.Reader) (segment.ApplyStats, error) {
	st, err := h.st.Apply(r)
	if h.devs != nil && st.Entries > 0 {
		h.devs.sync()
	}
	return st, err
}

// ApplyLive is the store's, for a follower: a volume it creates gets its
// block device once its first entries are in.
func (h *Host) ApplyLive(r io.Reader, applied func(segment.Position)) (segment.ApplyStats, error) {
	synced := false
	return h.st.ApplyLive(r, func(p segment.Position) {
		if !synced && h.devs != nil {
			synced = true
			go h.devs.sync()
		}
		applied(p)
	})
}

func (h *Host) Locate(base, version segment.ID) (segment.Position, error) {
	return h.st.Locate(base, version)
}

func (h *Host) Stream(w io.Writer, base segment.ID, from segment.Position) (segment.StreamStats, error) {
	return h.st.Stream(w, base, from)
}

func (h *Host) Follow(ctx context.Context, w io.Writer, base segment.ID, from segment.Position) (segment.StreamStats, error) {
	return h.st.Follow(ctx, w, base, from)
}

// Device returns the block device of a volume, "" for none.
func (h *Host) Device(base segment.ID) string { return h.devs.path(base) }

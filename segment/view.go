package segment

import "fmt"

// Ownership changes (docs/FORMAT.md §6 "View change"). Only the store holding
// a volume's view secret for the volume's epoch can extend its chain. Another
// store that holds the volume (a replica up to date with the owner) becomes
// the owner by appending a view entry in a new, higher epoch; the cluster
// (etcd) decides the epochs, the store only enforces their order. Replicas
// refuse entries of an epoch lower than the highest they have seen, so a
// paused old primary cannot get its writes logged anywhere once they have
// seen the new epoch, through the view entry or through Fence.

// TakeOver makes this store the owner of volume base in epoch: it appends,
// durably, a view entry that links to the volume's head by its public version
// id and carries epoch, whose version id and token derive from this store's
// view secret of (base, epoch). From then on writes to the volume on this
// store extend the chain from the view entry (Info().Owned is true), and
// stores that apply the view entry follow the new owner; the previous owner,
// once it applies it, stops owning the volume. It returns the view entry's
// position.
//
// epoch must be greater than the volume's epoch and at least its fence
// (Fence), else ErrStaleEpoch. It works on the owner itself too (the volume
// moves to the new epoch). Other errors: ErrNotFound, ErrNoSpace,
// ErrDeviceFailed, ErrClosed.
//
// The view entry extends this store's head: if the previous owner acknowledged
// entries this store does not have, they are not in the new history (the
// caller picks the most up-to-date replica), and the previous owner's stream
// of them is refused with ErrLink once it meets the view entry.
func (s *Store) TakeOver(base ID, epoch uint64) (Position, error) {
	o := &op{kind: opView, base: base, epoch: epoch, sync: true, recs: []*rec{{}}}
	if err := s.run(o); err != nil {
		return Position{}, err
	}
	h := &o.recs[0].h
	s.log.Info("volume taken over", "volume", base.String(), "epoch", epoch, "lsn", h.LSN)
	return Position{LSN: h.LSN, Version: h.ID}, nil
}

// Fence records that epoch has been seen for volume base without an entry of
// it (the cluster has given the volume to an owner in epoch): from when it
// returns, Apply and ApplyLive refuse every entry of the volume of a lower
// epoch with ErrStaleEpoch (and ErrLink), and if this store owns the volume in
// a lower epoch it stops owning it: its writes fail with ErrReadOnly. Writes
// acknowledged before Fence returns were planned before the fence; none is
// acknowledged after it. The fence is monotone (an epoch not above the
// volume's epoch or below its fence changes nothing and returns nil) and
// survives a crash: Fence writes a checkpoint before it returns. If that
// fails, the fence holds in memory but may be lost at a crash; call Fence
// again. Errors: ErrNotFound, ErrNoSpace, ErrDeviceFailed, ErrClosed.
func (s *Store) Fence(base ID, epoch uint64) error {
	s.mu.RLock()
	v := s.cat.volume(base)
	var epochNow, fence uint64
	if v != nil {
		epochNow, fence = v.epoch, v.fence
	}
	s.mu.RUnlock()
	if v == nil {
		return fmt.Errorf("fence %v: %w", base, ErrNotFound)
	}
	if epoch <= epochNow || epoch < fence {
		return nil // entries below it are refused already
	}
	if err := s.run(&op{kind: opFence, base: base, epoch: epoch}); err != nil {
		return fmt.Errorf("fence %v at epoch %d: %w", base, epoch, err)
	}
	if err := s.Checkpoint(); err != nil {
		return fmt.Errorf("fence %v at epoch %d: %w", base, epoch, err)
	}
	s.log.Info("volume fenced", "volume", base.String(), "epoch", epoch)
	return nil
}

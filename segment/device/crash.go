package device

import (
	"maps"
	"math/rand/v2"
	"slices"
)

// CrashCfg configures Mem.CrashClone.
type CrashCfg struct {
	// UnsyncedPercent is the chance, from 0 to 100, that a block written
	// since the last Sync keeps its newest contents. Otherwise it reverts
	// to its contents at the last Sync.
	UnsyncedPercent int

	// TearPercent is the chance, from 0 to 100, that a kept unsynced block
	// is torn: only a random prefix of 0 to n-1 of its n 512-byte sectors
	// holds the new contents and the rest holds the old. A 512-byte block
	// has one sector, so tearing it reverts it.
	TearPercent int

	// Rand makes the decisions. Blocks are visited in offset order and no
	// number is drawn for a percentage of 0 or 100, so equal seeds give
	// equal clones. nil means a generator seeded with zeros.
	Rand *rand.Rand
}

// CrashClone returns a new, independent Mem holding what a power cut at
// this instant could leave on the device: every block as of the last Sync,
// plus the newest contents of the blocks written since, each kept, torn or
// reverted as cfg decides. The clone counts all its contents as synced and
// is open even if m is closed. CrashClone waits for IO in flight; the
// receiver is unchanged.
func (m *Mem) CrashClone(cfg CrashCfg) *Mem {
	m.ioMu.Lock()
	defer m.ioMu.Unlock()
	rng := cfg.Rand
	if rng == nil {
		rng = rand.New(rand.NewPCG(0, 0))
	}
	clone := m.copyChunks()
	for _, b := range slices.Sorted(maps.Keys(m.unsynced)) {
		clone.revertSectors(b, m.unsynced[b], crashKeep(cfg, rng, m.blockSize/sectorSize))
	}
	return clone
}

// copyChunks returns a deep copy of m's current contents. The caller holds
// ioMu exclusively.
func (m *Mem) copyChunks() *Mem {
	clone := NewMem(m.size, m.blockSize)
	for i := range m.chunks {
		if c := m.chunks[i].Load(); c != nil {
			cp := *c
			clone.chunks[i].Store(&cp)
		}
	}
	return clone
}

// crashKeep decides how many leading sectors of an unsynced block of the
// given number of sectors survive a crash.
func crashKeep(cfg CrashCfg, rng *rand.Rand, sectors int) int {
	switch {
	case !chance(rng, cfg.UnsyncedPercent):
		return 0
	case chance(rng, cfg.TearPercent):
		return rng.IntN(sectors)
	default:
		return sectors
	}
}

// chance reports true with probability percent/100, drawing from rng only
// when the outcome is uncertain.
func chance(rng *rand.Rand, percent int) bool {
	switch {
	case percent <= 0:
		return false
	case percent >= 100:
		return true
	default:
		return rng.IntN(100) < percent
	}
}

// revertSectors restores block b's sectors from keep onwards to old (nil
// meaning zeros).
func (m *Mem) revertSectors(b int64, old []byte, keep int) {
	from := keep * sectorSize
	if from >= m.blockSize {
		return
	}
	c, coff := m.locate(b)
	if c == nil && old == nil {
		return // already zeros
	}
	c = m.chunkAt(int(b * int64(m.blockSize) / memChunkSize))
	dst := c[coff+from : coff+m.blockSize]
	if old == nil {
		clear(dst)
	} else {
		copy(dst, old[from:])
	}
}

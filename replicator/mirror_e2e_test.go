//go:build e2e

package replicator_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"cloudfs/testenv/cluster"
)

// mirror keeps what a volume must read back under a test's write load: the
// last acknowledged write at each offset, and the offsets whose last write
// failed (either content may be there). One goroutine at a time uses it.
type mirror struct {
	id      string
	rng     *rand.Rand
	acked   map[int64][]byte
	unknown map[int64]bool
}

// mirrorSlots is how many 4 KiB blocks the writes land on: the first 16 MiB.
const mirrorSlots = 4096

func newMirror(id string, seed1, seed2 uint64) *mirror {
	return &mirror{id: id, rng: rand.New(rand.NewPCG(seed1, seed2)), acked: map[int64][]byte{},
		unknown: map[int64]bool{}}
}

// write writes 4 KiB of random bytes at a random block through h and
// records the outcome.
func (m *mirror) write(ctx context.Context, h *cluster.Host) error {
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(m.rng.Uint32())
	}
	off := int64(m.rng.IntN(mirrorSlots)) * 4096
	if err := h.Client().WriteAt(ctx, m.id, b, off); err != nil {
		m.unknown[off] = true
		return err
	}
	m.acked[off] = b
	delete(m.unknown, off)
	return nil
}

// verify fails t unless every acknowledged write (whose offset no later
// write failed at) reads back through h.
func (m *mirror) verify(ctx context.Context, t *testing.T, what string, h *cluster.Host) {
	t.Helper()
	got := make([]byte, 4096)
	for off, b := range m.acked {
		if m.unknown[off] {
			continue
		}
		if err := h.Client().ReadAt(ctx, m.id, got, off); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s: the acknowledged write at %d does not read back through %s (%v)", what, off, h.Name(), err)
		}
	}
}

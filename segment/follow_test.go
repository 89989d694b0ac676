package segment_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"cloudfs/segment"
)

// roundWriter records each Write as one round of a followed stream and
// signals it.
type roundWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	rounds chan int // the buffer's length after each Write
}

func (w *roundWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, _ := w.buf.Write(p)
	l := w.buf.Len()
	w.mu.Unlock()
	w.rounds <- l
	return n, nil
}

func (w *roundWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// TestFollow follows a volume from its middle: the catch-up, then each new
// write as it commits; applied on a second store the stream gives the same
// head at every round, and Follow ends with the context's error.
func TestFollow(t *testing.T) {
	_, src := newStore(t, 64<<20)
	_, dst := newStore(t, 64<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	v := mustCreate(t, src, 1<<20)
	writeHistory(t, rng, v, 5)
	mustApply(t, dst, mustStream(t, src, v.Base(), segment.Position{}))
	from := position(t, v)
	writeHistory(t, rng, v, 3) // the catch-up part

	ctx, cancel := context.WithCancel(context.Background())
	w := &roundWriter{rounds: make(chan int, 16)}
	errc := make(chan error, 1)
	go func() { _, err := src.Follow(ctx, w, v.Base(), from); errc <- err }()
	waitRound := func() {
		t.Helper()
		select {
		case <-w.rounds:
		case err := <-errc:
			t.Fatalf("Follow ended early: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("no round of the followed stream within a minute")
		}
	}
	waitRound()
	applied := 0
	catchUp := func() {
		t.Helper()
		b := w.bytes()
		// every round is whole entries: apply what came so far (entries
		// already applied are skipped) and compare heads
		mustApply(t, dst, b)
		applied = len(b)
		sameVolume(t, src, dst, v.Base())
	}
	catchUp()
	for range 4 {
		writeHistory(t, rng, v, 1)
		for len(w.bytes()) == applied {
			waitRound()
		}
		for mustInfo(t, v).Version != lastVersion(t, w.bytes()) {
			waitRound()
		}
		catchUp()
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow after cancel = %v, want context.Canceled", err)
	}
}

// lastVersion returns the version id of the last entry of a stream.
func lastVersion(t *testing.T, stream []byte) segment.ID {
	t.Helper()
	r := bytes.NewReader(stream[segment.HeaderSize:])
	var last segment.ID
	hb := make([]byte, segment.HeaderSize)
	for {
		if _, err := io.ReadFull(r, hb); err != nil {
			return last
		}
		h, err := segment.DecodeWireHeader(hb)
		if err != nil {
			t.Fatalf("DecodeWireHeader: %v", err)
		}
		last = h.ID
		if _, err := r.Seek(int64(h.NBody)*segment.SectorSize, io.SeekCurrent); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFollowEnds: deleting the volume or closing the store ends a follower.
func TestFollowEnds(t *testing.T) {
	_, st := newStore(t, 64<<20)
	a, b := mustCreate(t, st, 1<<20), mustCreate(t, st, 1<<20)
	follow := func(base segment.ID) chan error {
		errc := make(chan error, 1)
		go func() {
			_, err := st.Follow(context.Background(), io.Discard, base, segment.Position{})
			errc <- err
		}()
		return errc
	}
	ea, eb := follow(a.Base()), follow(b.Base())
	if err := st.Delete(a.Base()); err != nil {
		t.Fatal(err)
	}
	if err := <-ea; !errors.Is(err, segment.ErrNotFound) {
		t.Errorf("Follow of a deleted volume = %v, want ErrNotFound", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-eb; !errors.Is(err, segment.ErrClosed) {
		t.Errorf("Follow on a closed store = %v, want ErrClosed", err)
	}
}

// TestLocate finds versions by id: the head, an old entry, a snapshot;
// another volume's version is unavailable.
func TestLocate(t *testing.T) {
	_, st := newStore(t, 64<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	v, other := mustCreate(t, st, 1<<20), mustCreate(t, st, 1<<20)
	writeHistory(t, rng, v, 3)
	old := position(t, v)
	writeHistory(t, rng, v, 3)
	snap := position(t, v)
	mustBranch(t, st, snap.Version)
	writeHistory(t, rng, v, 3)
	for _, want := range []segment.Position{old, snap, position(t, v)} {
		if got, err := st.Locate(v.Base(), want.Version); err != nil || got != want {
			t.Errorf("Locate(%v) = %v, %v; want %v", want.Version, got, err, want)
		}
	}
	if _, err := st.Locate(other.Base(), old.Version); !errors.Is(err, segment.ErrVersionUnavailable) {
		t.Errorf("Locate of another volume's version = %v, want ErrVersionUnavailable", err)
	}
	if _, err := st.Locate(segment.RandomID(), old.Version); !errors.Is(err, segment.ErrNotFound) {
		t.Errorf("Locate in an unknown volume = %v, want ErrNotFound", err)
	}
}

// TestApplyLive follows a volume into another store through a pipe: each
// write on the source is applied on the replica while the stream stays open.
func TestApplyLive(t *testing.T) {
	_, src := newStore(t, 64<<20)
	_, dst := newStore(t, 64<<20)
	rng := rand.New(rand.NewPCG(5, 6))
	v := mustCreate(t, src, 1<<20)
	writeHistory(t, rng, v, 3)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, err := src.Follow(ctx, pw, v.Base(), segment.Position{})
		pw.CloseWithError(err)
	}()
	positions := make(chan segment.Position, 64)
	done := make(chan error, 1)
	go func() {
		_, err := dst.ApplyLive(pr, func(p segment.Position) { positions <- p })
		done <- err
	}()
	waitFor := func(want segment.Position) {
		t.Helper()
		timeout := time.After(time.Minute)
		for {
			select {
			case p := <-positions:
				if p == want {
					return
				}
			case err := <-done:
				t.Fatalf("ApplyLive ended early: %v", err)
			case <-timeout:
				t.Fatalf("replica did not reach %v within a minute", want)
			}
		}
	}
	waitFor(position(t, v))
	for range 3 {
		writeHistory(t, rng, v, 2)
		waitFor(position(t, v))
		sameVolume(t, src, dst, v.Base())
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("ApplyLive after the follower stopped = %v", err)
	}
}

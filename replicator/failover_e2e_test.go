//go:build e2e

package replicator_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloudfs/testenv"
	"cloudfs/testenv/cluster"
)

// TestFailover: three hosts, each an embedded etcd member, a quorum volume
// on all three. For several rounds, under a write load that keeps a mirror
// of every acknowledged write (its seed logged), the current primary is
// killed with SIGKILL: within the lease time and a little more another
// host is the primary, in a higher epoch, and every write acknowledged so
// far reads back from it; writes go on through it. The killed host,
// restarted, becomes a replica of the new history (its unacknowledged tail,
// if any, kept as a fork) and the heads agree before the next round.
func TestFailover(t *testing.T) {
	testenv.RequireRoot(t)
	args := func(h *cluster.Host) []string { return append(embeddedMembers(h), "--lease-ttl", "3s") }
	c := cluster.New(t, cluster.Config{Hosts: 3, Binary: testenv.CloudfsBinary(t), Args: args})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	for _, h := range c.Hosts() {
		waitFor(t, h.Name()+" sees 3 hosts", func() bool { hs, err := h.Client().Hosts(ctx); return err == nil && len(hs) == 3 })
	}
	p := c.Host(0)
	vi, err := p.Client().CreateReplicated(ctx, 16<<20, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("CLOUDFS_FAILOVER_SEED"), 10, 64); err == nil {
		seed = s // replay a run
	}
	t.Logf("seed %d (CLOUDFS_FAILOVER_SEED replays it)", seed)
	m := newMirror(vi.ID, seed, 3)
	epoch := uint64(0)
	if in, err := p.Client().LocalInfo(ctx, vi.ID); err == nil {
		epoch = in.Epoch
	}
	for round := range 3 {
		killAt := 50 + m.rng.IntN(150) // the same generator: a seed replays the kill points too
		done := make(chan struct{})
		go func() { // load, then SIGKILL of the primary in the middle of it
			defer close(done)
			for i := 0; i < 400; i++ {
				if err := m.write(ctx, p); err != nil {
					return // the primary died
				}
				if i == killAt {
					go func() { _ = p.Kill() }()
				}
			}
		}()
		<-done
		killed := time.Now()
		var np *cluster.Host
		waitFor(t, "a new primary", func() bool {
			for _, h := range c.Hosts() {
				if h == p {
					continue
				}
				if in, err := h.Client().LocalInfo(ctx, vi.ID); err == nil && in.Role == "primary" {
					np = h
					return true
				}
			}
			return false
		})
		in, err := np.Client().LocalInfo(ctx, vi.ID)
		t.Logf("round %d: %s killed after %d writes; %s is the primary %v later (lease 3 s), epoch %d", round, p.Name(),
			killAt, np.Name(), time.Since(killed).Round(10*time.Millisecond), in.Epoch)
		if err != nil || in.Epoch <= epoch {
			t.Errorf("round %d: new primary's epoch %d (%v), was %d: want a higher epoch", round, in.Epoch, err, epoch)
		}
		epoch = in.Epoch
		for _, l := range strings.Split(np.Logs(), "\n") {
			if strings.Contains(l, "took over a volume") && strings.Contains(l, fmt.Sprintf("epoch=%d ", epoch)) {
				t.Logf("round %d: %s", round, l) // when, and how long the election and the switch took
			}
		}
		for _, h := range c.Hosts() { // the third host was told, not left to its catalog
			if h != p && h != np && !strings.Contains(h.Logs(), fmt.Sprintf("new primary announced itself\" component=replication volume=%s epoch=%d ", vi.ID, epoch)) {
				t.Errorf("round %d: %s was not told of the new primary (epoch %d) by it", round, h.Name(), epoch)
			}
		}
		m.verify(ctx, t, fmt.Sprintf("round %d, after the failover", round), np)
		for range 30 {
			if err := m.write(ctx, np); err != nil {
				t.Fatalf("round %d: write through the new primary: %v", round, err)
			}
		}
		// the killed host comes back as a replica
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		old := p
		waitFor(t, "the heads agree", func() bool {
			want, err1 := np.Client().LocalInfo(ctx, vi.ID)
			got, err2 := old.Client().LocalInfo(ctx, vi.ID)
			return err1 == nil && err2 == nil && got.Version == want.Version && got.Role == "replica"
		})
		full, _ := old.Client().Info(ctx, vi.ID)
		t.Logf("round %d: %s back as a replica; forks kept there: %d", round, old.Name(), len(full.Forks))
		for _, h := range c.Hosts() {
			m.verify(ctx, t, fmt.Sprintf("round %d, after the old primary's return", round), h)
		}
		p = np
	}
}

// TestOldPrimaryCannotAcknowledge: the primary is stopped (SIGSTOP) or cut
// off from the two other hosts; they elect a new primary; writes go on
// there. Then the old primary is resumed or healed and written to at once:
// every write it acknowledges (redirected to the new primary, once it has
// seen the catalog) reads back from the new primary, i.e. it acknowledges
// nothing of its own; it ends a replica of the new history, with whatever
// it logged alone kept as a fork.
func TestOldPrimaryCannotAcknowledge(t *testing.T) {
	testenv.RequireRoot(t)
	for _, how := range []string{"pause", "partition"} {
		t.Run(how, func(t *testing.T) {
			args := func(h *cluster.Host) []string { return append(embeddedMembers(h), "--lease-ttl", "3s") }
			c := cluster.New(t, cluster.Config{Hosts: 3, Binary: testenv.CloudfsBinary(t), Args: args})
			if how == "partition" {
				c.RequireCut(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			for _, h := range c.Hosts() {
				waitFor(t, h.Name()+" sees 3 hosts", func() bool { hs, err := h.Client().Hosts(ctx); return err == nil && len(hs) == 3 })
			}
			p := c.Host(0)
			vi, err := p.Client().CreateReplicated(ctx, 16<<20, 3, "")
			if err != nil {
				t.Fatal(err)
			}
			m := newMirror(vi.ID, 4, 4)
			for range 50 {
				if err := m.write(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			switch how {
			case "pause":
				err = p.Pause()
			case "partition":
				err = p.Cut()
			}
			if err != nil {
				t.Fatal(err)
			}
			var np *cluster.Host
			waitFor(t, "a new primary", func() bool {
				for _, h := range c.Hosts()[1:] {
					if in, err := h.Client().LocalInfo(ctx, vi.ID); err == nil && in.Role == "primary" {
						np = h
						return true
					}
				}
				return false
			})
			for range 50 {
				if err := m.write(ctx, np); err != nil {
					t.Fatalf("write through the new primary: %v", err)
				}
			}
			switch how {
			case "pause":
				err = p.Resume()
			case "partition":
				err = p.Heal()
			}
			if err != nil {
				t.Fatal(err)
			}
			okOld, failedOld := 0, 0
			for range 30 { // straight away: the old primary has not caught up with the catalog yet
				if err := m.write(ctx, p); err != nil {
					failedOld++
				} else {
					okOld++
				}
			}
			t.Logf("%s: the old primary answered %d writes ok and %d with an error", how, okOld, failedOld)
			m.verify(ctx, t, how+": on the new primary (else the old one acknowledged it alone)", np)
			waitFor(t, "the old primary follows the new", func() bool {
				want, err1 := np.Client().LocalInfo(ctx, vi.ID)
				got, err2 := p.Client().LocalInfo(ctx, vi.ID)
				return err1 == nil && err2 == nil && got.Version == want.Version && got.Role == "replica"
			})
			full, _ := p.Client().Info(ctx, vi.ID)
			t.Logf("%s: forks kept on the old primary: %v", how, full.Forks)
			heads, err := p.CLI("heads", "--replicas")
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range full.Forks {
				if f.Host == "" || !strings.Contains(heads, "fork "+f.Branch+" on "+f.Host) || !strings.Contains(heads, f.Branch+":") {
					t.Errorf("heads --replicas on the old primary does not show the fork %s:\n%s", f.Branch, heads)
				}
			}
			// every host reports the forks, whichever keeps them
			if seen, err := np.Client().Info(ctx, vi.ID); err != nil || !slices.Equal(seen.Forks, full.Forks) {
				t.Errorf("the new primary reports forks %v (%v), the old one %v", seen.Forks, err, full.Forks)
			}
		})
	}
}

// TestHandover: a planned hand-over under a write load through the old
// primary: `cloudfs acquire` on a replica makes it the primary in a new
// epoch; writes keep going (the held ones and the later ones reach the new
// primary through the old one's redirect), none fails, every acknowledged
// write reads back from the new primary, and the longest write during the
// hand-over says how long IO paused.
func TestHandover(t *testing.T) {
	testenv.RequireRoot(t)
	c := cluster.New(t, cluster.Config{Hosts: 3, Binary: testenv.CloudfsBinary(t), Args: embeddedMembers})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, h := range c.Hosts() {
		waitFor(t, h.Name()+" sees 3 hosts", func() bool { hs, err := h.Client().Hosts(ctx); return err == nil && len(hs) == 3 })
	}
	p, q := c.Host(0), c.Host(1)
	vi, err := p.Client().CreateReplicated(ctx, 16<<20, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	in0, _ := p.Client().Info(ctx, vi.ID)
	m := newMirror(vi.ID, 5, 5)
	var failed []error
	var longest time.Duration
	stop := make(chan struct{})
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			if err := m.write(ctx, p); err != nil {
				failed = append(failed, err)
				continue
			}
			longest = max(longest, time.Since(start))
		}
	}()
	time.Sleep(500 * time.Millisecond)
	out, err := q.CLI("acquire", vi.ID)
	if err != nil {
		t.Fatalf("acquire on %s: %v", q.Name(), err)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-loaded
	t.Logf("acquire: %s; the longest write under load took %v", out, longest.Round(100*time.Microsecond))
	if len(failed) > 0 {
		t.Errorf("%d writes failed during the hand-over, first: %v", len(failed), failed[0])
	}
	in, err := q.Client().LocalInfo(ctx, vi.ID)
	if err != nil || in.Role != "primary" || in.Epoch <= in0.Epoch {
		t.Fatalf("%s after acquire: role %q epoch %d (was %d), %v", q.Name(), in.Role, in.Epoch, in0.Epoch, err)
	}
	if old, _ := p.Client().LocalInfo(ctx, vi.ID); old.Role != "replica" {
		t.Errorf("the old primary's role is %q, want replica", old.Role)
	}
	m.verify(ctx, t, "after the hand-over, on the new primary", q)
	waitFor(t, "the old primary follows", func() bool {
		a, err1 := q.Client().LocalInfo(ctx, vi.ID)
		b, err2 := p.Client().LocalInfo(ctx, vi.ID)
		return err1 == nil && err2 == nil && a.Version == b.Version
	})
}

// TestRereplicateAndForce: four hosts sharing host0's etcd. A replica's
// host gone longer than --rereplicate-after is replaced by the spare host,
// which copies the volume and follows. Then, with the primary and another
// host gone, no quorum is left: no failover happens, until `cloudfs force`
// on the last host makes it the primary (the volume becomes sync), and
// writes go on.
func TestRereplicateAndForce(t *testing.T) {
	testenv.RequireRoot(t)
	args := func(h *cluster.Host) []string {
		return append(etcdOnHost0(h), "--lease-ttl", "3s", "--rereplicate-after", "2s")
	}
	c := cluster.New(t, cluster.Config{Hosts: 4, Binary: testenv.CloudfsBinary(t), Args: args})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	byName := map[string]*cluster.Host{}
	for i, h := range c.Hosts() {
		byName[fmt.Sprintf("host%d", i)] = h
		waitFor(t, h.Name()+" sees 4 hosts", func() bool { hs, err := h.Client().Hosts(ctx); return err == nil && len(hs) == 4 })
	}
	// the volume's primary is host1, so that host0 (etcd) can outlive it
	p := c.Host(1)
	vi, err := p.Client().CreateReplicated(ctx, 16<<20, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Repeat([]byte{1}, 4096)
	for i := range 30 {
		if err := p.Client().WriteAt(ctx, vi.ID, b, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	// a replica other than host0 goes; the spare takes its place
	var gone, spare string
	for _, h := range []string{"host0", "host2", "host3"} {
		switch {
		case !slices.Contains(vi.Hosts, h):
			spare = h
		case h != "host0":
			gone = h
		}
	}
	if err := byName[gone].Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, spare+" replaces "+gone, func() bool {
		in, err := p.Client().Info(ctx, vi.ID)
		if err != nil {
			return false
		}
		hosts := ""
		for _, r := range in.Replicas {
			hosts += r.Host + " "
		}
		return strings.Contains(hosts, spare) && !strings.Contains(hosts, gone)
	})
	for i := range 10 {
		if err := p.Client().WriteAt(ctx, vi.ID, b, int64(100+i)*4096); err != nil {
			t.Fatalf("write after the re-replication: %v", err)
		}
	}
	waitFor(t, spare+" has the volume", func() bool {
		want, err1 := p.Client().LocalInfo(ctx, vi.ID)
		got, err2 := byName[spare].Client().LocalInfo(ctx, vi.ID)
		return err1 == nil && err2 == nil && got.Version == want.Version
	})
	// now the primary and the spare go: host0 alone is left, no quorum
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := byName[spare].Kill(); err != nil {
		t.Fatal(err)
	}
	h0 := c.Host(0)
	time.Sleep(6 * time.Second) // two leases: a failover would have happened
	if in, err := h0.Client().LocalInfo(ctx, vi.ID); err != nil || in.Role != "replica" {
		t.Fatalf("host0 with no quorum: role %q, %v; want it to stay a replica", in.Role, err)
	}
	if _, err := h0.CLI("force", vi.ID); err == nil {
		t.Error("force without --yes went through")
	}
	out, err := h0.CLI("force", vi.ID, "--yes")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("force: %s", out)
	in, err := h0.Client().Info(ctx, vi.ID)
	if err != nil || in.Role != "primary" || in.Mode != "sync" {
		t.Fatalf("after force: role %q mode %q, %v; want primary, sync", in.Role, in.Mode, err)
	}
	for i := range 10 {
		if err := h0.Client().WriteAt(ctx, vi.ID, b, int64(200+i)*4096); err != nil {
			t.Fatalf("write after force: %v", err)
		}
	}
	// set-mode: back to quorum (with 1 of 3 hosts a write then fails), and
	// to sync again
	if _, err := h0.CLI("set-mode", vi.ID, "majority"); err == nil {
		t.Error("set-mode to an unknown mode went through")
	}
	if out, err := h0.CLI("set-mode", vi.ID, "quorum"); err != nil || !strings.Contains(out, "mode quorum (was sync)") {
		t.Fatalf("set-mode quorum: %q, %v", out, err)
	}
	waitFor(t, "the primary writes by quorum", func() bool {
		return h0.Client().WriteAt(ctx, vi.ID, b, 300*4096) != nil // no majority live
	})
	if _, err := h0.CLI("set-mode", vi.ID, "sync"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the primary writes by sync again", func() bool {
		return h0.Client().WriteAt(ctx, vi.ID, b, 301*4096) == nil
	})
}

package cluster_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"cloudfs/testenv"
	"cloudfs/testenv/cluster"
)

// TestLoopback runs the fallback without namespaces, which needs neither
// root nor ip: hosts on 127.77.n.x that reach each other, kill, start,
// pause and resume; Cut is refused and RequireCut skips.
func TestLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts daemons")
	}
	c := cluster.New(t, cluster.Config{Hosts: 2, Binary: testenv.CloudfsBinary(t), Loopback: true})
	if c.Namespaced() || c.Subnet().Addr().As4()[0] != 127 {
		t.Fatalf("Loopback: namespaced %v, subnet %v", c.Namespaced(), c.Subnet())
	}
	h0, h1 := c.Host(0), c.Host(1)
	if err := headsWithin(h1.ClientFrom(h0), time.Minute); err != nil {
		t.Fatal(err)
	}
	id, err := h0.CLI("newdisk", "1", "--size", "16M")
	if err != nil {
		t.Fatal(err)
	}
	if err := h0.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := h0.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := h0.Client().Info(ctx, id); err != nil {
		t.Errorf("volume %s after kill and start: %v", id, err)
	}
	if err := h1.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := headsWithin(h1.Client(), time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("heads of a paused host: %v, want a timeout", err)
	}
	if err := h1.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := headsWithin(h1.Client(), time.Minute); err != nil {
		t.Errorf("heads after Resume: %v", err)
	}
	if err := h1.Cut(); !errors.Is(err, cluster.ErrCutUnsupported) {
		t.Errorf("Cut without namespaces = %v, want ErrCutUnsupported", err)
	}
	var sub *testing.T
	t.Run("needs-cut", func(t *testing.T) { sub = t; c.RequireCut(t) })
	if !sub.Skipped() {
		t.Error("RequireCut did not skip without namespaces")
	}
}

// headsWithin asks cl for heads within d.
func headsWithin(cl interface {
	Heads(context.Context) ([]string, error)
}, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := cl.Heads(ctx)
	return err
}

// TestFallback: without root, New falls back to loopback by itself.
func TestFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts daemons")
	}
	if os.Geteuid() == 0 {
		t.Skip("root has namespaces; TestLoopback forces the fallback")
	}
	c := cluster.New(t, cluster.Config{Hosts: 1, Binary: testenv.CloudfsBinary(t)})
	if c.Namespaced() {
		t.Fatal("namespaces without root")
	}
	if err := headsWithin(c.Host(0).Client(), time.Minute); err != nil {
		t.Error(err)
	}
}

package cluster

import (
	"context"
	"fmt"
	"os/exec"
)

// cutChain is the iptables chain, in each host's namespace, that holds the
// cut rules. INPUT and OUTPUT jump to it for everything but loopback, so a
// cut host still reaches itself; Heal flushes it.
const cutChain = "CFS-CUT"

// iptablesWait is iptables' -w: seconds to wait for the xtables lock, which
// the legacy backend shares between all namespaces.
const iptablesWait = "10"

// cutPossible returns why iptables cannot be used, or nil.
func cutPossible() error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return fmt.Errorf("%w: no iptables (Debian package iptables): %w", ErrCutUnsupported, err)
	}
	return nil
}

// Cut drops every packet between the host and any other address, in both
// directions, until Heal: connections in progress hang, new ones time out
// (DROP, not REJECT, as a pulled cable or a partition would). The host
// still reaches itself over loopback, so its CLI keeps working. It returns
// ErrCutUnsupported without namespaces or iptables.
func (h *Host) Cut() error {
	return h.cutRules([][]string{{"-A", cutChain, "-j", "DROP"}})
}

// CutFrom drops every packet between h and other, both ways, until Heal or
// HealFrom; the rest of h's links stay up. Cutting h from other is the same
// as cutting other from h as far as packets go; the rules live in h's
// namespace.
func (h *Host) CutFrom(other *Host) error {
	ip := other.addr.Addr().String()
	return h.cutRules([][]string{
		{"-A", cutChain, "-s", ip, "-j", "DROP"},
		{"-A", cutChain, "-d", ip, "-j", "DROP"},
	})
}

// HealFrom removes the rules of CutFrom(other).
func (h *Host) HealFrom(other *Host) error {
	ip := other.addr.Addr().String()
	return h.cutRules([][]string{
		{"-D", cutChain, "-s", ip, "-j", "DROP"},
		{"-D", cutChain, "-d", ip, "-j", "DROP"},
	})
}

// Heal removes every cut rule of the host: Cut and every CutFrom.
func (h *Host) Heal() error {
	return h.cutRules([][]string{{"-F", cutChain}})
}

// cutRules creates the cut chain on first use, then applies rules.
func (h *Host) cutRules(rules [][]string) error {
	if h.c.canCut != nil {
		return h.c.canCut
	}
	h.cutMu.Lock()
	defer h.cutMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), h.c.cfg.Timeout)
	defer cancel()
	if err := h.ensureCutChain(ctx); err != nil {
		return err
	}
	for _, r := range rules {
		if err := h.iptables(ctx, r...); err != nil {
			return err
		}
	}
	h.c.dropIdle()
	return nil
}

// ensureCutChain creates the cut chain and its jumps unless they exist.
func (h *Host) ensureCutChain(ctx context.Context) error {
	if h.iptables(ctx, "-n", "-L", cutChain) == nil {
		return nil
	}
	for _, r := range [][]string{
		{"-N", cutChain},
		{"-I", "INPUT", "!", "-i", "lo", "-j", cutChain},
		{"-I", "OUTPUT", "!", "-o", "lo", "-j", cutChain},
	} {
		if err := h.iptables(ctx, r...); err != nil {
			return err
		}
	}
	return nil
}

// iptables runs iptables inside the host's namespace.
func (h *Host) iptables(ctx context.Context, args ...string) error {
	args = append([]string{"netns", "exec", h.ns, "iptables", "-w", iptablesWait}, args...)
	_, err := run(ctx, "ip", args...)
	if err != nil {
		return fmt.Errorf("host %d: %w", h.index, err)
	}
	return nil
}

package faultdev

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Op names a kind of call that faults count and act on.
type Op int

// The ops a Dev counts. Size, BlockSize, Close and Discard are not counted
// and never fail by injection.
const (
	OpRead  Op = iota + 1 // ReadAt
	OpWrite               // WriteAt
	OpSync                // Sync
)

// numOps sizes per-op arrays indexed by Op.
const numOps = int(OpSync) + 1

// String returns "read", "write" or "sync".
func (op Op) String() string {
	switch op {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpSync:
		return "sync"
	default:
		return fmt.Sprintf("Op(%d)", int(op))
	}
}

// sectorSize is the granularity of a torn write: the 512-byte sector disks
// write atomically.
const sectorSize = 512

// A Fault decides how calls misbehave. Make one with Nth, From, Torn or
// Latency and pass it to Wrap. A Fault holds state (such as a random
// generator) and belongs to one Dev.
type Fault struct {
	// decide returns the effect on call c. The Dev's mutex is held, so
	// decide may use unsynchronized state.
	decide func(c call) effect
}

// call describes one call to a Dev.
type call struct {
	op      Op
	n       int // 1-based number of this call among calls of op
	sectors int // number of 512-byte sectors a write carries
}

// effect is what the faults do to one call.
type effect struct {
	fail  bool          // return ErrInjected without doing the op
	keep  int           // for a write, tear it after keep sectors; -1: no tear
	delay time.Duration // sleep before the op
}

// none is the effect of a Fault that leaves a call alone.
var none = effect{keep: -1}

// Nth fails the nth call (1-based) of op with ErrInjected, without
// forwarding it to the wrapped device.
func Nth(op Op, n int) Fault {
	return failIf(func(c call) bool { return c.op == op && c.n == n })
}

// From fails the nth call (1-based) of op and every later call of op with
// ErrInjected, without forwarding them to the wrapped device.
func From(op Op, n int) Fault {
	return failIf(func(c call) bool { return c.op == op && c.n >= n })
}

// failIf returns a Fault that fails the calls pred selects.
func failIf(pred func(call) bool) Fault {
	return Fault{decide: func(c call) effect {
		if pred(c) {
			return effect{fail: true, keep: -1}
		}
		return none
	}}
}

// Torn tears the nth write (1-based): only its first keepSectors 512-byte
// sectors reach the wrapped device, and the write returns that many bytes
// and ErrInjected. keepSectors is capped at the write's length, so a large
// value lands the whole write but still reports failure, as when an
// acknowledgement is lost. keepSectors -1 picks a prefix shorter than the
// write at random, from a generator seeded with n so runs repeat. A write
// that is unaligned or out of range is not torn; it fails as usual.
func Torn(n int, keepSectors int) Fault {
	rng := rand.New(rand.NewPCG(uint64(n), 0))
	return Fault{decide: func(c call) effect {
		if c.op != OpWrite || c.n != n {
			return none
		}
		keep := keepSectors
		if keep < 0 {
			keep = rng.IntN(max(c.sectors, 1))
		}
		return effect{keep: min(keep, c.sectors)}
	}}
}

// Latency delays every counted call by a duration drawn uniformly from
// [0, max] with rng. The sleep uses package time, so tests may run it in a
// testing/synctest bubble. rng is used under the Dev's mutex, so the delays
// are a reproducible sequence for a given seed.
func Latency(rng *rand.Rand, max time.Duration) Fault {
	return Fault{decide: func(call) effect {
		e := none
		if max > 0 {
			e.delay = time.Duration(rng.Int64N(int64(max) + 1))
		}
		return e
	}}
}

package ublk

import "fmt"

// tagState is where one tag of a queue stands in the ublk protocol:
//
//	idle ──FETCH_REQ──▶ fetching ──CQE res 0──▶ serving ──COMMIT_AND_FETCH_REQ──▶ fetching
//	                        │
//	                        └──CQE res < 0 (UBLK_IO_RES_ABORT at STOP_DEV, ring gone)──▶ dead
//
// A fetching tag's command sits in the kernel until a request arrives for
// it; a serving tag belongs to the server (and, through it, to the backend)
// until its result is committed. A dead tag is never used again.
type tagState uint8

const (
	tagIdle tagState = iota
	tagFetching
	tagServing
	tagDead
)

var tagStateNames = [...]string{"idle", "fetching", "serving", "dead"}

func (s tagState) String() string { return tagStateNames[s] }

// tagTable holds the state of every tag of one queue. It is owned by the
// queue's thread; it does no IO.
type tagTable struct {
	state   []tagState
	serving int // tags in tagServing
	dead    int // tags in tagDead
}

func newTagTable(depth int) *tagTable { return &tagTable{state: make([]tagState, depth)} }

// transition moves tag from one state to another, or fails without a
// change if the tag does not exist or is not in state from.
func (t *tagTable) transition(tag int, from, to tagState) error {
	if tag < 0 || tag >= len(t.state) {
		return fmt.Errorf("tag %d out of range [0, %d)", tag, len(t.state))
	}
	if t.state[tag] != from {
		return fmt.Errorf("tag %d is %v, not %v", tag, t.state[tag], from)
	}
	t.state[tag] = to
	t.serving += t.count(to, tagServing) - t.count(from, tagServing)
	t.dead += t.count(to, tagDead) - t.count(from, tagDead)
	return nil
}

func (t *tagTable) count(s, want tagState) int {
	if s == want {
		return 1
	}
	return 0
}

// fetch records that FETCH_REQ was queued for an idle tag.
func (t *tagTable) fetch(tag int) error { return t.transition(tag, tagIdle, tagFetching) }

// arrived records the completion of a fetching tag's command: res 0 (a
// request to serve) makes it serving and returns true; any other result
// kills it.
func (t *tagTable) arrived(tag int, res int32) (bool, error) {
	if res == UBLK_IO_RES_OK {
		return true, t.transition(tag, tagFetching, tagServing)
	}
	return false, t.transition(tag, tagFetching, tagDead)
}

// commit records that COMMIT_AND_FETCH_REQ was queued for a serving tag.
func (t *tagTable) commit(tag int) error { return t.transition(tag, tagServing, tagFetching) }

// inService is the number of tags whose request the server holds.
func (t *tagTable) inService() int { return t.serving }

// allDead tells whether no tag will see a request again.
func (t *tagTable) allDead() bool { return t.dead == len(t.state) }

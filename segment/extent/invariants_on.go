//go:build invariants

package extent

// invariants enables the consistency checks that run after every mutation.
// Tests enable it with -tags invariants.
const invariants = true

//go:build !invariants

package extent

// invariants is off in production builds; see invariants_on.go.
const invariants = false

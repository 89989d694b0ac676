// Package daemon is the wiring of `cloudfs serve`: it opens (or, on the
// embedded default's first start, creates) the host's store, holds the
// store's lock, loads the cluster secret, and serves the HTTP API
// (replicator) and /metrics on one listener until its context ends; then it
// shuts down in order: HTTP (followers are cut), store (flush, checkpoint).
// Host is the one place that knows what a volume's lifecycle means on this
// host: its ublk device (devices.go, backend.go: local IO through this
// host's replication, or forwarded to the primary), its replication
// (replication.go: placement, followers, acks, by the catalog), its
// ownership (ownership.go: epochs, failover, forks, re-replication, force;
// handover.go: acquire) and the POSIX shim (shim.go).
//
// # Rules
//
// Only cmd/cloudfs imports it. It builds the registry and the root logger's
// children; the packages it wires take them through their Configs.
package daemon

// Package daemon is the wiring of `cloudfs serve`: it opens (or, on the
// embedded default's first start, creates) the host's store, holds the
// store's lock, loads the cluster secret, and serves the HTTP API
// (replicator) and /metrics on one listener until its context ends; then it
// shuts down in order: HTTP (followers are cut), store (flush, checkpoint).
// The ublk devices and the cluster plug in here (issues 4 and 5): Host is
// the one place that knows what a volume's lifecycle means on this host.
//
// # Rules
//
// Only cmd/cloudfs imports it. It builds the registry and the root logger's
// children; the packages it wires take them through their Configs.
package daemon

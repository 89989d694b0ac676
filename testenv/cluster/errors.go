package cluster

import "errors"

var (
	// ErrRunning: Start on a host whose daemon runs.
	ErrRunning = errors.New("cluster: host is running")
	// ErrNotRunning: Stop, Kill, Pause or Resume on a host whose daemon
	// does not run.
	ErrNotRunning = errors.New("cluster: host is not running")
	// ErrCutUnsupported: Cut, CutFrom, Heal or HealFrom on a cluster
	// without network namespaces (the loopback fallback) or without
	// iptables. Tests that cut call Cluster.RequireCut first, which skips.
	ErrCutUnsupported = errors.New("cluster: cutting links needs network namespaces and iptables")
)

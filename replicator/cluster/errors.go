package cluster

import "errors"

var (
	// ErrHostIDInUse: another live process has joined with the same host id.
	ErrHostIDInUse = errors.New("cluster: host id in use by another live host")
	// ErrNotReady: the embedded etcd did not become ready in time.
	ErrNotReady = errors.New("cluster: embedded etcd not ready")
)

package cluster

import "errors"

var (
	// ErrHostIDInUse: another live process has joined with the same host id.
	ErrHostIDInUse = errors.New("cluster: host id in use by another live host")
	// ErrNotReady: the embedded etcd did not become ready in time.
	ErrNotReady = errors.New("cluster: embedded etcd not ready")
	// ErrInvalidConfig: an embedded member's config or peer list cannot
	// work (missing name, bad URL, this member not among the peers, a name
	// or peer URL given twice); nothing was started.
	ErrInvalidConfig = errors.New("cluster: invalid embedded etcd config")
	// ErrVolumeExists: the catalog already has a volume with that id.
	ErrVolumeExists = errors.New("cluster: volume already in the catalog")
	// ErrVolumeNotFound: the catalog has no volume with that id.
	ErrVolumeNotFound = errors.New("cluster: volume not in the catalog")
	// ErrConflict: a catalog entry changed under every attempt of a
	// compare-and-swap; the change was not made.
	ErrConflict = errors.New("cluster: catalog entry kept changing")
	// ErrClosed: the Catalog was closed.
	ErrClosed = errors.New("cluster: catalog closed")
)

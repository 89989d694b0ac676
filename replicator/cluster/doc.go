// Package cluster is how the hosts of a cloudfs cluster find each other:
// etcd, embedded in the daemon for one host (or a few), external for large
// deployments, and host membership with leases. A host joins by putting
// /cloudfs/v1/hosts/<host id> under a lease it keeps alive; when the host
// dies, the lease expires and the key goes, so the live hosts are exactly
// the keys there.
//
// The volume catalog (replicas, primary, epoch, mode) and ownership by
// compare-and-swap come next, with replication (issue 5) and failover
// (issue 6), on the same client.
//
// # Rules
//
// cluster imports the etcd client and server packages and the standard
// library, nothing of cloudfs: the replicator and the daemon use it, not the
// other way round. Every call that talks to etcd takes a context and is
// bounded. etcd's own logs go to a file in its data directory, not to the
// daemon's stderr.
package cluster

// Package cluster is how the hosts of a cloudfs cluster coordinate through
// etcd (DESIGN.md §5): the etcd member embedded in the daemon, host
// membership with leases, the volume catalog with ownership by
// compare-and-swap, and a watched local copy of both for the daemon.
//
// # etcd
//
// StartEmbedded runs an etcd member in the daemon's data directory: alone
// (no set-up), or one of a few hosts that each run a member, given the same
// peer list (EmbedConfig.Peers, from "name=http://ip:2380" flags through
// ParsePeers). A new multi-member cluster serves once a majority of its
// members has started; a member restarted from its directory rejoins and
// catches up. Large deployments skip it and point their clients at an
// external etcd. The directory holds etcd's own layout (member/wal,
// member/snap) and etcd.log.
//
// # Keys
//
//	/cloudfs/v1/hosts/<host id>     Host, JSON, under the host's lease
//	/cloudfs/v1/volumes/<volume id> Volume, JSON
//
// A host joins (Join) by putting its key under a lease it keeps alive;
// when the host dies, the lease expires and the key goes, so the live hosts
// are exactly the keys there.
//
// A volume's entry is created by PutVolume and changed only by
// UpdateVolume, a compare-and-swap on the entry's mod revision. A change of
// the primary is an ownership change: its revision is the volume's new
// epoch (Volume.Epoch), which only grows, so a primary that lost ownership
// while paused is recognised by its older epoch.
//
// # Following the catalog
//
// A Catalog loads both prefixes at one revision, then follows them by an
// etcd watch into an in-memory go-memdb table, so the daemon reads the
// catalog without asking etcd and learns of each change at once:
//
//	cat, err := cluster.NewCatalog(ctx, client, logger)
//	...
//	defer cat.Close()
//	for {
//		ch := cat.Changed()
//		reconcile(cat.VolumesOf(self), cat.Hosts())
//		select {
//		case <-ch:
//		case <-ctx.Done():
//			return
//		}
//	}
//
// A watch that ends resumes after the last revision applied; if etcd has
// compacted that revision meanwhile, the Catalog reloads everything.
//
// # Rules
//
// cluster imports the etcd client and server packages, go-memdb and the
// standard library, nothing of cloudfs: the replicator and the daemon use
// it, not the other way round. Every call that talks to etcd takes a
// context and is bounded; the Catalog's background watch runs until Close.
// etcd's own logs go to a file in its data directory, not to the daemon's
// stderr.
package cluster

// Package replicator keeps volumes reachable from other hosts: the HTTP API
// of a host (an http.Handler, served on port 8090 by the daemon), its Go
// client, the stream protocol that carries a volume's entries between
// stores, and Follow, which keeps a local replica of a volume up to date
// with another host (catch-up by delta, then live, reconnecting by itself,
// acknowledging what it logged to the primary). Acks is the primary's side:
// it holds each write until the replicas the volume's mode (sync, quorum,
// async) waits for have it, and holds a volume's writes for a planned
// hand-over; Replicated is a volume written through it. Block requests to a
// host that is not a volume's primary are redirected there (Config.Route).
// replicator/cluster holds the etcd side: embedded members, host
// membership with leases, and the watched catalog of volumes with their
// primary, replicas, mode and epoch. The daemon (cmd/cloudfs/daemon)
// decides placement, failover and forks with these parts.
//
// # The API
//
// docs/API.md documents every endpoint with examples. In short:
//
//	GET    /heads                          one "base:version" line per volume (open)
//	GET    /healthz                        "ok" (open)
//	GET    /v1/hosts                       the live hosts of the cluster, JSON
//	GET    /v1/volumes                     every volume, JSON
//	POST   /v1/volumes?size=N              create a volume
//	GET    /v1/volumes/{id}                one volume, JSON
//	DELETE /v1/volumes/{id}                delete it
//	POST   /v1/versions/{version}/branch   a writable branch of any version
//	GET    /v1/volumes/{id}/blocks         read, standard Range semantics
//	PUT    /v1/volumes/{id}/blocks         write the Content-Range "bytes a-b/*"
//	POST   /v1/volumes/{id}/discard        zero the Range "bytes=a-b"
//	POST   /v1/volumes/{id}/flush          make acknowledged writes durable
//	GET    /v1/volumes/{id}/stream         entries after from=<version>; follow=1 stays live
//	POST   /v1/volumes/{id}/ack            a replica's acknowledgement, to the primary
//	POST   /v1/volumes/{id}/acquire        become the primary (planned hand-over)
//	POST   /v1/volumes/{id}/handover       the primary hands the volume over
//	POST   /v1/volumes/{id}/force          become the primary without a failover's checks
//	PUT    /v1/log                         apply a stream (verified first)
//
// Everything but /heads and /healthz needs the cluster secret as
// "Authorization: Bearer <secret>" (LoadOrCreateSecret keeps it in a file);
// without it the answer is 401 and nothing changes.
//
// # Rules
//
// replicator imports segment (and packages beneath it), never ublk, posixshim
// or cmd; it sees the store only through the Store interface it declares, so
// the daemon can add what a volume's lifecycle means on its host (a block
// device). It must never apply an entry whose hash, link or epoch does not
// verify, never accept a request from an unauthenticated host, and never
// discard a fork silently. Errors become HTTP status codes in one place
// (statusOf); every error answer is a one-line text/plain reason. Request
// bodies are bounded (MaxBlockBytes, MaxLogBytes) and cut when they stall
// (IdleTimeout). deps_test.go at the repository root checks the imports.
package replicator

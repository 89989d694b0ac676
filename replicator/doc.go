// Package replicator will keep every volume on several hosts: the HTTP API
// server on port 8090 (an http.Handler) and its client, the stream protocol
// (catch-up from any version, then live replication), replica placement,
// cluster membership and volume ownership in etcd, the epoch that fences an
// old primary, remote reads and writes with redirects, and failover.
//
// # Status
//
// There is no code here yet. The HTTP server and the stream protocol arrive
// with issue 3, cluster coordination, replication modes and failover with
// issue 5.
//
// # Rules
//
// replicator imports segment (and packages beneath it), never ublk, posixshim
// or cmd; it sees the store only through a small interface that it declares
// itself. It must never apply an entry whose hash, link or epoch does not
// verify, never accept a request from an unauthenticated host, and never
// discard a fork silently. Errors become HTTP status codes in one place.
// deps_test.go at the repository root checks the imports.
package replicator

package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
)

// flagRE matches a flag in the usage of `cloudfs serve --help`.
var flagRE = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`)

// serveFlags returns the flags `serve` of binary knows. The daemon grows
// flags from step to step; the cluster passes the ones it needs only when
// the binary under test has them.
func serveFlags(ctx context.Context, binary string) (map[string]bool, error) {
	out, err := run(ctx, binary, "serve", "--help")
	if err != nil {
		return nil, err
	}
	flags := map[string]bool{}
	for _, m := range flagRE.FindAllStringSubmatch(out, -1) {
		flags[m[1]] = true
	}
	if !flags["listen"] || !flags["data-dir"] {
		return nil, fmt.Errorf("%s serve --help lists no --listen or --data-dir:\n%s", binary, out)
	}
	return flags, nil
}

// etcdClientPort and etcdPeerPort are etcd's usual ports, which the
// embedded member uses by default.
const (
	etcdClientPort = 2379
	etcdPeerPort   = 2380
)

// defaultArgs returns the serve flags the cluster adds for h, before
// Config.Args (whose flags win, being later):
//   - --host-id host<index>: namespaces share the machine's hostname, the
//     daemon's default host id;
//   - in the loopback fallback, --etcd-client-url and --etcd-peer-url on the
//     host's own address: the default 127.0.0.1:2379 and :2380 would
//     collide between hosts, whereas namespaces each have their own.
func (h *Host) defaultArgs() []string {
	var args []string
	if h.c.flags["host-id"] {
		args = append(args, "--host-id", fmt.Sprintf("host%d", h.index))
	}
	if h.ns == "" && h.c.flags["etcd-client-url"] && h.c.flags["etcd-peer-url"] {
		a := h.addr.Addr()
		args = append(args,
			"--etcd-client-url", "http://"+netip.AddrPortFrom(a, etcdClientPort).String(),
			"--etcd-peer-url", "http://"+netip.AddrPortFrom(a, etcdPeerPort).String())
	}
	return args
}

package cluster

import (
	"context"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// NewCatalogWithHook is NewCatalog with beforeWatch called before each
// watch starts, with the revision it starts after.
func NewCatalogWithHook(ctx context.Context, c *clientv3.Client, log *slog.Logger, beforeWatch func(rev int64)) (*Catalog, error) {
	return newCatalog(ctx, c, log, beforeWatch)
}

// BreakWatch ends the Catalog's current watch, as a lost connection would.
func (cat *Catalog) BreakWatch() {
	cat.mu.Lock()
	defer cat.mu.Unlock()
	if cat.watchCancel != nil {
		cat.watchCancel()
	}
}

// Reloads returns how many times the Catalog reloaded after its first load.
func (cat *Catalog) Reloads() int {
	cat.mu.Lock()
	defer cat.mu.Unlock()
	return cat.reloads
}

package segment

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// The catalog (the "version index") records which volumes and snapshots exist
// and how they are related, in go-memdb: indexed, transactional, and safe to
// read while the writer changes it. Entries are immutable descriptors; a change
// inserts a new descriptor. The mutable hot state of a volume (head, lsn,
// extent map) lives in the *volume the descriptor points to, under Store.mu.

// volEntry describes one volume.
type volEntry struct {
	Base   string // hex base id (primary key)
	Parent string // hex version id of the snapshot reads fall through to, "" for none
	V      *volume
}

// snapEntry describes one snapshot: the frozen extent map of a volume at the
// version a branch was taken of.
type snapEntry struct {
	Version string // hex version id (primary key)
	Owner   string // hex base id of the volume whose map it was
	Parent  string // hex version id of the snapshot below it, "" for none
	S       *snapshot
}

const (
	tabVolume   = "volume"
	tabSnapshot = "snapshot"
)

var catalogSchema = &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
	tabVolume: {Name: tabVolume, Indexes: map[string]*memdb.IndexSchema{
		"id":     {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Base"}},
		"parent": {Name: "parent", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "Parent"}},
	}},
	tabSnapshot: {Name: tabSnapshot, Indexes: map[string]*memdb.IndexSchema{
		"id":     {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Version"}},
		"owner":  {Name: "owner", Indexer: &memdb.StringFieldIndex{Field: "Owner"}},
		"parent": {Name: "parent", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "Parent"}},
	}},
}}

type catalog struct{ db *memdb.MemDB }

func newCatalog() *catalog {
	db, err := memdb.NewMemDB(catalogSchema)
	if err != nil {
		panic(fmt.Sprintf("segment: catalog schema: %v", err)) // a static schema: a bug if it fails
	}
	return &catalog{db: db}
}

func hexOrEmpty(s *snapshot) string {
	if s == nil {
		return ""
	}
	return s.version.String()
}

// putVolume inserts or replaces v's descriptor (after a change of its parent).
func (c *catalog) putVolume(v *volume) {
	txn := c.db.Txn(true)
	must(txn.Insert(tabVolume, &volEntry{Base: v.base.String(), Parent: hexOrEmpty(v.parent), V: v}))
	txn.Commit()
}

func (c *catalog) deleteVolume(base ID) {
	txn := c.db.Txn(true)
	_, err := txn.DeleteAll(tabVolume, "id", base.String())
	must(err)
	txn.Commit()
}

func (c *catalog) putSnapshot(s *snapshot) {
	txn := c.db.Txn(true)
	must(txn.Insert(tabSnapshot, &snapEntry{Version: s.version.String(), Owner: s.owner.String(), Parent: hexOrEmpty(s.parent), S: s}))
	txn.Commit()
}

func (c *catalog) deleteSnapshot(s *snapshot) {
	txn := c.db.Txn(true)
	_, err := txn.DeleteAll(tabSnapshot, "id", s.version.String())
	must(err)
	txn.Commit()
}

func (c *catalog) volume(base ID) *volume {
	raw, err := c.db.Txn(false).First(tabVolume, "id", base.String())
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*volEntry).V
}

func (c *catalog) snapshot(version ID) *snapshot {
	raw, err := c.db.Txn(false).First(tabSnapshot, "id", version.String())
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*snapEntry).S
}

// volumes returns every volume in base id order.
func (c *catalog) volumes() []*volume {
	it, err := c.db.Txn(false).Get(tabVolume, "id")
	must(err)
	var out []*volume
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*volEntry).V)
	}
	return out
}

// snapshots returns every snapshot in version id order.
func (c *catalog) snapshots() []*snapshot {
	it, err := c.db.Txn(false).Get(tabSnapshot, "id")
	must(err)
	var out []*snapshot
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*snapEntry).S)
	}
	return out
}

// ownedSnapshots returns the snapshots whose maps came from volume base: the
// maps, besides the volume's own, that can hold its records' data.
func (c *catalog) ownedSnapshots(base ID) []*snapshot {
	it, err := c.db.Txn(false).Get(tabSnapshot, "owner", base.String())
	must(err)
	var out []*snapshot
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*snapEntry).S)
	}
	return out
}

// must panics on a catalog error: with a static schema and string keys, memdb
// errors are programming errors.
func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("segment: catalog: %v", err))
	}
}

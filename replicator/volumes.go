package replicator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"cloudfs/segment"
)

// VolumeInfo is a volume as GET /v1/volumes/{id} shows it.
type VolumeInfo struct {
	ID      string `json:"id"`      // base id, 40 hex digits
	Version string `json:"version"` // current version id
	LSN     uint64 `json:"lsn"`
	Epoch   uint64 `json:"epoch"`
	Size    uint64 `json:"size"` // bytes
	// Role is "primary" where this host holds the access token (it can
	// write), "replica" where it follows.
	Role   string `json:"role"`
	Parent string `json:"parent,omitempty"` // the version a branch reads through to
	// UsedBytes is the data the volume's own extent map holds (what it wrote,
	// not what it reads through its parent); ZeroBytes the ranges it zeroed.
	UsedBytes uint64 `json:"used_bytes"`
	ZeroBytes uint64 `json:"zero_bytes"`
	Extents   int    `json:"extents"`
	Device    string `json:"device,omitempty"` // its block device on this host
	// Hosts are the hosts the cluster placed a new volume on (create only).
	Hosts []string `json:"hosts,omitempty"`
	// For a volume in the cluster's catalog: its replication mode, its
	// primary's host id, and every host that keeps it, as each answers now.
	Mode     string        `json:"mode,omitempty"`
	Primary  string        `json:"primary,omitempty"`
	Replicas []ReplicaInfo `json:"replicas,omitempty"`
	// Forks are histories of the volume this host had that the primary's
	// does not continue (an old primary's unacknowledged tail), each kept as
	// a branch: the volume id holding it and its head.
	Forks []ForkInfo `json:"forks,omitempty"`
}

// ForkInfo is one fork of a volume: a history the primary's does not
// continue, kept as a branch on a host.
type ForkInfo struct {
	Host    string    `json:"host,omitempty"` // the host that keeps the branch
	Branch  string    `json:"branch"`
	Version string    `json:"version"`
	LSN     uint64    `json:"lsn"`
	At      time.Time `json:"at"`
}

// ReplicaInfo is one host's copy of a volume, as info shows it.
type ReplicaInfo struct {
	Host    string `json:"host"`
	Version string `json:"version,omitempty"`
	LSN     uint64 `json:"lsn"`
	// LagEntries is how many entries it is behind the answering host.
	LagEntries uint64 `json:"lag_entries"`
	// LagBytes, InSync and LastAck are the primary's view (the answering
	// host is the primary): the data written since the replica's
	// acknowledged position (-1: not known), whether the replica counts for
	// the mode now, and when it last acknowledged.
	LagBytes int64      `json:"lag_bytes"`
	InSync   bool       `json:"in_sync"`
	LastAck  *time.Time `json:"last_ack,omitempty"`
	Err      string     `json:"error,omitempty"` // why it did not answer
}

// Replication says how a volume is replicated, for info.
type Replication struct {
	Mode, Primary string
	Replicas      []ReplicaInfo
	Forks         []ForkInfo
}

func (s *server) info(v *segment.Volume) (VolumeInfo, error) {
	in, err := v.Info()
	if err != nil {
		return VolumeInfo{}, err
	}
	vi := VolumeInfo{ID: in.Base.String(), Version: in.Version.String(), LSN: in.LSN, Epoch: in.Epoch,
		Size: in.Size, Role: "replica", UsedBytes: in.MappedBytes, ZeroBytes: in.ZeroBytes, Extents: in.Extents}
	if in.Owned {
		vi.Role = "primary"
	}
	if !in.Parent.IsZero() {
		vi.Parent = in.Parent.String()
	}
	if s.cfg.Device != nil {
		vi.Device = s.cfg.Device(in.Base)
	}
	return vi, nil
}

// heads answers GET /heads as the original did: one "base:version" line per
// volume.
func (s *server) heads(w http.ResponseWriter, r *http.Request) error {
	var b strings.Builder
	for _, h := range s.cfg.Store.Heads() {
		fmt.Fprintf(&b, "%v:%v\n", h.Base, h.Version)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	_, err := w.Write([]byte(b.String()))
	return err
}

func (s *server) listVolumes(w http.ResponseWriter, r *http.Request) error {
	out := []VolumeInfo{}
	for _, h := range s.cfg.Store.Heads() {
		v, err := s.cfg.Store.Volume(h.Base)
		if err != nil {
			continue // deleted meanwhile
		}
		vi, err := s.info(v)
		if err != nil {
			continue
		}
		out = append(out, vi)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *server) createVolume(w http.ResponseWriter, r *http.Request) error {
	size, err := strconv.ParseUint(r.URL.Query().Get("size"), 10, 64)
	if err != nil || size == 0 || size%segment.SectorSize != 0 {
		return errf(http.StatusBadRequest, "size=%q: want a positive number of bytes, a multiple of %d",
			r.URL.Query().Get("size"), segment.SectorSize)
	}
	n := 1
	if q := r.URL.Query().Get("replicas"); q != "" {
		if n, err = strconv.Atoi(q); err != nil || n < 0 {
			return errf(http.StatusBadRequest, "replicas=%q: want a number of hosts (0: the default)", q)
		}
	}
	mode := r.URL.Query().Get("mode")
	if mode != "" && !ValidMode(mode) {
		return errf(http.StatusBadRequest, "mode=%q: want sync, quorum or async", mode)
	}
	if s.cfg.Replicate == nil {
		if n > 1 {
			return fmt.Errorf("%w: this host runs without a cluster; %d replicas need one", ErrPlacement, n)
		}
		v, err := s.cfg.Store.Create(size)
		if err != nil {
			return err
		}
		return s.created(w, v, nil)
	}
	v, hosts, err := s.cfg.Replicate(r.Context(), size, n, mode)
	if err != nil {
		return err
	}
	return s.created(w, v, hosts)
}

// created answers a create or branch with the new volume.
func (s *server) created(w http.ResponseWriter, v *segment.Volume, hosts []string) error {
	vi, err := s.info(v)
	if err != nil {
		return err
	}
	vi.Hosts = hosts
	s.log.Info("volume created", "volume", vi.ID, "size", vi.Size, "parent", vi.Parent)
	w.Header().Set("Location", "/v1/volumes/"+vi.ID)
	return writeJSON(w, http.StatusCreated, vi)
}

func (s *server) volumeInfo(w http.ResponseWriter, r *http.Request) error {
	v, err := s.volume(r)
	if err != nil {
		return err
	}
	vi, err := s.info(v)
	if err != nil {
		return err
	}
	// ?local=1 is what hosts ask each other: this host's copy alone
	if local, err := boolParam(r, "local"); err != nil {
		return err
	} else if s.cfg.Replication != nil && !local {
		if rp := s.cfg.Replication(r.Context(), v.Base(), vi.LSN); rp != nil {
			vi.Mode, vi.Primary, vi.Replicas, vi.Forks = rp.Mode, rp.Primary, rp.Replicas, rp.Forks
		}
	} else if local && s.cfg.Forks != nil {
		vi.Forks = s.cfg.Forks(v.Base())
	}
	return writeJSON(w, http.StatusOK, vi)
}

func (s *server) deleteVolume(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	if err := s.cfg.Store.Delete(id, force); err != nil {
		return err
	}
	s.log.Info("volume deleted", "volume", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) branch(w http.ResponseWriter, r *http.Request) error {
	version, err := pathID(r, "version")
	if err != nil {
		return err
	}
	v, err := s.cfg.Store.Branch(version)
	if err != nil {
		return err
	}
	return s.created(w, v, nil)
}

// volume returns the volume named by the request's {id}.
func (s *server) volume(r *http.Request) (*segment.Volume, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	return s.cfg.Store.Volume(id)
}

func pathID(r *http.Request, name string) (segment.ID, error) {
	id, err := segment.ParseID(r.PathValue(name))
	if err != nil {
		return id, errf(http.StatusBadRequest, "%s %q: want 40 hex digits", name, r.PathValue(name))
	}
	return id, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, err = w.Write(append(b, '\n'))
	return err
}

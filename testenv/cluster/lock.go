package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// lockDir holds one lock file per live cluster, <id>.lock, flocked by the
// test process that owns the cluster. The kernel drops the flock when that
// process dies, however it dies, so a namespace whose lock file is missing
// or not locked is a leftover.
const lockDir = "/run/cfs-testenv"

// claimID reserves a fresh cluster id: it creates and flocks its lock file
// (O_EXCL, so two processes never get the same id). The caller keeps the
// file open for the cluster's life and calls releaseID at the end.
func claimID() (string, *os.File, error) {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return "", nil, err
	}
	for range 100 { // 24 random bits: a collision is rare, 100 in a row impossible
		var b [3]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		id := hex.EncodeToString(b[:])
		if _, err := os.Stat(filepath.Join(netnsDir, prefix+id+"-"+switchSuffix)); err == nil {
			continue // a leftover not yet swept uses it
		}
		f, err := os.OpenFile(lockPath(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			continue // a sweeper took it for a leftover between create and lock
		}
		if !samePath(f) {
			f.Close()
			continue // same, and it has removed the file already
		}
		return id, f, nil
	}
	return "", nil, errors.New("no free cluster id after 100 tries")
}

// subnetRecordLen is the fixed length of the lock file's content, the
// cluster's subnet padded with spaces: one pwrite replaces it whole, so a
// sweeper never reads half a subnet.
const subnetRecordLen = 24

// recordSubnet writes p into the lock file f.
func recordSubnet(f *os.File, p netip.Prefix) error {
	_, err := f.WriteAt(fmt.Appendf(nil, "%-*s\n", subnetRecordLen-1, p), 0)
	return err
}

// recordedSubnet reads the subnet in the lock file of id, if any.
func recordedSubnet(id string) (netip.Prefix, bool) {
	b, err := os.ReadFile(lockPath(id))
	if err != nil {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(string(b)))
	return p, err == nil
}

// samePath reports whether f's path still names f.
func samePath(f *os.File) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(f.Name())
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// forgetSubnet blanks the subnet in the lock file f once its guard route
// is gone, so that no sweeper removes the route of a later cluster that
// took the same subnet.
func forgetSubnet(f *os.File) error {
	_, err := f.WriteAt(fmt.Appendf(nil, "%-*s\n", subnetRecordLen-1, ""), 0)
	return err
}

// releaseID removes and unlocks the lock file of id.
func releaseID(id string, f *os.File) {
	os.Remove(lockPath(id))
	f.Close()
}

func lockPath(id string) string { return filepath.Join(lockDir, id+".lock") }

// sweep removes the namespaces (and the processes in them) and the guard
// routes of clusters whose owner is gone: a test binary killed before its
// cleanup ran. It returns the ids it removed. Live clusters of other test
// processes are left alone: a guard route is removed only when the
// abandoned lock file it holds names it, and while that route exists no
// other cluster can have the same subnet.
func sweep(ctx context.Context) ([]string, error) {
	names, err := listNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string][]string{}
	for _, n := range names {
		if m := nsNameRE.FindStringSubmatch(n); m != nil {
			byID[m[1]] = append(byID[m[1]], n)
		}
	}
	locks, _ := filepath.Glob(filepath.Join(lockDir, "*.lock"))
	for _, l := range locks {
		if id := strings.TrimSuffix(filepath.Base(l), ".lock"); idRE.MatchString(id) {
			if _, ok := byID[id]; !ok {
				byID[id] = nil // a lock file without namespaces
			}
		}
	}
	var removed []string
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		lock, ok := takeAbandoned(id)
		if !ok {
			continue // its owner lives
		}
		for _, ns := range byID[id] {
			if err := deleteNamespace(ctx, ns); err != nil {
				errs = append(errs, err)
			}
		}
		if lock != nil {
			if p, ok := recordedSubnet(id); ok {
				if err := deleteGuard(ctx, p); err != nil && !strings.Contains(err.Error(), "No such process") {
					errs = append(errs, err)
				}
			}
			releaseID(id, lock)
		}
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}

// idRE matches a cluster id.
var idRE = regexp.MustCompile(`^[0-9a-f]{6}$`)

// takeAbandoned reports whether the cluster id has no live owner; it then
// returns its lock file, locked, or nil if there is none.
func takeAbandoned(id string) (*os.File, bool) {
	f, err := os.OpenFile(lockPath(id), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, true
	}
	if err != nil {
		return nil, false // unsure: leave it
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

package posixshim

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloudfs/segment"
	"cloudfs/segment/device"
	"cloudfs/segment/segtest"
)

var seedFlag = flag.Uint64("seed", 0, "seed of the random tests (0: from the clock); logged by each test")

// testSeed returns the seed to use, logging it for replay with -seed.
func testSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	return seed
}

// digest describes a namespace as the user sees it (names, types,
// permissions, link counts, sizes, contents, targets), without times.
func digest(t testing.TB, v *volFS) string {
	t.Helper()
	var b strings.Builder
	var walk func(ino uint64, path string)
	walk = func(ino uint64, path string) {
		ents, err := v.readdir(ino)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			a, err := v.getattr(e.Ino)
			if err != nil {
				t.Fatal(err)
			}
			p := path + "/" + e.Name
			fmt.Fprintf(&b, "%s %o n%d s%d", p, a.Mode, a.Nlink, a.Size)
			switch a.Mode & syscall.S_IFMT {
			case syscall.S_IFREG:
				buf := make([]byte, a.Size)
				if _, err := v.read(e.Ino, buf, 0); err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, " %x", sha256.Sum256(buf))
			case syscall.S_IFLNK:
				target, _ := v.readlink(e.Ino)
				fmt.Fprintf(&b, " -> %s", target)
			}
			b.WriteByte('\n')
			if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
				walk(e.Ino, p)
			}
		}
	}
	walk(rootIno, "")
	return b.String()
}

// crashOps runs one random operation on v, each of which changes the
// namespace with a single visible step (so that every crash state is one of
// the states between operations): overwrites stay within a chunk and within
// the file, other writes start at or after the end of the file.
func crashOp(t *testing.T, rng *rand.Rand, v *volFS) string {
	t.Helper()
	dirs, files := namespaceInodes(v)
	pick := func(s []uint64) uint64 { return s[rng.IntN(len(s))] }
	name := fmt.Sprintf("n%d", rng.IntN(40))
	switch op := rng.IntN(100); {
	case op < 15:
		_, err := v.create(pick(dirs), name, syscall.S_IFREG|0o644, 0, 0, 0, "")
		return fmt.Sprintf("create %s: %v", name, err)
	case op < 20:
		_, err := v.create(pick(dirs), name, syscall.S_IFDIR|0o755, 0, 0, 0, "")
		return fmt.Sprintf("mkdir %s: %v", name, err)
	case op < 23:
		_, err := v.create(pick(dirs), name, syscall.S_IFLNK|0o777, 0, 0, 0, "t/"+name)
		return fmt.Sprintf("symlink %s: %v", name, err)
	case op < 50 && len(files) > 0:
		ino := pick(files)
		a, _ := v.getattr(ino)
		data := pattern(1+rng.IntN(20_000), byte(rng.Uint32()))
		off := a.Size + uint64(rng.IntN(3))*uint64(rng.IntN(200_000))
		if rng.IntN(2) == 0 && a.Size > 0 { // an overwrite inside one chunk and inside the file
			off = uint64(rng.Int64N(int64(a.Size)))
			end := min(a.Size, roundUp(off+1, chunkSize))
			data = data[:min(uint64(len(data)), end-off)]
		}
		_, err := v.write(ino, data, int64(off))
		return fmt.Sprintf("write %d at %d+%d: %v", ino, off, len(data), err)
	case op < 58 && len(files) > 0:
		size := uint64(rng.IntN(300_000))
		_, err := v.setattr(pick(files), setattrReq{Mask: attrSize, Size: size})
		return fmt.Sprintf("truncate %d: %v", size, err)
	case op < 70:
		err := v.remove(pick(dirs), name, rng.IntN(4) == 0)
		return fmt.Sprintf("remove %s: %v", name, err)
	case op < 82:
		err := v.rename(pick(dirs), name, pick(dirs), fmt.Sprintf("n%d", rng.IntN(40)), 0)
		return fmt.Sprintf("rename %s: %v", name, err)
	case op < 88 && len(files) > 0:
		_, err := v.link(pick(files), pick(dirs), name)
		return fmt.Sprintf("link %s: %v", name, err)
	case op < 92:
		v.mu.Lock()
		err := v.checkpoint()
		v.mu.Unlock()
		return fmt.Sprintf("checkpoint: %v", err)
	default:
		_, err := v.setattr(pick(append(files, dirs...)), setattrReq{Mask: attrMode, Mode: uint32(rng.IntN(0o1000))})
		return fmt.Sprintf("chmod: %v", err)
	}
}

// namespaceInodes returns the directories and regular files of v, sorted.
func namespaceInodes(v *volFS) (dirs, files []uint64) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, ino := range slices.Sorted(maps.Keys(v.st.inodes)) {
		switch n := v.st.inodes[ino]; {
		case n.Nlink == 0:
		case n.isDir():
			dirs = append(dirs, ino)
		case n.isReg():
			files = append(files, ino)
		}
	}
	return dirs, files
}

// TestCrashPrefix runs random operations on a namespace over a real store,
// flushing now and then, then cuts the power (a crash clone of the device
// keeps the synced blocks and a random part of the rest), recovers the
// store and remounts: the namespace must pass check and equal the state
// after one of the operations since the last flush.
func TestCrashPrefix(t *testing.T) {
	seed := testSeed(t)
	rounds, ops := 6, 250
	if testing.Short() {
		rounds, ops = 2, 120
	}
	for round := range rounds {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(round)))
			crashRound(t, rng, ops)
		})
	}
}

func crashRound(t *testing.T, rng *rand.Rand, ops int) {
	dev, st := segtest.NewStore(t, 1<<30, segment.Options{NoBackground: true})
	vol, err := st.Create(testVolumeSize)
	if err != nil {
		t.Fatal(err)
	}
	v, err := openVolFS("test", volDisk{Volume: vol, size: testVolumeSize}, segtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	states := []string{digest(t, v)}
	synced := 0
	for range ops {
		op := crashOp(t, rng, v)
		if v.broken != nil {
			t.Fatalf("%s: namespace broken: %v", op, v.broken)
		}
		states = append(states, digest(t, v))
		if rng.IntN(25) == 0 {
			if err := v.disk.Flush(); err != nil {
				t.Fatal(err)
			}
			synced = len(states) - 1
		}
	}
	v.mu.Lock()
	if err := v.st.check(); err != nil {
		t.Fatalf("live state: %v", err)
	}
	v.mu.Unlock()
	clone := dev.CrashClone(device.CrashCfg{UnsyncedPercent: rng.IntN(101), Rand: rng})
	got := remountDigest(t, clone, vol.Base())
	for k := len(states) - 1; k >= synced; k-- {
		if states[k] == got {
			t.Logf("recovered the state after op %d of %d (flushed after %d)", k, len(states)-1, synced)
			return
		}
	}
	t.Fatalf("recovered namespace is none of the states since the last flush (op %d):\n%s\nlast flushed:\n%s",
		synced, got, states[synced])
}

// remountDigest opens the store on dev, mounts the namespace of volume base
// and returns its digest; it then closes the store and checks dev.
func remountDigest(t *testing.T, dev *device.Mem, base segment.ID) string {
	t.Helper()
	st, err := segment.Open(dev, segment.Options{Logger: segtest.Logger(t), NoBackground: true})
	if err != nil {
		t.Fatalf("reopen crashed store: %v", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
		segtest.MustCheck(t, dev)
	}()
	vol, err := st.Volume(base)
	if err != nil {
		t.Fatal(err)
	}
	v, err := openVolFS("test", volDisk{Volume: vol, size: testVolumeSize}, segtest.Logger(t))
	if err != nil {
		t.Fatalf("remount after crash: %v", err)
	}
	return digest(t, v)
}

package posixshim

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkIO compares IO through a disk file and through a file of the
// shim with the same IO on a plain file in a temporary directory, for make
// bench to print as ratios. The store here is in memory (segtest): the
// ratios show the shim's and FUSE's overhead, not a device's speed.
func BenchmarkIO(b *testing.B) {
	r := newRig(b, 0)
	r.mount(b)
	// A volume is a namespace or a disk file: the disk file is another one.
	other, err := r.st.Create(testVolumeSize)
	if err != nil {
		b.Fatal(err)
	}
	targets := map[string]string{
		"plain":    filepath.Join(b.TempDir(), "plain"),
		"diskfile": filepath.Join(r.dir, disksName, other.Base().String()),
		"shim":     filepath.Join(r.ns(), "bench"),
	}
	const span = 64 << 20 // the region the IO touches
	for _, name := range []string{"plain", "diskfile", "shim"} {
		path := targets[name]
		b.Run(name, func(b *testing.B) {
			f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			seq := make([]byte, 1<<20)
			for i := range seq {
				seq[i] = byte(i)
			}
			b.Run("seqwrite-1MiB", func(b *testing.B) {
				b.SetBytes(int64(len(seq)))
				off := int64(0)
				for b.Loop() {
					if _, err := f.WriteAt(seq, off); err != nil {
						b.Fatal(err)
					}
					off = (off + int64(len(seq))) % span
				}
			})
			rng := rand.New(rand.NewPCG(1, 2))
			small := seq[:4096]
			b.Run("randwrite-4KiB", func(b *testing.B) {
				b.SetBytes(4096)
				for b.Loop() {
					if _, err := f.WriteAt(small, rng.Int64N(span/4096)*4096); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("randread-4KiB", func(b *testing.B) {
				b.SetBytes(4096)
				for b.Loop() {
					if _, err := f.ReadAt(small, rng.Int64N(span/4096)*4096); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("write-fsync-4KiB", func(b *testing.B) {
				b.SetBytes(4096)
				for b.Loop() {
					if _, err := f.WriteAt(small, rng.Int64N(span/4096)*4096); err != nil {
						b.Fatal(err)
					}
					if err := f.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

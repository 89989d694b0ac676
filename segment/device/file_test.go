package device_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"cloudfs/segment/device"
)

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		size    int64
		wantErr error
	}{
		{"sparse 1 GiB", filepath.Join(dir, "big"), 1 << 30, nil},
		{"empty", filepath.Join(dir, "empty"), 0, nil},
		{"unaligned size", filepath.Join(dir, "odd"), 4097, device.ErrUnaligned},
		{"negative size", filepath.Join(dir, "neg"), -4096, device.ErrOutOfRange},
		{"existing file", existing, 4096, fs.ErrExist},
		{"missing directory", filepath.Join(dir, "no", "such"), 4096, fs.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := device.Create(tc.path, tc.size)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Create(%s, %d) = %v, want %v", tc.name, tc.size, err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			var st syscall.Stat_t
			if err := syscall.Stat(tc.path, &st); err != nil {
				t.Fatal(err)
			}
			if st.Size != tc.size || st.Blocks != 0 {
				t.Errorf("after Create: size %d, %d blocks allocated; want %d, 0 (sparse)", st.Size, st.Blocks, tc.size)
			}
		})
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "keep me" {
		t.Errorf("existing file after Create = %q, %v; want it untouched", b, err)
	}
}

func TestOpenGeometry(t *testing.T) {
	tests := []struct {
		name     string
		fileSize int64
		wantSize int64
	}{
		{"exact", 1 << 20, 1 << 20},
		{"rounds down", 10000, 8192},
		{"below a block", 100, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dev")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, tc.fileSize); err != nil {
				t.Fatal(err)
			}
			f, err := device.Open(path, device.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// the file system's O_DIRECT alignment: 512 to 4096, a power of two
			bs := f.BlockSize()
			if f.Size() != tc.wantSize || bs < 512 || bs > 4096 || bs&(bs-1) != 0 || f.Kind() != device.KindFile {
				t.Errorf("Open(%d-byte file): Size() %d, BlockSize() %d, Kind() %q; want %d, 512..4096, %q",
					tc.fileSize, f.Size(), f.BlockSize(), f.Kind(), tc.wantSize, device.KindFile)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		path    string
		opts    device.Options
		wantErr error // nil: any error
	}{
		{"missing", filepath.Join(dir, "missing"), device.Options{}, fs.ErrNotExist},
		{"directory read-write", dir, device.Options{}, nil},
		{"directory read-only", dir, device.Options{ReadOnly: true, Buffered: true}, nil},
		{"character device", "/dev/null", device.Options{Buffered: true}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := device.Open(tc.path, tc.opts)
			if err == nil {
				f.Close()
				t.Fatalf("Open(%s, %+v) = nil error, want an error", tc.path, tc.opts)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Open(%s, %+v) = %v, want %v", tc.path, tc.opts, err, tc.wantErr)
			}
		})
	}
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev")
	if err := device.Create(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	f, err := device.Open(path, device.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := device.AlignedBuf(4096)
	if _, err := f.WriteAt(buf, 0); !errors.Is(err, device.ErrReadOnly) {
		t.Errorf("WriteAt on read-only File = %v, want ErrReadOnly", err)
	}
	if err := f.Discard(0, 4096); !errors.Is(err, device.ErrReadOnly) {
		t.Errorf("Discard on read-only File = %v, want ErrReadOnly", err)
	}
	mustRead(t, f, 0, 4096)
	mustSync(t, f)
}

// TestBufferAlignment checks that O_DIRECT Files reject buffers not aligned
// in memory, and buffered Files accept them.
func TestBufferAlignment(t *testing.T) {
	tests := []struct {
		name    string
		opts    device.Options
		wantErr error
	}{
		{"direct", device.Options{}, device.ErrUnaligned},
		{"buffered", device.Options{Buffered: true}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := openTempFile(tc.opts)(t)
			defer f.Close()
			buf := device.AlignedBuf(4096 + 8)[8:] // 8 bytes past a 4096 boundary
			if _, err := f.WriteAt(buf, 0); !errors.Is(err, tc.wantErr) {
				t.Errorf("WriteAt(misaligned buffer) = %v, want %v", err, tc.wantErr)
			}
			if _, err := f.ReadAt(buf, 0); !errors.Is(err, tc.wantErr) {
				t.Errorf("ReadAt(misaligned buffer) = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestAlignedBuf(t *testing.T) {
	for _, n := range []int{0, 1, 512, 4096, 4097, 1 << 20} {
		buf := device.AlignedBuf(n)
		if len(buf) != n || cap(buf) != n {
			t.Errorf("AlignedBuf(%d): len %d cap %d, want %d, %d", n, len(buf), cap(buf), n, n)
		}
		if n > 0 && uintptrOf(buf)%4096 != 0 {
			t.Errorf("AlignedBuf(%d) at %#x, want 4096-aligned", n, uintptrOf(buf))
		}
	}
}

// TestFileDiscard checks that Discard on a regular file punches a hole:
// the blocks are deallocated and read as zeros.
func TestFileDiscard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev")
	if err := device.Create(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	f, err := device.Open(path, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mustWrite(t, f, filled(256<<10, 0x5a), 0)
	mustSync(t, f)
	before := allocated(t, path)
	if err := f.Discard(0, 128<<10); err != nil {
		t.Fatalf("Discard = %v", err)
	}
	if after := allocated(t, path); after >= before {
		t.Errorf("allocated bytes after Discard = %d, want fewer than %d", after, before)
	}
	if got := mustRead(t, f, 0, 128<<10); !isAll(got, 0) {
		t.Errorf("discarded range does not read as zeros")
	}
	if got := mustRead(t, f, 128<<10, 128<<10); !isAll(got, 0x5a) {
		t.Errorf("range after the discarded one changed")
	}
}

// TestLoopDiscard checks BLKDISCARD on a loop device, which punches a hole
// in the backing file, so the range reads as zeros.
func TestLoopDiscard(t *testing.T) {
	f, err := device.Open(attachLoop(t, testSize, 512), device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Kind() != device.KindBlock || f.Size() != testSize || f.BlockSize() != 512 {
		t.Errorf("loop device: Kind() %q, Size() %d, BlockSize() %d; want %q, %d, 512",
			f.Kind(), f.Size(), f.BlockSize(), device.KindBlock, testSize)
	}
	mustWrite(t, f, filled(64<<10, 0x5a), 0)
	mustSync(t, f)
	if err := f.Discard(0, 64<<10); err != nil {
		t.Fatalf("Discard = %v", err)
	}
	if got := mustRead(t, f, 0, 64<<10); !isAll(got, 0) {
		t.Errorf("discarded range does not read as zeros")
	}
}

// allocated returns the bytes the file system has allocated for path.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512 // st_blocks counts 512-byte units
}

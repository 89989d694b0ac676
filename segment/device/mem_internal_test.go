package device

import "testing"

// allocatedChunks counts the chunks m has allocated.
func (m *Mem) allocatedChunks() int {
	n := 0
	for i := range m.chunks {
		if m.chunks[i].Load() != nil {
			n++
		}
	}
	return n
}

// savedBytes returns how many bytes of pre-write contents m holds for
// CrashClone.
func (m *Mem) savedBytes() int {
	n := 0
	for _, old := range m.unsynced {
		n += len(old)
	}
	return n
}

// TestMemMemory checks that Mem allocates lazily, saves old contents only
// when they are not zeros, frees saved contents at Sync and frees chunks on
// Discard.
func TestMemMemory(t *testing.T) {
	m := NewMem(4<<30, 4096)
	buf := AlignedBuf(1 << 20)
	for i := range buf {
		buf[i] = 0x77
	}
	if _, err := m.WriteAt(buf, 1<<30); err != nil {
		t.Fatal(err)
	}
	if got, want := m.allocatedChunks(), (1<<20)/memChunkSize; got != want {
		t.Errorf("after a 1 MiB write: %d chunks allocated, want %d", got, want)
	}
	if got := m.savedBytes(); got != 0 {
		t.Errorf("after a first write over zeros: %d bytes saved, want 0", got)
	}
	if _, err := m.WriteAt(buf[:8192], 1<<30); err != nil {
		t.Fatal(err)
	}
	if got := m.savedBytes(); got != 0 {
		t.Errorf("after rewriting blocks already written this epoch: %d bytes saved, want 0", got)
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(m.unsynced) != 0 {
		t.Errorf("after Sync: %d unsynced blocks tracked, want 0", len(m.unsynced))
	}
	if _, err := m.WriteAt(buf[:8192], 1<<30); err != nil {
		t.Fatal(err)
	}
	if got := m.savedBytes(); got != 8192 {
		t.Errorf("after overwriting synced data: %d bytes saved, want 8192", got)
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := m.Discard(1<<30, 1<<20); err != nil {
		t.Fatal(err)
	}
	if got := m.allocatedChunks(); got != 0 {
		t.Errorf("after discarding everything written: %d chunks allocated, want 0", got)
	}
}

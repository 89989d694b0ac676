package device_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"cloudfs/segment/device"
)

// Layout of the crash scenario, in 4096-byte blocks of a 64-block Mem:
//
//	blocks  0-15  synced 'A'
//	blocks 16-31  synced 'A', then unsynced 'B'
//	blocks 32-47  never synced, unsynced 'B'
//	blocks 48-63  never written
const (
	crashBS     = 4096
	crashBlocks = 64
)

// crashScenario builds the Mem described above.
func crashScenario(t *testing.T) *device.Mem {
	t.Helper()
	m := device.NewMem(crashBlocks*crashBS, crashBS)
	mustWrite(t, m, filled(32*crashBS, 'A'), 0)
	mustSync(t, m)
	mustWrite(t, m, filled(32*crashBS, 'B'), 16*crashBS)
	return m
}

// blockState classifies each block of m: 'A', 'B', 0 for zeros, or 'T'
// for a torn block (a prefix of B sectors over the old contents).
func blockStates(t *testing.T, m *device.Mem) []byte {
	t.Helper()
	states := make([]byte, crashBlocks)
	for b := range crashBlocks {
		blk := mustRead(t, m, int64(b*crashBS), crashBS)
		switch {
		case isAll(blk, 'A'):
			states[b] = 'A'
		case isAll(blk, 'B'):
			states[b] = 'B'
		case isAll(blk, 0):
			states[b] = 0
		default:
			states[b] = 'T'
		}
	}
	return states
}

func TestCrashClone(t *testing.T) {
	old := func(b int) byte { return map[bool]byte{true: 'A', false: 0}[b < 32] }
	tests := []struct {
		name     string
		unsynced int
		// want returns the acceptable states of block b.
		want func(b int) string
	}{
		{"drop all unsynced", 0, func(b int) string { return string(old(b)) }},
		{"keep all unsynced", 100, func(b int) string {
			if b >= 16 && b < 48 {
				return "B"
			}
			return string(old(b))
		}},
		{"keep half", 50, func(b int) string {
			if b >= 16 && b < 48 {
				return string([]byte{'B', old(b)})
			}
			return string(old(b))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := crashScenario(t)
			clone := m.CrashClone(device.CrashCfg{UnsyncedPercent: tc.unsynced, Rand: rand.New(rand.NewPCG(7, 7))})
			for b, got := range blockStates(t, clone) {
				if !bytes.ContainsRune([]byte(tc.want(b)), rune(got)) {
					t.Errorf("block %d = %q after crash, want one of %q", b, got, tc.want(b))
				}
			}
		})
	}
}

// TestCrashCloneMix checks that UnsyncedPercent 50 keeps some unsynced
// blocks and drops others.
func TestCrashCloneMix(t *testing.T) {
	clone := crashScenario(t).CrashClone(device.CrashCfg{UnsyncedPercent: 50, Rand: rand.New(rand.NewPCG(1, 2))})
	kept := bytes.Count(blockStates(t, clone)[16:48], []byte{'B'})
	if kept == 0 || kept == 32 {
		t.Errorf("UnsyncedPercent 50 kept %d of 32 unsynced blocks, want a mix", kept)
	}
}

func TestCrashCloneReproducible(t *testing.T) {
	m := crashScenario(t)
	cfg := func(seed uint64) device.CrashCfg {
		return device.CrashCfg{UnsyncedPercent: 50, TearPercent: 30, Rand: rand.New(rand.NewPCG(seed, 0))}
	}
	a := mustRead(t, m.CrashClone(cfg(42)), 0, crashBlocks*crashBS)
	b := mustRead(t, m.CrashClone(cfg(42)), 0, crashBlocks*crashBS)
	if !bytes.Equal(a, b) {
		t.Errorf("CrashClone with equal seeds gave different contents")
	}
}

// TestCrashCloneTear checks that a torn block holds a sector-aligned prefix
// of the new contents followed by the old.
func TestCrashCloneTear(t *testing.T) {
	m := crashScenario(t)
	clone := m.CrashClone(device.CrashCfg{UnsyncedPercent: 100, TearPercent: 100, Rand: rand.New(rand.NewPCG(3, 3))})
	partial := 0
	for b := 16; b < 48; b++ {
		blk := mustRead(t, clone, int64(b*crashBS), crashBS)
		oldByte := map[bool]byte{true: 'A', false: 0}[b < 32]
		k := bytes.IndexFunc(blk, func(r rune) bool { return r != 'B' })
		if k%512 != 0 || !isAll(blk[k:], oldByte) {
			t.Errorf("block %d: %d bytes of new data then not all %q; want a 512-byte sector prefix", b, k, oldByte)
		}
		if k > 0 {
			partial++
		}
	}
	if partial == 0 {
		t.Errorf("no torn block kept any new sector; want some")
	}
}

// TestCrashCloneIndependent checks that a clone and its source share no
// storage and that cloning leaves the source unchanged.
func TestCrashCloneIndependent(t *testing.T) {
	m := crashScenario(t)
	clone := m.CrashClone(device.CrashCfg{UnsyncedPercent: 100})
	mustWrite(t, clone, filled(crashBS, 'C'), 0)
	mustWrite(t, m, filled(crashBS, 'D'), crashBS)
	if got := mustRead(t, m, 0, crashBS); !isAll(got, 'A') {
		t.Errorf("write to clone changed the source")
	}
	if got := mustRead(t, clone, crashBS, crashBS); !isAll(got, 'A') {
		t.Errorf("write to source changed the clone")
	}
	if got := mustRead(t, m, 16*crashBS, crashBS); !isAll(got, 'B') {
		t.Errorf("CrashClone changed the source's unsynced data")
	}
	// The clone's initial contents count as synced; later writes do not.
	again := clone.CrashClone(device.CrashCfg{UnsyncedPercent: 0})
	if got := mustRead(t, again, 16*crashBS, crashBS); !isAll(got, 'B') {
		t.Errorf("crash of a clone lost its initial contents")
	}
	if got := mustRead(t, again, 0, crashBS); !isAll(got, 'A') {
		t.Errorf("crash of a clone kept a write made to it without Sync")
	}
}

// TestCrashCloneAfterSyncAndClose checks that Sync makes everything
// survive and that a closed Mem can still be cloned.
func TestCrashCloneAfterSyncAndClose(t *testing.T) {
	m := crashScenario(t)
	mustSync(t, m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	clone := m.CrashClone(device.CrashCfg{UnsyncedPercent: 0})
	got := blockStates(t, clone)
	want := append(append(bytes.Repeat([]byte{'A'}, 16), bytes.Repeat([]byte{'B'}, 32)...), make([]byte, 16)...)
	if !bytes.Equal(got, want) {
		t.Errorf("blocks after Sync, Close, crash = %q, want %q", got, want)
	}
}

// TestCrashCloneDiscard checks that an unsynced Discard is undone by a
// crash that drops unsynced writes.
func TestCrashCloneDiscard(t *testing.T) {
	m := crashScenario(t)
	mustSync(t, m)
	if err := m.Discard(0, 32*crashBS); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m, 0, 32*crashBS); !isAll(got, 0) {
		t.Errorf("discarded range does not read as zeros")
	}
	clone := m.CrashClone(device.CrashCfg{UnsyncedPercent: 0})
	if got := mustRead(t, clone, 0, 16*crashBS); !isAll(got, 'A') {
		t.Errorf("crash after an unsynced Discard lost synced data")
	}
}

// TestCrashCloneConcurrent runs CrashClone and Sync while writers run, for
// the race detector.
func TestCrashCloneConcurrent(t *testing.T) {
	m := device.NewMem(crashBlocks*crashBS, crashBS)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			mustWrite(t, m, filled(crashBS, byte(i)), int64(i%crashBlocks)*crashBS)
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-done:
			return
		default:
		}
		m.CrashClone(device.CrashCfg{UnsyncedPercent: 50, TearPercent: 50, Rand: rand.New(rand.NewPCG(uint64(i), 0))})
		mustSync(t, m)
	}
}

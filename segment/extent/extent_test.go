package extent

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "seed for TestModel; 0 picks one from the clock")

// Z abbreviates Zero in tables.
const Z = Zero

func ext(lba uint64, n uint32, addr uint64) Extent { return Extent{LBA: lba, Len: n, Addr: addr} }

// build inserts exts in order into a new map; contiguous ones merge.
func build(t *testing.T, exts ...Extent) *Map {
	t.Helper()
	m := New()
	for _, e := range exts {
		m.Insert(e, nil)
	}
	mustCheck(t, m)
	return m
}

func mustCheck(t *testing.T, m *Map) {
	t.Helper()
	if err := m.check(); err != nil {
		t.Fatal(err)
	}
}

func extents(m *Map) []Extent {
	var out []Extent
	m.Ascend(func(e Extent) bool {
		out = append(out, e)
		return true
	})
	return out
}

// collect returns a dead callback and the slice it appends to.
func collect() (func(Extent), *[]Extent) {
	var out []Extent
	return func(e Extent) { out = append(out, e) }, &out
}

func TestInsert(t *testing.T) {
	tests := []struct {
		name      string
		init      []Extent
		ins       Extent
		want      []Extent
		wantDead  []Extent
		wantData  uint64
		wantZeros uint64
	}{
		{"empty", nil, ext(8, 8, 100),
			[]Extent{ext(8, 8, 100)}, nil, 8, 0},
		{"exact overwrite", []Extent{ext(0, 8, 100)}, ext(0, 8, 200),
			[]Extent{ext(0, 8, 200)}, []Extent{ext(0, 8, 100)}, 8, 0},
		{"inside split", []Extent{ext(0, 16, 100)}, ext(4, 4, 200),
			[]Extent{ext(0, 4, 100), ext(4, 4, 200), ext(8, 8, 108)}, []Extent{ext(4, 4, 104)}, 16, 0},
		{"left trim", []Extent{ext(8, 8, 100)}, ext(4, 8, 200),
			[]Extent{ext(4, 8, 200), ext(12, 4, 104)}, []Extent{ext(8, 4, 100)}, 12, 0},
		{"right trim", []Extent{ext(0, 8, 100)}, ext(4, 8, 200),
			[]Extent{ext(0, 4, 100), ext(4, 8, 200)}, []Extent{ext(4, 4, 104)}, 12, 0},
		{"spanning several",
			[]Extent{ext(0, 4, 100), ext(8, 4, 200), ext(16, 4, Z)}, ext(2, 16, 500),
			[]Extent{ext(0, 2, 100), ext(2, 16, 500), ext(18, 2, Z)},
			[]Extent{ext(2, 2, 102), ext(8, 4, 200), ext(16, 2, Z)}, 18, 2},
		{"merge right", []Extent{ext(8, 8, 108)}, ext(0, 8, 100),
			[]Extent{ext(0, 16, 100)}, nil, 16, 0},
		{"merge left", []Extent{ext(0, 8, 100)}, ext(8, 8, 108),
			[]Extent{ext(0, 16, 100)}, nil, 16, 0},
		{"merge both", []Extent{ext(0, 8, 100), ext(16, 8, 116)}, ext(8, 8, 108),
			[]Extent{ext(0, 24, 100)}, nil, 24, 0},
		{"merge after overwrite", []Extent{ext(0, 16, 100)}, ext(8, 8, 108),
			[]Extent{ext(0, 16, 100)}, []Extent{ext(8, 8, 108)}, 16, 0},
		{"no merge across address gap", []Extent{ext(0, 8, 100)}, ext(8, 8, 200),
			[]Extent{ext(0, 8, 100), ext(8, 8, 200)}, nil, 16, 0},
		{"no merge across lba gap", []Extent{ext(0, 8, 100)}, ext(9, 8, 108),
			[]Extent{ext(0, 8, 100), ext(9, 8, 108)}, nil, 16, 0},
		{"no merge beyond MaxLen", []Extent{ext(0, MaxLen-4, 100)}, ext(MaxLen-4, 8, 100+MaxLen-4),
			[]Extent{ext(0, MaxLen-4, 100), ext(MaxLen-4, 8, 100+MaxLen-4)}, nil, MaxLen + 4, 0},
		{"merge up to MaxLen", []Extent{ext(0, MaxLen-8, 100)}, ext(MaxLen-8, 8, 100+MaxLen-8),
			[]Extent{ext(0, MaxLen, 100)}, nil, MaxLen, 0},
		{"zero merge", []Extent{ext(0, 8, Z), ext(16, 8, Z)}, ext(8, 8, Z),
			[]Extent{ext(0, 24, Z)}, nil, 0, 24},
		{"zero splits zero", []Extent{ext(0, 16, Z)}, ext(4, 4, 100),
			[]Extent{ext(0, 4, Z), ext(4, 4, 100), ext(8, 8, Z)}, []Extent{ext(4, 4, Z)}, 4, 12},
		{"zero over zero", []Extent{ext(0, 16, Z)}, ext(4, 4, Z),
			[]Extent{ext(0, 16, Z)}, []Extent{ext(4, 4, Z)}, 0, 16},
		{"zero next to data", []Extent{ext(0, 8, 100)}, ext(8, 8, Z),
			[]Extent{ext(0, 8, 100), ext(8, 8, Z)}, nil, 8, 8},
		{"data next to zero address", []Extent{ext(0, 8, Z-16)}, ext(8, 8, Z-8),
			[]Extent{ext(0, 16, Z-16)}, nil, 16, 0},
		{"zero over gaps", []Extent{ext(0, 4, 100), ext(8, 4, 200)}, ext(0, 16, Z),
			[]Extent{ext(0, 16, Z)}, []Extent{ext(0, 4, 100), ext(8, 4, 200)}, 0, 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := build(t, tc.init...)
			dead, got := collect()
			m.Insert(tc.ins, dead)
			mustCheck(t, m)
			if e := extents(m); !slices.Equal(e, tc.want) {
				t.Errorf("Insert(%v) = %v, want %v", tc.ins, e, tc.want)
			}
			if !slices.Equal(*got, tc.wantDead) {
				t.Errorf("Insert(%v) dead %v, want %v", tc.ins, *got, tc.wantDead)
			}
			if d, z := m.Sectors(); d != tc.wantData || z != tc.wantZeros {
				t.Errorf("Insert(%v): Sectors() = %d, %d, want %d, %d", tc.ins, d, z, tc.wantData, tc.wantZeros)
			}
		})
	}
}

func TestInsertPanics(t *testing.T) {
	tests := []Extent{
		ext(0, 0, 100),
		ext(0, MaxLen+1, 100),
		ext(0, 8, Z+1),
		ext(0, 8, Z-7),
		ext(1<<64-4, 8, 100),
	}
	for _, e := range tests {
		t.Run(e.String(), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Insert(%v) did not panic", e)
				}
			}()
			New().Insert(e, nil)
		})
	}
}

func TestRangePanics(t *testing.T) {
	tests := []struct {
		name string
		op   func(m *Map)
	}{
		{"Remove overflows", func(m *Map) { m.Remove(1<<64-4, 8, nil) }},
		{"Lookup overflows", func(m *Map) { m.Lookup(1<<64-4, 8, func(Run) bool { return true }) }},
		{"Remap overflows", func(m *Map) { m.Remap(1<<64-4, 8, 100, 200) }},
		{"Remap beyond Zero", func(m *Map) { m.Remap(0, 8, 100, Z-4) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", tc.name)
				}
			}()
			tc.op(build(t, ext(0, 8, 100)))
		})
	}
}

func TestRemove(t *testing.T) {
	init := []Extent{ext(0, 8, 100), ext(16, 8, Z), ext(32, 8, 300)}
	tests := []struct {
		name     string
		lba, n   uint64
		want     []Extent
		wantDead []Extent
	}{
		{"nothing", 8, 8, init, nil},
		{"zero length", 4, 0, init, nil},
		{"exact", 0, 8, init[1:], []Extent{ext(0, 8, 100)}},
		{"middle", 2, 4,
			[]Extent{ext(0, 2, 100), ext(6, 2, 106), ext(16, 8, Z), ext(32, 8, 300)},
			[]Extent{ext(2, 4, 102)}},
		{"spanning", 4, 32,
			[]Extent{ext(0, 4, 100), ext(36, 4, 304)},
			[]Extent{ext(4, 4, 104), ext(16, 8, Z), ext(32, 4, 300)}},
		{"everything", 0, 1 << 40, nil, init},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := build(t, init...)
			dead, got := collect()
			m.Remove(tc.lba, tc.n, dead)
			mustCheck(t, m)
			if e := extents(m); !slices.Equal(e, tc.want) {
				t.Errorf("Remove(%d, %d) = %v, want %v", tc.lba, tc.n, e, tc.want)
			}
			if !slices.Equal(*got, tc.wantDead) {
				t.Errorf("Remove(%d, %d) dead %v, want %v", tc.lba, tc.n, *got, tc.wantDead)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	m := build(t, ext(4, 4, 100), ext(8, 4, Z), ext(16, 4, 200))
	un := func(lba, n uint64) Run { return Run{LBA: lba, Len: n, Kind: Unmapped} }
	mapped := func(lba, n, addr uint64) Run { return Run{LBA: lba, Len: n, Addr: addr, Kind: Mapped} }
	zeroed := func(lba, n uint64) Run { return Run{LBA: lba, Len: n, Addr: Z, Kind: Zeroed} }
	tests := []struct {
		name   string
		lba, n uint64
		limit  int // stop after this many runs; 0 means never
		want   []Run
	}{
		{"all", 0, 24, 0, []Run{un(0, 4), mapped(4, 4, 100), zeroed(8, 4), un(12, 4), mapped(16, 4, 200), un(20, 4)}},
		{"inside mapped", 5, 2, 0, []Run{mapped(5, 2, 101)}},
		{"starts in zero", 10, 8, 0, []Run{zeroed(10, 2), un(12, 4), mapped(16, 2, 200)}},
		{"gap only", 12, 4, 0, []Run{un(12, 4)}},
		{"after everything", 100, 5, 0, []Run{un(100, 5)}},
		{"empty range", 6, 0, 0, nil},
		{"early stop", 0, 24, 2, []Run{un(0, 4), mapped(4, 4, 100)}},
		{"stop on first", 6, 10, 1, []Run{mapped(6, 2, 102)}},
		{"stop on first gap", 0, 24, 1, []Run{un(0, 4)}},
		{"stop on inner gap", 0, 24, 4, []Run{un(0, 4), mapped(4, 4, 100), zeroed(8, 4), un(12, 4)}},
		{"stop on last gap", 0, 24, 6, []Run{un(0, 4), mapped(4, 4, 100), zeroed(8, 4), un(12, 4), mapped(16, 4, 200), un(20, 4)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []Run
			m.Lookup(tc.lba, tc.n, func(r Run) bool {
				got = append(got, r)
				return len(got) != tc.limit
			})
			if !slices.Equal(got, tc.want) {
				t.Errorf("Lookup(%d, %d) = %v, want %v", tc.lba, tc.n, got, tc.want)
			}
		})
	}
}

func TestRemap(t *testing.T) {
	tests := []struct {
		name      string
		init      []Extent
		lba       uint64
		n         uint32
		old, new  uint64
		want      []Extent
		wantMoved uint64
	}{
		{"full", []Extent{ext(0, 8, 100)}, 0, 8, 100, 500,
			[]Extent{ext(0, 8, 500)}, 8},
		{"partial", []Extent{ext(0, 16, 100)}, 4, 4, 104, 500,
			[]Extent{ext(0, 4, 100), ext(4, 4, 500), ext(8, 8, 108)}, 4},
		{"range wider than extent", []Extent{ext(8, 8, 108)}, 0, 24, 100, 500,
			[]Extent{ext(8, 8, 508)}, 8},
		{"mismatched address untouched", []Extent{ext(0, 8, 100), ext(8, 8, 300)}, 0, 16, 100, 500,
			[]Extent{ext(0, 8, 500), ext(8, 8, 300)}, 8},
		{"nothing matches", []Extent{ext(0, 8, 100)}, 0, 8, 101, 500,
			[]Extent{ext(0, 8, 100)}, 0},
		{"zero untouched", []Extent{ext(0, 8, Z)}, 0, 8, 100, 500,
			[]Extent{ext(0, 8, Z)}, 0},
		{"gap untouched", nil, 0, 8, 100, 500, nil, 0},
		{"merges with neighbours", []Extent{ext(0, 8, 100), ext(8, 8, 200), ext(16, 8, 116)}, 8, 8, 200, 108,
			[]Extent{ext(0, 24, 100)}, 8},
		{"second extent elsewhere", []Extent{ext(0, 8, 100), ext(8, 8, 1108)}, 0, 16, 100, 500,
			[]Extent{ext(0, 8, 500), ext(8, 8, 1108)}, 8},
		{"pieces around a zero hole", []Extent{ext(0, 4, 100), ext(4, 4, Z), ext(8, 8, 108)}, 0, 16, 100, 500,
			[]Extent{ext(0, 4, 500), ext(4, 4, Z), ext(8, 8, 508)}, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := build(t, tc.init...)
			moved := m.Remap(tc.lba, tc.n, tc.old, tc.new)
			mustCheck(t, m)
			if e := extents(m); moved != tc.wantMoved || !slices.Equal(e, tc.want) {
				t.Errorf("Remap(%d, %d, %d, %d) = %d, %v, want %d, %v",
					tc.lba, tc.n, tc.old, tc.new, moved, e, tc.wantMoved, tc.want)
			}
		})
	}
}

func TestClear(t *testing.T) {
	m := build(t, ext(0, 8, 100), ext(16, 8, Z))
	m.Clear()
	mustCheck(t, m)
	if d, z := m.Sectors(); m.Len() != 0 || d != 0 || z != 0 {
		t.Errorf("after Clear: Len() = %d, Sectors() = %d, %d, want 0, 0, 0", m.Len(), d, z)
	}
	m.Insert(ext(0, 8, 100), nil)
	if m.Len() != 1 {
		t.Errorf("Insert after Clear: Len() = %d, want 1", m.Len())
	}
}

// TestCheck makes sure check catches the damage it is meant to catch.
func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		items []item
	}{
		{"overlap", []item{makeItem(0, 8, 100), makeItem(4, 8, 200)}},
		{"zero length", []item{makeItem(0, 0, 100)}},
		{"address beyond Zero", []item{makeItem(0, 8, Z-4)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			for _, it := range tc.items {
				m.set(it)
			}
			if err := m.check(); err == nil {
				t.Errorf("check() of %v = nil, want an error", tc.items)
			}
		})
	}
	m := build(t, ext(0, 8, 100))
	m.data++
	if err := m.check(); err == nil {
		t.Errorf("check() with a wrong sector count = nil, want an error")
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Unmapped: "unmapped", Mapped: "mapped", Zeroed: "zeroed", 7: "kind(7)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

// state is what the model holds for one mapped sector.
type state struct {
	zero bool
	addr uint64
}

// model is the reference: every mapped sector, one entry each.
type model map[uint64]state

const modelSpace = 4096 // sectors in the model's LBA space

func (md model) covers(e Extent, x uint64) bool {
	s, ok := md[x]
	if e.Addr == Zero {
		return ok && s.zero
	}
	return ok && !s.zero && s.addr == e.Addr+(x-e.LBA)
}

func (md model) run(x uint64) Run {
	s, ok := md[x]
	switch {
	case !ok:
		return Run{LBA: x, Len: 1, Kind: Unmapped}
	case s.zero:
		return Run{LBA: x, Len: 1, Addr: Zero, Kind: Zeroed}
	}
	return Run{LBA: x, Len: 1, Addr: s.addr, Kind: Mapped}
}

func (md model) sectors() (data, zero uint64) {
	for _, s := range md {
		if s.zero {
			zero++
		} else {
			data++
		}
	}
	return data, zero
}

// sim drives a Map and a model with the same random operations.
type sim struct {
	t    *testing.T
	rng  *rand.Rand
	m    *Map
	md   model
	next uint64 // next fresh log address
}

func TestModel(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	s := &sim{t: t, rng: rand.New(rand.NewPCG(seed, 0)), m: New(), md: model{}, next: 1000}
	ops := 3000
	if testing.Short() {
		ops = 500
	}
	for i := range ops {
		op := s.step()
		if err := s.m.check(); err != nil {
			t.Fatalf("op %d %s: %v", i, op, err)
		}
		s.compare(fmt.Sprintf("op %d %s", i, op))
	}
}

// step applies one random operation and returns its description.
func (s *sim) step() string {
	lba := s.rng.Uint64N(modelSpace)
	n := 1 + s.rng.Uint64N(min(modelSpace-lba, 1+s.rng.Uint64N(300)))
	switch p := s.rng.IntN(10); {
	case p < 5:
		e := ext(lba, uint32(n), s.dataAddr(lba, n))
		s.apply(e.String(), e.LBA, n, func(dead func(Extent)) { s.m.Insert(e, dead) }, func(x uint64) (state, bool) {
			return state{addr: e.Addr + (x - lba)}, true
		})
		return "insert " + e.String()
	case p < 7:
		e := ext(lba, uint32(n), Zero)
		s.apply(e.String(), lba, n, func(dead func(Extent)) { s.m.Insert(e, dead) }, func(uint64) (state, bool) {
			return state{zero: true}, true
		})
		return "insert " + e.String()
	case p < 8:
		desc := fmt.Sprintf("remove %d+%d", lba, n)
		s.apply(desc, lba, n, func(dead func(Extent)) { s.m.Remove(lba, n, dead) }, func(uint64) (state, bool) {
			return state{}, false
		})
		return desc
	}
	return s.remap(lba, n)
}

// dataAddr picks a fresh address, or half the time one that continues the
// data mapped just before lba so that merges happen.
func (s *sim) dataAddr(lba, n uint64) uint64 {
	if prev, ok := s.md[lba-1]; lba > 0 && ok && !prev.zero && s.rng.IntN(2) == 0 {
		return prev.addr + 1
	}
	a := s.next
	s.next += n + s.rng.Uint64N(2)*8
	return a
}

// apply runs op, which overwrites or removes [lba, lba+n), checking every
// dead piece against the model before updating it with after.
func (s *sim) apply(desc string, lba, n uint64, op func(func(Extent)), after func(uint64) (state, bool)) {
	var want uint64
	for x := lba; x < lba+n; x++ {
		if _, ok := s.md[x]; ok {
			want++
		}
	}
	var got uint64
	seen := map[uint64]bool{}
	op(func(e Extent) {
		for x := e.LBA; x < e.LBA+uint64(e.Len); x++ {
			if x < lba || x >= lba+n || seen[x] || !s.md.covers(e, x) {
				s.t.Fatalf("%s: dead %v: sector %d not overwritten or reported twice", desc, e, x)
			}
			seen[x] = true
		}
		got += uint64(e.Len)
	})
	if got != want {
		s.t.Fatalf("%s: dead reported %d sectors, model overwrote %d", desc, got, want)
	}
	for x := lba; x < lba+n; x++ {
		if st, ok := after(x); ok {
			s.md[x] = st
		} else {
			delete(s.md, x)
		}
	}
}

// remap relocates a range whose start is mapped, as the cleaner would.
func (s *sim) remap(lba, n uint64) string {
	old := s.next + 7 // matches nothing
	if st, ok := s.md[lba]; ok && !st.zero {
		old = st.addr
	}
	newAddr := s.next
	s.next += n
	var want uint64
	for x := lba; x < lba+n; x++ {
		if st, ok := s.md[x]; ok && !st.zero && st.addr == old+(x-lba) {
			s.md[x] = state{addr: newAddr + (x - lba)}
			want++
		}
	}
	desc := fmt.Sprintf("remap %d+%d %d->%d", lba, n, old, newAddr)
	if got := s.m.Remap(lba, uint32(n), old, newAddr); got != want {
		s.t.Fatalf("%s moved %d, want %d", desc, got, want)
	}
	return desc
}

// compare checks every sector, a random sub-range and the totals.
func (s *sim) compare(desc string) {
	s.compareRange(desc, 0, modelSpace)
	lba := s.rng.Uint64N(modelSpace)
	s.compareRange(desc, lba, s.rng.Uint64N(modelSpace-lba+1))
	d, z := s.m.Sectors()
	if wd, wz := s.md.sectors(); d != wd || z != wz {
		s.t.Fatalf("%s: Sectors() = %d, %d, model %d, %d", desc, d, z, wd, wz)
	}
}

func (s *sim) compareRange(desc string, lba, n uint64) {
	x := lba
	s.m.Lookup(lba, n, func(r Run) bool {
		if r.LBA != x || r.Len == 0 {
			s.t.Fatalf("%s: Lookup(%d, %d) run %+v, want one at %d", desc, lba, n, r, x)
		}
		for i := range r.Len {
			one := Run{LBA: r.LBA + i, Len: 1, Addr: r.Addr, Kind: r.Kind}
			if r.Kind == Mapped {
				one.Addr += i
			}
			if want := s.md.run(r.LBA + i); one != want {
				s.t.Fatalf("%s: Lookup(%d, %d) sector %d = %+v, model %+v", desc, lba, n, r.LBA+i, one, want)
			}
		}
		x += r.Len
		return true
	})
	if x != lba+n {
		s.t.Fatalf("%s: Lookup(%d, %d) ended at %d", desc, lba, n, x)
	}
}

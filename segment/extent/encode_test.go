package extent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

// encode builds a raw encoding of items, valid or not.
func encode(count uint64, items ...item) []byte {
	b := binary.LittleEndian.AppendUint64(nil, count)
	for _, it := range items {
		b = binary.LittleEndian.AppendUint64(b, it.lba)
		b = binary.LittleEndian.AppendUint64(b, it.v)
	}
	return b
}

func TestDecodeRoundTrip(t *testing.T) {
	m := build(t, ext(0, 8, 100), ext(8, 8, Z), ext(16, 8, 116), ext(1<<40, MaxLen, Z-MaxLen))
	// Adjacent mergeable extents must survive decoding unmerged.
	unmerged := encode(2, makeItem(0, 8, 100), makeItem(8, 8, 108))
	tests := []struct {
		name string
		b    []byte
		rest []byte
	}{
		{"empty map", New().AppendBinary(nil), nil},
		{"map", m.AppendBinary(nil), nil},
		{"unmerged", unmerged, nil},
		{"with rest", m.AppendBinary(nil), []byte("tail")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, rest, err := Decode(append(slices.Clip(tc.b), tc.rest...))
			if err != nil {
				t.Fatalf("Decode(%x) error %v", tc.b, err)
			}
			mustCheck(t, got)
			if re := got.AppendBinary(nil); !bytes.Equal(re, tc.b) || !bytes.Equal(rest, tc.rest) {
				t.Errorf("Decode(%x) re-encodes as %x, rest %q, want rest %q", tc.b, re, rest, tc.rest)
			}
		})
	}
}

func TestDecodeCorrupt(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
	}{
		{"no header", nil},
		{"short header", []byte{1, 0, 0}},
		{"count too large", encode(2, makeItem(0, 8, 100))},
		{"count overflows", encode(1<<61, makeItem(0, 8, 100))},
		{"truncated extent", encode(1, makeItem(0, 8, 100))[:20]},
		{"zero length", encode(1, makeItem(0, 0, 100))},
		{"address beyond Zero", encode(1, makeItem(0, 8, Z-4))},
		{"lba overflows", encode(1, makeItem(1<<64-4, 8, 100))},
		{"out of order", encode(2, makeItem(16, 8, 100), makeItem(0, 8, 200))},
		{"overlapping", encode(2, makeItem(0, 8, 100), makeItem(4, 8, 200))},
		{"duplicate", encode(2, makeItem(0, 8, 100), makeItem(0, 8, 200))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, rest, err := Decode(tc.b)
			if !errors.Is(err, ErrCorrupt) || m != nil || rest != nil {
				t.Errorf("Decode(%x) = %v, %x, %v, want nil, nil, ErrCorrupt", tc.b, m, rest, err)
			}
		})
	}
}

// TestDecodeLarge decodes maps that span many nodes, for every degree load
// might meet, and checks the result extent by extent.
func TestDecodeLarge(t *testing.T) {
	for _, n := range []int{1, 127, 128, 129, 1000, 20000} {
		want := randomMap(n, 1)
		b := want.AppendBinary(nil)
		got, _, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(%d extents) error %v", n, err)
		}
		mustCheck(t, got)
		if !slices.Equal(extents(got), extents(want)) {
			t.Errorf("Decode(%d extents) differs from the encoded map", n)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(New().AppendBinary(nil))
	f.Add(encode(2, makeItem(0, 8, 100), makeItem(8, 8, Z)))
	f.Add(append(encode(1, makeItem(1<<40, MaxLen, 1<<30)), 1, 2, 3))
	f.Add(randomMap(20, 1).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, rest, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode(%x) error %v does not wrap ErrCorrupt", b, err)
			}
			return
		}
		if err := m.check(); err != nil {
			t.Fatalf("Decode(%x): %v", b, err)
		}
		if re := m.AppendBinary(nil); !bytes.Equal(re, b[:len(b)-len(rest)]) {
			t.Fatalf("Decode(%x) re-encodes as %x", b, re)
		}
	})
}

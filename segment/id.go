package segment

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// IDSize is the length of base ids, version ids and tokens: 160 bits.
const IDSize = 20

// ID is a 160-bit identifier: a volume's random base id, a version id from the
// hash chain, or a token. The zero ID means "none".
type ID [IDSize]byte

// String returns the 40 lowercase hex characters of id.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses 40 hex characters (either case).
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("id %q: want %d hex characters, have %d", s, 2*IDSize, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("id %q: %w", s, err)
	}
	return id, nil
}

// RandomID returns a fresh random id (crypto/rand).
func RandomID() ID {
	var id ID
	rand.Read(id[:]) // never fails on Linux (Go 1.24+ crashes the program instead)
	return id
}

// hash is the chain's H: SHA-256 truncated to 160 bits. On this project's machines
// SHA-256 (SHA-NI) runs at the speed of SHA-1 (1.80 vs 1.92 GB/s) and, unlike SHA-1,
// is collision resistant. See docs/FORMAT.md "Hash chain".
func hash(parts ...[]byte) ID {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	var sum [sha256.Size]byte
	var id ID
	copy(id[:], h.Sum(sum[:0]))
	return id
}

// viewSecret is s, the secret of one ownership epoch of a volume on this store:
// H(store secret || base || epoch). Only this store can compute it.
func viewSecret(storeSecret *[32]byte, base ID, epoch uint64) ID {
	var e [8]byte
	binary.LittleEndian.PutUint64(e[:], epoch)
	return hash(storeSecret[:], base[:], e[:])
}

// chainStep computes, for an entry whose entropy E(n) is known, the token
// S(n) = H(s || E(n)) and the public version id I(n) = H(S(n)).
func chainStep(s ID, entropy ID) (token, id ID) {
	token = hash(s[:], entropy[:])
	return token, hash(token[:])
}

// linkMatches reports whether link (the token revealed by entry n+1) names the
// version head (the id of entry n): H(link) == head.
func linkMatches(link, head ID) bool { return hash(link[:]) == head }

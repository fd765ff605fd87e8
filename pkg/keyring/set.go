package keyring

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

// Set is the immutable collection of keys from keyrings loaded together,
// with ids unique across them. It is safe for concurrent use. A nil *Set is
// an empty set.
type Set struct {
	keys     map[string]*Key
	sorted   []*Key // by id
	keyrings []string
}

// File is an age-encrypted keyring to load.
type File struct {
	// Name labels the keyring in errors and logs (usually its file name).
	Name string
	// Ciphertext is the age file, binary or ASCII-armored.
	Ciphertext []byte
}

// Load decrypts and parses each file with the identity and joins them into
// a Set (see DecryptKeyring and NewSet). On error nothing is left loaded:
// keys already parsed are destroyed.
func Load(id *Identity, files ...File) (*Set, error) {
	var rings []*Keyring
	for _, f := range files {
		kr, err := DecryptKeyring(id, f.Name, f.Ciphertext)
		if err != nil {
			for _, r := range rings {
				r.Destroy()
			}
			return nil, err
		}
		rings = append(rings, kr)
	}
	s, err := NewSet(rings...)
	if err != nil {
		for _, r := range rings {
			r.Destroy()
		}
		return nil, err
	}
	return s, nil
}

// NewSet joins keyrings into a Set, which then owns their keys (destroy them
// through Set.Destroy). A key id defined twice is a *DuplicateKeyError
// naming both keyrings; on error the keyrings stay the caller's.
func NewSet(keyrings ...*Keyring) (*Set, error) {
	s := &Set{keys: map[string]*Key{}}
	for _, kr := range keyrings {
		s.keyrings = append(s.keyrings, kr.name)
		for _, k := range kr.keys {
			if prev, dup := s.keys[k.info.ID]; dup {
				return nil, &DuplicateKeyError{ID: k.info.ID, First: prev.info.Keyring, Second: kr.name}
			}
			s.keys[k.info.ID] = k
			s.sorted = append(s.sorted, k)
		}
	}
	slices.SortFunc(s.sorted, func(a, b *Key) int { return strings.Compare(a.info.ID, b.info.ID) })
	return s, nil
}

// Key returns the key with the given id, or an error wrapping ErrUnknownKey.
func (s *Set) Key(id string) (*Key, error) {
	if s != nil {
		if k, ok := s.keys[id]; ok {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w %s", ErrUnknownKey, quoteID(id))
}

// Keys returns the public description of every key, sorted by id.
func (s *Set) Keys() []KeyInfo {
	if s == nil {
		return nil
	}
	out := make([]KeyInfo, len(s.sorted))
	for i, k := range s.sorted {
		out[i] = k.info
	}
	return out
}

// Len returns the number of keys.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.sorted)
}

// Keyrings returns the names of the keyrings in the set, in load order.
func (s *Set) Keyrings() []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s.keyrings)
}

// Destroy wipes every private key in the set (within the limits the package
// documentation lists). It first waits for signing calls already in flight
// on these keys; calls made afterwards fail with ErrDestroyed. Swap the set
// out of use before destroying it. It is idempotent and safe to call
// concurrently.
func (s *Set) Destroy() {
	if s == nil {
		return
	}
	for _, k := range s.sorted {
		k.destroy()
	}
}

// String counts the keys; no secrets.
func (s *Set) String() string {
	return fmt.Sprintf("keyring.Set{keyrings: %d, keys: %d, private_keys: REDACTED}", len(s.Keyrings()), s.Len())
}

// Format makes every fmt verb print String.
func (s *Set) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// LogValue logs the key count and keyring names.
func (s *Set) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("keys", s.Len()), slog.Any("keyrings", s.Keyrings()), slog.String("private_keys", redacted))
}

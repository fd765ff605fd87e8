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
	clients  map[string]*Client
	open     []string // keyrings without clients
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

// NewSet joins keyrings into a Set, which then owns their keys and client
// secrets (destroy them through Set.Destroy). A key id defined twice is a
// *DuplicateKeyError naming both keyrings, a client id declared twice a
// *DuplicateClientError, a secret shared by two clients an error naming
// them; on error the keyrings stay the caller's.
func NewSet(keyrings ...*Keyring) (*Set, error) {
	s := &Set{keys: map[string]*Key{}, clients: map[string]*Client{}}
	var clients []*Client
	for _, kr := range keyrings {
		s.keyrings = append(s.keyrings, kr.name)
		if len(kr.clients) == 0 {
			s.open = append(s.open, kr.name)
		}
		for _, c := range kr.clients {
			if prev, dup := s.clients[c.ID]; dup {
				return nil, &DuplicateClientError{ID: c.ID, First: prev.keyring, Second: kr.name}
			}
			if err := sameSecret(clients, c); err != nil {
				return nil, fmt.Errorf("keyring %q: %w", kr.name, err)
			}
			s.clients[c.ID] = c
			clients = append(clients, c)
		}
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

// Client returns the client with the given id, declared by any keyring of
// the set.
func (s *Set) Client(id string) (*Client, bool) {
	if s == nil {
		return nil, false
	}
	c, ok := s.clients[id]
	return c, ok
}

// Clients returns every client of the set, sorted by id.
func (s *Set) Clients() []*Client {
	if s == nil {
		return nil
	}
	out := make([]*Client, 0, len(s.clients))
	for _, c := range s.clients {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *Client) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Policed reports whether any keyring of the set declares clients.
func (s *Set) Policed() bool { return s != nil && len(s.clients) > 0 }

// OpenKeyrings returns the names of the set's keyrings that declare no
// clients, whose keys anyone may use (signerd --require-auth refuses them),
// in load order.
func (s *Set) OpenKeyrings() []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s.open)
}

// Destroy wipes every private key and client secret in the set (within the
// limits the package documentation lists). It first waits for signing
// calls (and Client.MatchSecret calls) already in flight; calls made
// afterwards fail with ErrDestroyed. Swap the set out of use before
// destroying it. It is idempotent and safe to call concurrently.
func (s *Set) Destroy() {
	if s == nil {
		return
	}
	for _, k := range s.sorted {
		k.destroy()
	}
	for _, c := range s.clients {
		c.destroy()
	}
}

// String counts the keys; no secrets.
func (s *Set) String() string {
	n := 0
	if s != nil {
		n = len(s.clients)
	}
	return fmt.Sprintf("keyring.Set{keyrings: %d, keys: %d, clients: %d, private_keys: REDACTED}", len(s.Keyrings()), s.Len(), n)
}

// Format makes every fmt verb print String.
func (s *Set) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// LogValue logs the key count and keyring names.
func (s *Set) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("keys", s.Len()), slog.Any("keyrings", s.Keyrings()), slog.String("private_keys", redacted))
}

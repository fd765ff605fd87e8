package keyring

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// MaxPlaintextSize bounds a decrypted keyring. Thousands of keys fit.
const MaxPlaintextSize = 1 << 20

// The keyring formats this package reads: the plaintext's "version".
const (
	// Format1 holds keys only.
	Format1 = 1
	// Format2 also names the keyring (keyring_id) and its version
	// (keyring_version), which a signed statement about the keyring must
	// repeat (internal/keyringsig): signerd requires it for signed keyrings.
	Format2 = 2
)

// MaxIDLength is the longest key id accepted.
const MaxIDLength = 64

// Keyring is the parsed content of one keyring: its keys, in file order.
type Keyring struct {
	name     string
	format   int
	id       string
	version  uint64
	audience string
	clients  []*Client // in file order; none for an open keyring
	keys     []*Key
}

// Name returns the name the keyring was loaded under.
func (r *Keyring) Name() string { return r.name }

// FormatVersion returns the plaintext's format ("version"), Format1 or
// Format2.
func (r *Keyring) FormatVersion() int { return r.format }

// KeyringID returns the keyring id a Format2 plaintext names; "" for
// Format1.
func (r *Keyring) KeyringID() string { return r.id }

// KeyringVersion returns the keyring version a Format2 plaintext names; 0
// for Format1.
func (r *Keyring) KeyringVersion() uint64 { return r.version }

// Keys returns the keyring's keys in file order.
func (r *Keyring) Keys() []*Key { return append([]*Key(nil), r.keys...) }

// Audience returns the audience a keyring with clients names; "" for an
// open keyring.
func (r *Keyring) Audience() string { return r.audience }

// Clients returns the clients the keyring declares, in file order; none
// for an open keyring.
func (r *Keyring) Clients() []*Client { return slices.Clone(r.clients) }

// Policed reports whether the keyring declares clients: then each key may
// be used only by the clients its policy lists.
func (r *Keyring) Policed() bool { return len(r.clients) > 0 }

// Destroy wipes every key and client secret of the keyring once signing
// calls in flight are done (see Set.Destroy). Don't call it on keyrings
// handed to NewSet: the set owns them.
func (r *Keyring) Destroy() {
	for _, k := range r.keys {
		k.destroy()
	}
	for _, c := range r.clients {
		c.destroy()
	}
}

// String names the keyring and counts its keys; no secrets.
func (r *Keyring) String() string {
	if r == nil {
		return "keyring.Keyring(nil)"
	}
	return fmt.Sprintf("keyring.Keyring{name: %q, keys: %d, clients: %d, private_keys: REDACTED}", r.name, len(r.keys), len(r.clients))
}

// Format makes every fmt verb print String.
func (r *Keyring) Format(f fmt.State, _ rune) { io.WriteString(f, r.String()) }

// LogValue logs the keyring's name and key count.
func (r *Keyring) LogValue() slog.Value {
	if r == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.String("keyring", r.name), slog.Int("keys", len(r.keys)), slog.Int("clients", len(r.clients)), slog.String("private_keys", redacted))
}

// DecryptKeyring decrypts an age-encrypted keyring, binary or ASCII-armored,
// with the identity, and parses it. name labels the keyring in errors and
// logs (usually its file name). The plaintext lives only in a buffer this
// function allocates and wipes before returning. Decryption errors wrap
// age's (errors.Is(err, age.ErrIncorrectIdentity) and errors.As with
// *age.NoIdentityMatchError work); parse errors are *ParseError.
func DecryptKeyring(id *Identity, name string, ciphertext []byte) (*Keyring, error) {
	if id == nil || len(id.ids) == 0 {
		return nil, fmt.Errorf("keyring %q: decrypt: no age identity", name)
	}
	var src io.Reader = bytes.NewReader(ciphertext)
	if bytes.HasPrefix(bytes.TrimLeft(ciphertext, " \t\r\n"), []byte(armor.Header)) {
		src = armor.NewReader(src)
	}
	r, err := age.Decrypt(src, id.ids...)
	if err != nil {
		return nil, fmt.Errorf("keyring %q: decrypt: %w", name, err)
	}
	// The plaintext is shorter than the ciphertext, so one buffer of that
	// size (capped) is never regrown, and no unwiped copy is left behind.
	buf := make([]byte, min(len(ciphertext), MaxPlaintextSize)+1)
	defer clear(buf)
	n, err := io.ReadFull(r, buf)
	switch {
	case err == nil:
		return nil, fmt.Errorf("keyring %q: %w: plaintext exceeds %d bytes", name, ErrTooLarge, MaxPlaintextSize)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// io.ReadFull turns a clean EOF into these; age returns EOF only
		// after authenticating the final chunk.
	default:
		return nil, fmt.Errorf("keyring %q: decrypt: %w", name, err)
	}
	return ParseKeyring(name, buf[:n])
}

// ParseKeyring parses keyring plaintext JSON (see the package documentation
// for the format). name labels the keyring in errors. The caller keeps
// ownership of plaintext and should wipe it; ParseKeyring wipes every copy
// of key material it makes. On error the Keyring is nil and the error is a
// *ParseError.
func ParseKeyring(name string, plaintext []byte) (*Keyring, error) {
	hdr, entries, err := readKeyringJSON(name, plaintext)
	defer func() {
		for i := range entries {
			clear(entries[i].pem)
		}
		hdr.wipe() // what no Client took
	}()
	if err != nil {
		return nil, err
	}
	kr := &Keyring{name: name, format: hdr.format, id: hdr.id, version: hdr.version, audience: hdr.audience}
	fail := func(err error) (*Keyring, error) {
		kr.Destroy()
		return nil, err
	}
	if err := kr.takeClients(&hdr); err != nil {
		return fail(err)
	}
	seen := map[string]int{}
	for i, e := range entries {
		perr := func(field string, err error) error {
			return &ParseError{Keyring: name, Index: i, KeyID: e.id, Field: field, Err: err}
		}
		if !e.has.id {
			return fail(perr("id", errors.New("missing")))
		}
		if err := checkID(e.rawID); err != nil {
			return fail(perr("id", err))
		}
		if j, dup := seen[e.id]; dup {
			return fail(perr("id", fmt.Errorf("duplicate: keys[%d] has the same id", j)))
		}
		seen[e.id] = i
		if !e.has.algorithm {
			return fail(perr("algorithm", errors.New("missing, want one of ed25519, ecdsa-p256, ecdsa-secp256k1")))
		}
		alg := Algorithm(e.algorithm)
		if !alg.valid() {
			return fail(perr("algorithm", fmt.Errorf("unknown algorithm %s, want one of ed25519, ecdsa-p256, ecdsa-secp256k1", quoteName(e.algorithm))))
		}
		pol, err := kr.keyPolicy(e.policy, alg, perr)
		if err != nil {
			return fail(err)
		}
		if !e.has.pem {
			return fail(perr("private_key_pem", errors.New("missing")))
		}
		raw, err := parsePrivateKeyPEM(e.pem)
		if err != nil {
			return fail(perr("private_key_pem", err))
		}
		if raw.alg != alg {
			raw.wipe()
			return fail(perr("private_key_pem", fmt.Errorf("the key is %s but algorithm is %s", raw.alg, alg)))
		}
		k, err := newKey(e.id, name, raw)
		if err != nil {
			return fail(perr("private_key_pem", err))
		}
		k.policed, k.policy = len(kr.clients) > 0, pol
		kr.keys = append(kr.keys, k)
	}
	return kr, nil
}

// takeClients checks the audience and clients the header declares and
// turns them into the keyring's Clients, which take over their secrets.
func (kr *Keyring) takeClients(hdr *keyringHeader) error {
	perr := func(field string, err error) error {
		return &ParseError{Keyring: kr.name, Index: -1, Field: field, Err: err}
	}
	switch {
	case hdr.has.clients && !hdr.has.audience:
		return perr("audience", errors.New("missing, want the name of this deployment (e.g. payments-prod), which every client request repeats: a keyring that declares clients needs one"))
	case hdr.has.audience && !hdr.has.clients:
		return perr("audience", errors.New("given without clients: a keyring without clients is open and has no use for an audience; declare clients or remove audience"))
	}
	ids := map[string]int{}
	for i := range hdr.clients {
		e := &hdr.clients[i]
		if j, dup := ids[e.id]; dup {
			return perr(fmt.Sprintf("clients[%d].id", i), fmt.Errorf("duplicate: clients[%d] has the same id %s", j, quoteName(e.id)))
		}
		ids[e.id] = i
		c := &Client{ID: e.id, Audience: kr.audience, Rate: e.rate, keyring: kr.name, secrets: e.secrets}
		c.guard.init()
		e.secrets = nil // the Client owns them now
		kr.clients = append(kr.clients, c)
		if err := sameSecret(kr.clients[:i], c); err != nil {
			return perr(fmt.Sprintf("clients[%d].secrets", i), err)
		}
	}
	return nil
}

// sameSecret reports a secret c shares with itself or with one of others:
// two clients with one secret could each sign as the other.
func sameSecret(others []*Client, c *Client) error {
	if len(c.secrets) == 2 && subtle.ConstantTimeCompare(c.secrets[0], c.secrets[1]) == 1 {
		return errors.New("the two secrets are the same, want two different secrets (the new one and the one being retired)")
	}
	for _, o := range others {
		for _, a := range o.secrets {
			for _, b := range c.secrets {
				if subtle.ConstantTimeCompare(a, b) == 1 {
					return fmt.Errorf("a secret of client %s is also one of client %s (keyring %q): give every client its own secret, or one could sign as the other", quoteName(c.ID), quoteName(o.ID), o.keyring)
				}
			}
		}
	}
	return nil
}

// keyPolicy checks a key's policy entry against the keyring's clients and
// the key's algorithm, and returns the KeyPolicy, or nil for none.
func (kr *Keyring) keyPolicy(e *policyEntry, alg Algorithm, perr func(string, error) error) (*KeyPolicy, error) {
	if e == nil {
		return nil, nil
	}
	if len(kr.clients) == 0 {
		return nil, perr("policy", errors.New("a policy on a key of a keyring that declares no clients: declare clients (and the audience) or remove the policy (an open keyring lets anyone use its keys)"))
	}
	for i, id := range e.clients {
		if !slices.ContainsFunc(kr.clients, func(c *Client) bool { return c.ID == id }) {
			return nil, perr(fmt.Sprintf("policy.clients[%d]", i), fmt.Errorf("client %s is not declared in this keyring's clients, want one of %s", quoteName(id), kr.clientIDs()))
		}
	}
	supported := kindsFor(alg)
	kinds := e.kinds
	for i, k := range kinds {
		if !slices.Contains(supported, k) {
			return nil, perr(fmt.Sprintf("policy.kinds[%d]", i), fmt.Errorf("%s keys can't sign kind %q (ed25519 signs whole messages), want only %q", alg, k, supported))
		}
	}
	if kinds == nil {
		kinds = supported
	}
	return &KeyPolicy{Clients: e.clients, Kinds: kinds, Rate: e.rate, MaxMessageBytes: e.maxMessage}, nil
}

// clientIDs lists the keyring's client ids for errors.
func (kr *Keyring) clientIDs() string {
	ids := make([]string, len(kr.clients))
	for i, c := range kr.clients {
		ids[i] = quoteName(c.ID)
	}
	return strings.Join(ids, ", ")
}

// checkID enforces the id charset [A-Za-z0-9._-]{1,64}.
func checkID(id []byte) error {
	if len(id) == 0 || len(id) > MaxIDLength {
		return fmt.Errorf("%d bytes long, want 1 to %d characters from [A-Za-z0-9._-]", len(id), MaxIDLength)
	}
	for i, c := range id {
		if !idChar(c) {
			return fmt.Errorf("invalid character at position %d, want only [A-Za-z0-9._-]", i+1)
		}
	}
	return nil
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// quoteName quotes a name from the keyring (an unknown field, an unknown
// algorithm, a client id) for an error, but only when it is short and made of id
// characters: a misplaced secret (hex, base64 or PEM text pasted into the
// wrong place) is longer or has other characters, and is then described only
// by its length.
func quoteName(s string) string {
	if len(s) == 0 || len(s) > 24 || checkID([]byte(s)) != nil {
		return fmt.Sprintf("(%d bytes, not shown)", len(s))
	}
	return fmt.Sprintf("%q", s)
}

// quoteID quotes a key id asked for by a caller, if it is a well-formed id.
func quoteID(s string) string {
	if checkID([]byte(s)) != nil {
		return fmt.Sprintf("(malformed id, %d bytes)", len(s))
	}
	return fmt.Sprintf("%q", s)
}

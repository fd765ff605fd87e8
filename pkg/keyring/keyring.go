package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"

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
	// repeat (pkg/keyringsig): signerd requires it for signed keyrings.
	Format2 = 2
)

// MaxIDLength is the longest key id accepted.
const MaxIDLength = 64

// Keyring is the parsed content of one keyring: its keys, in file order.
type Keyring struct {
	name    string
	format  int
	id      string
	version uint64
	keys    []*Key
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

// Destroy wipes every key of the keyring once signing calls in flight are
// done (see Set.Destroy). Don't call it on keyrings handed to NewSet: the
// set owns them.
func (r *Keyring) Destroy() {
	for _, k := range r.keys {
		k.destroy()
	}
}

// String names the keyring and counts its keys; no secrets.
func (r *Keyring) String() string {
	if r == nil {
		return "keyring.Keyring(nil)"
	}
	return fmt.Sprintf("keyring.Keyring{name: %q, keys: %d, private_keys: REDACTED}", r.name, len(r.keys))
}

// Format makes every fmt verb print String.
func (r *Keyring) Format(f fmt.State, _ rune) { io.WriteString(f, r.String()) }

// LogValue logs the keyring's name and key count.
func (r *Keyring) LogValue() slog.Value {
	if r == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.String("keyring", r.name), slog.Int("keys", len(r.keys)), slog.String("private_keys", redacted))
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
	}()
	if err != nil {
		return nil, err
	}
	kr := &Keyring{name: name, format: hdr.format, id: hdr.id, version: hdr.version}
	fail := func(err error) (*Keyring, error) {
		kr.Destroy()
		return nil, err
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
		kr.keys = append(kr.keys, k)
	}
	return kr, nil
}

// checkID enforces the id charset [A-Za-z0-9._-]{1,64}.
func checkID(id []byte) error {
	if len(id) == 0 || len(id) > MaxIDLength {
		return fmt.Errorf("%d bytes long, want 1 to %d characters from [A-Za-z0-9._-]", len(id), MaxIDLength)
	}
	for i, c := range id {
		if !idChar(c) {
			return fmt.Errorf("invalid character at position %d, want only [A-Za-z0-9._-]", i)
		}
	}
	return nil
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// quoteName quotes a name from the keyring (an unknown field, an unknown
// algorithm) for an error, but only when it is short and made of id
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

// keyEntry is one element of "keys" as read from the JSON.
type keyEntry struct {
	rawID     []byte
	id        string // set only when rawID is a valid id
	algorithm string
	pem       []byte // unescaped private_key_pem, wiped by ParseKeyring
	has       struct{ id, algorithm, pem bool }
}

// keyringHeader is what a keyring says about itself besides its keys.
type keyringHeader struct {
	format  int
	id      string // Format2 only
	version uint64 // Format2 only
}

// readKeyringJSON reads the JSON structure, checking syntax, field names and
// types and the version. Even on error, the entries returned so far hold
// PEM buffers the caller must wipe.
func readKeyringJSON(name string, b []byte) (hdr keyringHeader, entries []keyEntry, err error) {
	r := &jsonReader{b: b}
	index := -1 // the key being read, for errors
	var keyID string
	perr := func(field string, err error) error {
		if pe, ok := err.(*ParseError); ok {
			return pe
		}
		var dup *duplicateFieldError
		if errors.As(err, &dup) {
			field = quoteName(dup.name)
		}
		if index < 0 {
			return &ParseError{Keyring: name, Index: -1, Field: field, Err: err}
		}
		return &ParseError{Keyring: name, Index: index, KeyID: keyID, Field: field, Err: err}
	}
	if len(b) == 0 {
		return hdr, nil, perr("", errors.New("empty plaintext, want a JSON object"))
	}
	var version int
	var hasVersion, hasKeys, hasID, hasKeyringVersion bool
	err = r.object(func(field string) error {
		switch field {
		case "version":
			hasVersion = true
			if k := r.kind(); k != "number" {
				return perr("version", fmt.Errorf("want the number %d or %d, got %s", Format1, Format2, k))
			}
			v, err := r.uint()
			if err != nil {
				return perr("version", err)
			}
			version = v
			return nil
		case "keyring_id":
			hasID = true
			if k := r.kind(); k != "string" {
				return perr("keyring_id", fmt.Errorf("want a string, got %s", k))
			}
			s, err := r.str()
			if err != nil {
				return perr("keyring_id", err)
			}
			if err := checkID(s); err != nil {
				return perr("keyring_id", err)
			}
			hdr.id = string(s)
			return nil
		case "keyring_version":
			hasKeyringVersion = true
			if k := r.kind(); k != "number" {
				return perr("keyring_version", fmt.Errorf("want an unsigned integer, got %s", k))
			}
			v, err := r.uint64()
			if err != nil {
				return perr("keyring_version", err)
			}
			hdr.version = v
			return nil
		case "keys":
			hasKeys = true
			if k := r.kind(); k != "array" {
				return perr("keys", fmt.Errorf("want an array, got %s", k))
			}
			err := r.array(func(i int) error {
				index, keyID = i, ""
				if k := r.kind(); k != "object" {
					return perr("", fmt.Errorf("want an object, got %s", k))
				}
				entries = append(entries, keyEntry{})
				e := &entries[len(entries)-1]
				err := r.object(func(field string) error {
					var dst *[]byte
					switch field {
					case "id":
						e.has.id = true
						dst = &e.rawID
					case "algorithm":
						e.has.algorithm = true
					case "private_key_pem":
						e.has.pem = true
						dst = &e.pem
					default:
						return perr(quoteName(field), errors.New("unknown field, want id, algorithm and private_key_pem"))
					}
					if k := r.kind(); k != "string" {
						return perr(field, fmt.Errorf("want a string, got %s", k))
					}
					s, err := r.str()
					if err != nil {
						return perr(field, err)
					}
					switch field {
					case "id":
						*dst = s
						if checkID(s) == nil {
							e.id, keyID = string(s), string(s)
						}
					case "algorithm":
						e.algorithm = string(s)
					default:
						*dst = s
					}
					return nil
				})
				if err != nil {
					return perr("", err)
				}
				return nil
			})
			index, keyID = -1, ""
			return err
		default:
			return perr(quoteName(field), errors.New("unknown field, want version, keys, and in version 2 keyring_id and keyring_version"))
		}
	})
	if err == nil {
		index = -1
		err = r.end()
	}
	if err != nil {
		return hdr, entries, perr("", err)
	}
	hdr.format = version
	switch {
	case !hasVersion:
		return hdr, entries, perr("version", fmt.Errorf("missing, want %d or %d", Format1, Format2))
	case version != Format1 && version != Format2:
		return hdr, entries, perr("version", fmt.Errorf("unsupported version %d, want %d or %d", version, Format1, Format2))
	case version == Format1 && (hasID || hasKeyringVersion):
		field := "keyring_id"
		if !hasID {
			field = "keyring_version"
		}
		return hdr, entries, perr(field, fmt.Errorf("a field of version %d, and this keyring says version %d", Format2, Format1))
	case version == Format2 && !hasID:
		return hdr, entries, perr("keyring_id", errors.New("missing, want the keyring's id (version 2)"))
	case version == Format2 && !hasKeyringVersion:
		return hdr, entries, perr("keyring_version", errors.New("missing, want the keyring's version, an unsigned integer (version 2)"))
	case !hasKeys:
		return hdr, entries, perr("keys", errors.New("missing, want an array of keys"))
	case len(entries) == 0:
		return hdr, entries, perr("keys", errors.New("empty, want at least one key"))
	}
	return hdr, entries, nil
}

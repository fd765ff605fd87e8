package keyring

import (
	"errors"
	"fmt"
	"strings"
)

// Errors callers act on. Match them with errors.Is.
var (
	// ErrUnknownKey: no key with the requested id is loaded.
	ErrUnknownKey = errors.New("unknown key")
	// ErrDigestNotAllowed: a precomputed digest was given to an algorithm
	// that signs only whole messages (ed25519).
	ErrDigestNotAllowed = errors.New("digest not allowed for this algorithm")
	// ErrInvalidDigest: the digest length is not the one the algorithm
	// signs (32 bytes for the ECDSA algorithms).
	ErrInvalidDigest = errors.New("invalid digest")
	// ErrDestroyed: the key belongs to a keyring or set that was destroyed.
	ErrDestroyed = errors.New("key destroyed")
	// ErrTooLarge: a decrypted keyring exceeds MaxPlaintextSize.
	ErrTooLarge = errors.New("keyring too large")
)

// ParseError reports a keyring that can't be used: malformed JSON, a missing
// or invalid field, or a private key that doesn't parse or doesn't match its
// declared algorithm. It never carries key material.
type ParseError struct {
	// Keyring is the name the caller gave the keyring (usually its file name).
	Keyring string
	// Index is the position of the key in the "keys" array, or -1 when the
	// error is not about one key.
	Index int
	// KeyID is the key's id, when it is known and well formed; else "".
	KeyID string
	// Field is the JSON field at fault ("version", "keys", "id",
	// "algorithm", "private_key_pem" or an unknown field's name), or "" for
	// JSON syntax errors.
	Field string
	// Err says what was wrong and what was expected.
	Err error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keyring %q", e.Keyring)
	if e.Index >= 0 {
		fmt.Fprintf(&b, ": keys[%d]", e.Index)
		if e.KeyID != "" {
			fmt.Fprintf(&b, " (id %q)", e.KeyID)
		}
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// DuplicateKeyError reports a key id present in two keyrings loaded together
// (or twice in one keyring, in which case both names are the same).
type DuplicateKeyError struct {
	ID     string
	First  string // keyring that defined ID first
	Second string // keyring that defined it again
}

func (e *DuplicateKeyError) Error() string {
	if e.First == e.Second {
		return fmt.Sprintf("duplicate key id %q in keyring %q", e.ID, e.First)
	}
	return fmt.Sprintf("duplicate key id %q: in keyring %q and in keyring %q", e.ID, e.First, e.Second)
}

// DuplicateClientError reports a client id declared by two keyrings loaded
// together: a client's id must name one client, with one audience and one
// set of secrets.
type DuplicateClientError struct {
	ID     string
	First  string // keyring that declared ID first
	Second string // keyring that declared it again
}

func (e *DuplicateClientError) Error() string {
	return fmt.Sprintf("duplicate client id %q: in keyring %q and in keyring %q, want each client declared by one keyring only", e.ID, e.First, e.Second)
}

package keyringsig

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Tag begins every statement: a signature over a statement is never a
// signature over anything else the same key signs (a KMS key also used for
// tokens or documents cannot be turned into an approval oracle for
// keyrings, since none of those begin with these bytes).
const Tag = "enclave-signer keyring statement v1\n"

// Bounds of a statement's fields.
const (
	// MaxIDLength is the longest keyring id: as key ids, 1 to 64 characters
	// from [A-Za-z0-9._-].
	MaxIDLength = 64
	// MaxRecipients is the most age recipients a statement lists.
	MaxRecipients = 16
	// MaxRecipientLength bounds one recipient string (an X25519 recipient
	// is 62 characters).
	MaxRecipientLength = 128
	// maxUnixSeconds is 9999-12-31T23:59:59Z: later is a typo.
	maxUnixSeconds = 253402300799
	// MaxStatementSize bounds an encoded statement: 2,240 bytes, within
	// the 4,096 bytes KMS Sign takes as a RAW message.
	MaxStatementSize = len(Tag) + 2 + MaxIDLength + 3*8 + 2 + MaxRecipients*(2+MaxRecipientLength) + sha256.Size
)

// Statement is what an operator signs about one keyring file: which
// keyring it is (ID, Version), when it may be loaded (NotBefore to
// NotAfter, inclusive, against the NSM's clock), to which age recipients it
// is encrypted, and the SHA-256 of the age file's exact bytes.
type Statement struct {
	// KeyringID names the keyring across its versions, e.g. "payments":
	// 1 to 64 characters from [A-Za-z0-9._-]. The keyring's plaintext
	// (format 2) carries the same id.
	KeyringID string
	// Version orders the keyring's versions; signerd refuses one lower
	// than the highest it has accepted for KeyringID while it runs. The
	// plaintext (format 2) carries the same number.
	Version uint64
	// NotBefore and NotAfter bound when the keyring may be loaded, both
	// included, in whole seconds (NotBefore < NotAfter).
	NotBefore, NotAfter time.Time
	// Recipients are the age recipients (age1…) the file is encrypted to,
	// in ascending byte order, without duplicates.
	Recipients []string
	// FileSHA256 is the SHA-256 of the age file, binary or armored, as
	// stored and sent.
	FileSHA256 [sha256.Size]byte
}

// StatementError is a statement that cannot be encoded or parsed: the
// field at fault and what was wrong. It never quotes more than a short,
// well-formed value.
type StatementError struct {
	Field string // "tag", "keyring_id", "version", "not_before", "not_after", "recipients", "sha256" or "" (the whole)
	Err   error
}

func (e *StatementError) Error() string {
	if e.Field == "" {
		return "keyring statement: " + e.Err.Error()
	}
	return "keyring statement: " + e.Field + ": " + e.Err.Error()
}

func (e *StatementError) Unwrap() error { return e.Err }

func stmtErr(field, format string, a ...any) error {
	return &StatementError{Field: field, Err: fmt.Errorf(format, a...)}
}

// NewStatement fills in a statement about file (the age file's bytes):
// its SHA-256, and the recipients sorted and checked. notBefore and
// notAfter are truncated to whole seconds.
func NewStatement(keyringID string, version uint64, notBefore, notAfter time.Time, recipients []string, file []byte) (*Statement, error) {
	rs := slices.Clone(recipients)
	slices.Sort(rs)
	s := &Statement{
		KeyringID:  keyringID,
		Version:    version,
		NotBefore:  notBefore.Truncate(time.Second).UTC(),
		NotAfter:   notAfter.Truncate(time.Second).UTC(),
		Recipients: rs,
		FileSHA256: sha256.Sum256(file),
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// check validates every field as Marshal and ParseStatement require.
func (s *Statement) check() error {
	if err := CheckID(s.KeyringID); err != nil {
		return &StatementError{Field: "keyring_id", Err: err}
	}
	nb, na := s.NotBefore.Unix(), s.NotAfter.Unix()
	switch {
	case s.NotBefore.Nanosecond() != 0 || nb < 0 || nb > maxUnixSeconds:
		return stmtErr("not_before", "want whole seconds from 1970 to 9999, got %s", s.NotBefore.Format(time.RFC3339Nano))
	case s.NotAfter.Nanosecond() != 0 || na < 0 || na > maxUnixSeconds:
		return stmtErr("not_after", "want whole seconds from 1970 to 9999, got %s", s.NotAfter.Format(time.RFC3339Nano))
	case na <= nb:
		return stmtErr("not_after", "%s is not after not_before %s", formatTime(s.NotAfter), formatTime(s.NotBefore))
	}
	if len(s.Recipients) == 0 || len(s.Recipients) > MaxRecipients {
		return stmtErr("recipients", "%d recipients, want 1 to %d", len(s.Recipients), MaxRecipients)
	}
	for i, r := range s.Recipients {
		if err := checkRecipient(r); err != nil {
			return stmtErr("recipients", "[%d]: %v", i, err)
		}
		if i > 0 && s.Recipients[i-1] >= r {
			return stmtErr("recipients", "[%d]: not in ascending byte order without duplicates", i)
		}
	}
	return nil
}

// CheckID reports whether id is a valid keyring id: 1 to 64 characters
// from [A-Za-z0-9._-], as key ids. The error does not quote the id.
func CheckID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLength {
		return fmt.Errorf("%d bytes long, want 1 to %d characters from [A-Za-z0-9._-]", len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("invalid character at position %d, want only [A-Za-z0-9._-]", i+1)
		}
	}
	return nil
}

// checkRecipient accepts what an age recipient string can be: "age1"
// followed by lowercase bech32 characters. Whether it is a valid key is
// age's business; the statement only names it.
func checkRecipient(r string) error {
	if len(r) > MaxRecipientLength || !strings.HasPrefix(r, "age1") || len(r) == len("age1") {
		return fmt.Errorf("want an age recipient (age1…) of at most %d characters", MaxRecipientLength)
	}
	for i := 0; i < len(r); i++ {
		if c := r[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("invalid character at position %d, want an age recipient (age1 and lowercase bech32)", i+1)
		}
	}
	return nil
}

// Marshal returns the statement's bytes, the message signers sign:
//
//	Tag (36 bytes)
//	uint16 len(keyring_id) ‖ keyring_id
//	uint64 version
//	uint64 not_before (Unix seconds)
//	uint64 not_after  (Unix seconds)
//	uint16 count of recipients, then each: uint16 len ‖ recipient
//	sha256 (32 bytes)
//
// every integer big-endian. The encoding has no optional parts and no
// alternatives, so one statement has exactly one encoding.
func (s *Statement) Marshal() ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, MaxStatementSize)
	b = append(b, Tag...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.KeyringID)))
	b = append(b, s.KeyringID...)
	b = binary.BigEndian.AppendUint64(b, s.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(s.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(s.NotAfter.Unix()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Recipients)))
	for _, r := range s.Recipients {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
		b = append(b, r...)
	}
	b = append(b, s.FileSHA256[:]...)
	return b, nil
}

// ParseStatement parses a statement's bytes strictly: the tag, every field
// in its bounds, nothing after the hash. Marshal of the result gives b
// back. On error the statement is nil and the error a *StatementError.
func ParseStatement(b []byte) (*Statement, error) {
	if len(b) > MaxStatementSize {
		return nil, stmtErr("", "%d bytes, want at most %d", len(b), MaxStatementSize)
	}
	if !bytes.HasPrefix(b, []byte(Tag)) {
		return nil, stmtErr("tag", "does not begin with %q: not a keyring statement of this version", strings.TrimSuffix(Tag, "\n")+`\n`)
	}
	r := reader{b: b[len(Tag):]}
	s := &Statement{}
	id, ok := r.str16(MaxIDLength)
	if !ok {
		return nil, stmtErr("keyring_id", "truncated or longer than %d bytes", MaxIDLength)
	}
	s.KeyringID = id
	var nb, na uint64
	if s.Version, ok = r.u64(); !ok {
		return nil, stmtErr("version", "truncated")
	}
	if nb, ok = r.u64(); !ok {
		return nil, stmtErr("not_before", "truncated")
	}
	if na, ok = r.u64(); !ok {
		return nil, stmtErr("not_after", "truncated")
	}
	if nb > maxUnixSeconds {
		return nil, stmtErr("not_before", "%d is past 9999", nb)
	}
	if na > maxUnixSeconds {
		return nil, stmtErr("not_after", "%d is past 9999", na)
	}
	s.NotBefore, s.NotAfter = time.Unix(int64(nb), 0).UTC(), time.Unix(int64(na), 0).UTC()
	n, ok := r.u16()
	if !ok {
		return nil, stmtErr("recipients", "truncated")
	}
	if n == 0 || n > MaxRecipients {
		return nil, stmtErr("recipients", "%d recipients, want 1 to %d", n, MaxRecipients)
	}
	s.Recipients = make([]string, 0, n)
	for i := range int(n) {
		rc, ok := r.str16(MaxRecipientLength)
		if !ok {
			return nil, stmtErr("recipients", "[%d]: truncated or longer than %d bytes", i, MaxRecipientLength)
		}
		s.Recipients = append(s.Recipients, rc)
	}
	h, ok := r.take(sha256.Size)
	if !ok {
		return nil, stmtErr("sha256", "truncated: want %d bytes", sha256.Size)
	}
	copy(s.FileSHA256[:], h)
	if len(r.b) != 0 {
		return nil, stmtErr("", "%d bytes after the sha256, want none", len(r.b))
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// reader reads the statement's fixed layout.
type reader struct{ b []byte }

func (r *reader) take(n int) ([]byte, bool) {
	if n > len(r.b) {
		return nil, false
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v, true
}

func (r *reader) u16() (uint16, bool) {
	v, ok := r.take(2)
	if !ok {
		return 0, false
	}
	return binary.BigEndian.Uint16(v), true
}

func (r *reader) u64() (uint64, bool) {
	v, ok := r.take(8)
	if !ok {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

func (r *reader) str16(max int) (string, bool) {
	n, ok := r.u16()
	if !ok || int(n) > max {
		return "", false
	}
	v, ok := r.take(int(n))
	return string(v), ok
}

// ValidAt reports whether t is within the window, both ends included.
func (s *Statement) ValidAt(t time.Time) bool {
	return !t.Before(s.NotBefore) && !t.After(s.NotAfter)
}

// HasRecipient reports whether r is among the recipients.
func (s *Statement) HasRecipient(r string) bool {
	_, found := slices.BinarySearch(s.Recipients, r)
	return found
}

// String describes the statement in one line.
func (s *Statement) String() string {
	return fmt.Sprintf("keyring %s version %d, valid %s to %s, encrypted to %s, sha256 %s",
		s.KeyringID, s.Version, formatTime(s.NotBefore), formatTime(s.NotAfter), strings.Join(s.Recipients, ", "), hex.EncodeToString(s.FileSHA256[:]))
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

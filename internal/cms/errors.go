package cms

import (
	"errors"
	"fmt"
	"strings"
)

// The classes of failure. Every error that Parse, Open, Envelope.Decrypt and
// Seal return matches exactly one of them with errors.Is (ErrTruncated,
// ErrTrailingData and ErrTooDeep also match ErrMalformed), so callers and
// tests can tell a damaged envelope from one meant for another key.
var (
	// ErrTooLarge: the envelope (or, for Seal, the plaintext) is over the
	// size limit; nothing was parsed.
	ErrTooLarge = errors.New("cms: input too large")
	// ErrMalformed: the bytes are not the expected BER structure (wrong tag,
	// missing or extra field, bad length encoding, bad field size).
	ErrMalformed = errors.New("cms: malformed envelope")
	// ErrTruncated: a length runs past the end of the input or of the
	// enclosing element, or an indefinite-length element has no
	// end-of-contents marker.
	ErrTruncated = errors.New("cms: envelope truncated")
	// ErrTrailingData: bytes follow the ContentInfo.
	ErrTrailingData = errors.New("cms: trailing data after ContentInfo")
	// ErrTooDeep: indefinite-length elements are nested deeper than the
	// walker allows.
	ErrTooDeep = errors.New("cms: nesting too deep")
	// ErrContentType: the ContentInfo is not envelopedData, or the encrypted
	// content is not id-data.
	ErrContentType = errors.New("cms: unsupported content type")
	// ErrVersion: EnvelopedData or KeyTransRecipientInfo version is not 2.
	ErrVersion = errors.New("cms: unsupported version")
	// ErrRecipientCount: there is not exactly one RecipientInfo.
	ErrRecipientCount = errors.New("cms: want exactly one recipient")
	// ErrRecipient: the recipient is not a KeyTransRecipientInfo identified
	// by a 32-byte subjectKeyIdentifier.
	ErrRecipient = errors.New("cms: unsupported recipient")
	// ErrAlgorithm: a key-encryption or content-encryption algorithm other
	// than RSAES-OAEP(SHA-256, MGF1-SHA-256, empty label) / AES-256-CBC.
	ErrAlgorithm = errors.New("cms: unsupported algorithm")
	// ErrKeyMismatch: the envelope's subjectKeyIdentifier is not the SHA-256
	// of the caller's key's SubjectPublicKeyInfo: it was made for another key.
	ErrKeyMismatch = errors.New("cms: envelope is for a different recipient key")
	// ErrUnsupportedKey: the RSA key is missing, not RSA, or not 2048, 3072
	// or 4096 bits.
	ErrUnsupportedKey = errors.New("cms: unsupported recipient key")
	// ErrKeyDecrypt: RSA-OAEP decryption of the content-encryption key
	// failed, or it did not yield a 32-byte AES-256 key.
	ErrKeyDecrypt = errors.New("cms: cannot decrypt content-encryption key")
	// ErrPadding: the decrypted content does not end in valid PKCS#7 padding.
	ErrPadding = errors.New("cms: bad content padding")
)

// Error is a failure of one class above. Field names the part of the
// envelope at fault (ASN.1 names from RFC 5652 / RFC 8017), Offset is the
// byte offset in the envelope when one applies (-1 otherwise). Errors never
// contain plaintext or key bytes; they may contain public identifiers such as
// the subjectKeyIdentifier.
type Error struct {
	Class  error
	Field  string
	Offset int
	Detail string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Class.Error())
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " (at offset %d)", e.Offset)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Is reports whether target is e's class, or ErrMalformed for the structural
// classes that refine it.
func (e *Error) Is(target error) bool {
	if target == e.Class {
		return true
	}
	if target == ErrMalformed {
		return e.Class == ErrTruncated || e.Class == ErrTrailingData || e.Class == ErrTooDeep
	}
	return false
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(class error, field string, off int, format string, a ...any) error {
	return &Error{Class: class, Field: field, Offset: off, Detail: fmt.Sprintf(format, a...)}
}

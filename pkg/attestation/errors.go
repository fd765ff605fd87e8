package attestation

import (
	"errors"
	"fmt"
)

// The classes of verification failure. Every error Parse, Verify and
// Document.Check return matches exactly one of them with errors.Is, so
// callers (and the JSON output of `signer attestation verify`) can tell a
// forged document from a stale one.
var (
	// ErrMalformed: the bytes are not a well-formed attestation document
	// (truncated, wrong CBOR types, missing or out-of-range fields).
	ErrMalformed = errors.New("malformed attestation document")
	// ErrBadSignature: the COSE_Sign1 signature does not verify with the
	// leaf certificate's key.
	ErrBadSignature = errors.New("attestation document signature does not verify")
	// ErrUntrustedRoot: the certificate chain does not lead to a trusted root.
	ErrUntrustedRoot = errors.New("attestation document certificate chain does not lead to a trusted root")
	// ErrCertificateExpired: a certificate in the chain is not valid at the
	// verification time.
	ErrCertificateExpired = errors.New("attestation document certificate not valid at verification time")
	// ErrInvalidChain: the chain is structurally unacceptable (an
	// intermediate that is not a CA, a leaf that is, a key that is not
	// P-384, bad key usage).
	ErrInvalidChain = errors.New("attestation document certificate chain is invalid")
	// ErrTooOld: the document is older than the verifier's maximum age, or
	// dated too far in the future.
	ErrTooOld = errors.New("attestation document is outside the accepted age")
	// ErrMismatch: the document is valid but not what the relying party
	// expects (Document.Check): a PCR, the nonce or the key set differs.
	ErrMismatch = errors.New("attestation document does not match what is expected")
	// ErrDebugMode: a debug-mode document (PCR0, 1 and 2 zero) where an
	// attested key set is expected: any image could have made it.
	ErrDebugMode = errors.New("attestation document is from a debug-mode enclave")
)

// Error is a verification failure: its Class is one of the sentinels above,
// Field names the part of the document at fault when there is one.
type Error struct {
	Class  error
	Field  string
	Detail string
	Err    error
}

func (e *Error) Error() string {
	msg := e.Class.Error()
	if e.Field != "" {
		msg += ": " + e.Field
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is e's class.
func (e *Error) Is(target error) bool { return target == e.Class }

func (e *Error) Unwrap() error { return e.Err }

func malformed(field, format string, a ...any) error {
	return &Error{Class: ErrMalformed, Field: field, Detail: fmt.Sprintf(format, a...)}
}

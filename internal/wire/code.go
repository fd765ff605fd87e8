package wire

import (
	"errors"
	"strconv"
)

// Code is a stable error code carried by an error frame. Codes never change
// meaning; new codes may be added, and a peer that receives a code it does
// not know still treats the frame as an error and prints the number.
type Code uint16

// The error codes. docs/protocol.md lists them with their meaning and whether
// the connection survives; a test keeps that table in step with Codes.
const (
	// CodeMalformedFrame: the frame is not one well-formed envelope with a
	// decodable body (zero length, bad CBOR, trailing bytes, wrong field
	// types, a non-Hello first frame). The connection is closed.
	CodeMalformedFrame Code = 1
	// CodeFrameTooLarge: a length prefix over MaxFrameSize. The connection
	// is closed.
	CodeFrameTooLarge Code = 2
	// CodeUnsupported: a well-formed frame of a message type the server does
	// not serve. The connection keeps serving.
	CodeUnsupported Code = 3
	// CodeVersionMismatch: the client's Hello offers no version the server
	// speaks. The connection is closed.
	CodeVersionMismatch Code = 4
	// CodeInvalidRequest: a well-formed request whose field values are
	// unacceptable (a missing region, an empty key id, both or neither of
	// message and digest). The connection keeps serving.
	CodeInvalidRequest Code = 5
	// CodeInternal: anything the enclave did not map to a more specific
	// code; the detail stays in the enclave's log. The connection keeps
	// serving.
	CodeInternal Code = 6
	// CodeTooManyConnections: the server already serves its maximum of
	// connections from unprivileged peers (Server.MaxConns); sent with id 0
	// instead of reading the Hello. The connection is closed.
	CodeTooManyConnections Code = 7

	// CodeNotReady: the enclave holds no keyring yet (waiting, provisioning
	// or failed).
	CodeNotReady Code = 16
	// CodeUnknownKey: no loaded key has the requested id.
	CodeUnknownKey Code = 17
	// CodeInvalidDigest: a digest of the wrong length for the algorithm.
	CodeInvalidDigest Code = 18
	// CodeDigestNotAllowed: a digest for an algorithm that signs only whole
	// messages (ed25519).
	CodeDigestNotAllowed Code = 19
	// CodeProvisioningFailed: provisioning was attempted and failed; the
	// message says which step, and Status carries the detail.
	CodeProvisioningFailed Code = 20
	// CodeForbidden: the peer may not make this request: a provisioning
	// from an unprivileged peer (a source port of 1024 or above, which any
	// local user can open), or an authenticated sign request the key's
	// policy refuses (the message names the rule). Nothing changed; the
	// connection keeps serving.
	CodeForbidden Code = 21
	// CodeUnauthenticated: an auth_sign_request whose credential is
	// missing, malformed or wrong (an unknown client, a mac that does not
	// match), whose timestamp is outside the window or before signerd
	// started, or whose nonce was seen within the window; or a plain
	// sign_request for a key of a keyring that declares clients. HTTP 401
	// with WWW-Authenticate.
	CodeUnauthenticated Code = 22
	// CodeRateLimited: the key's or the client's rate is spent; the
	// Error's RetryAfterMillis says when a token is next free. HTTP 429
	// with Retry-After.
	CodeRateLimited Code = 23
	// CodeAuthUnavailable: signerd cannot check credentials now: its
	// nonce cache is full, or its clock disagrees with the NSM's by more
	// than the timestamp window. HTTP 503.
	CodeAuthUnavailable Code = 24
	// CodeAuditUnavailable: the audit trail cannot record the request
	// (its buffer is full: the host has stopped draining it), so nothing
	// is signed; signing resumes once it is drained.
	CodeAuditUnavailable Code = 25
)

var codeNames = map[Code]string{
	CodeMalformedFrame:     "malformed_frame",
	CodeFrameTooLarge:      "frame_too_large",
	CodeUnsupported:        "unsupported",
	CodeVersionMismatch:    "version_mismatch",
	CodeInvalidRequest:     "invalid_request",
	CodeInternal:           "internal",
	CodeTooManyConnections: "too_many_connections",
	CodeNotReady:           "not_ready",
	CodeUnknownKey:         "unknown_key",
	CodeInvalidDigest:      "invalid_digest",
	CodeDigestNotAllowed:   "digest_not_allowed",
	CodeProvisioningFailed: "provisioning_failed",
	CodeForbidden:          "forbidden",
	CodeUnauthenticated:    "unauthenticated",
	CodeRateLimited:        "rate_limited",
	CodeAuthUnavailable:    "auth_unavailable",
	CodeAuditUnavailable:   "audit_unavailable",
}

// Codes returns every code this version of the package defines, in
// ascending order.
func Codes() []Code {
	return []Code{
		CodeMalformedFrame, CodeFrameTooLarge, CodeUnsupported, CodeVersionMismatch,
		CodeInvalidRequest, CodeInternal, CodeTooManyConnections,
		CodeNotReady, CodeUnknownKey, CodeInvalidDigest, CodeDigestNotAllowed,
		CodeProvisioningFailed, CodeForbidden,
		CodeUnauthenticated, CodeRateLimited, CodeAuthUnavailable, CodeAuditUnavailable,
	}
}

// String returns the code's snake_case name, or "code(N)" for a code this
// package does not know (one sent by a newer peer).
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "code(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// ClosesConn reports whether the sender of an error frame with this code
// closes the connection after it.
func (c Code) ClosesConn() bool {
	switch c {
	case CodeMalformedFrame, CodeFrameTooLarge, CodeVersionMismatch, CodeTooManyConnections:
		return true
	}
	return false
}

// Error is an error frame: a code and a message for the operator. Messages
// never carry key material or credentials.
//
// *Error is also the Go error a Call returns when the peer answers with an
// error frame. Is matches on the code, so
// errors.Is(err, wire.ErrUnknownKey) holds for any unknown_key answer.
type Error struct {
	Code    Code   `cbor:"1,keyasint"`
	Message string `cbor:"2,keyasint,omitempty"`
	// RetryAfterMillis is, for rate_limited, how long until the request
	// could succeed, in milliseconds; 0 (absent) otherwise.
	RetryAfterMillis uint32 `cbor:"3,keyasint,omitempty"`
}

// Sentinels for errors.Is, one per code. Their Message is empty, and an
// *Error with an empty Message matches every *Error with the same Code.
var (
	ErrMalformedFrame     = &Error{Code: CodeMalformedFrame}
	ErrFrameTooLarge      = &Error{Code: CodeFrameTooLarge}
	ErrUnsupported        = &Error{Code: CodeUnsupported}
	ErrVersionMismatch    = &Error{Code: CodeVersionMismatch}
	ErrInvalidRequest     = &Error{Code: CodeInvalidRequest}
	ErrInternal           = &Error{Code: CodeInternal}
	ErrTooManyConnections = &Error{Code: CodeTooManyConnections}
	ErrNotReady           = &Error{Code: CodeNotReady}
	ErrUnknownKey         = &Error{Code: CodeUnknownKey}
	ErrInvalidDigest      = &Error{Code: CodeInvalidDigest}
	ErrDigestNotAllowed   = &Error{Code: CodeDigestNotAllowed}
	ErrProvisioningFailed = &Error{Code: CodeProvisioningFailed}
	ErrForbidden          = &Error{Code: CodeForbidden}
	ErrUnauthenticated    = &Error{Code: CodeUnauthenticated}
	ErrRateLimited        = &Error{Code: CodeRateLimited}
	ErrAuthUnavailable    = &Error{Code: CodeAuthUnavailable}
	ErrAuditUnavailable   = &Error{Code: CodeAuditUnavailable}
)

// ErrConnClosed is wrapped by every error a Conn returns once its connection
// is gone: closed by either side, broken, or unusable after a framing error.
var ErrConnClosed = errors.New("wire: connection closed")

// NewError is shorthand for &Error{Code: code, Message: msg}.
func NewError(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Message
}

// Is reports whether target is an *Error with the same Code and either an
// empty Message (a sentinel) or the same Message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t == nil {
		return false
	}
	return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

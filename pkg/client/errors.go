package client

import (
	"errors"
	"fmt"
	"time"
)

// Error is the enclave's refusal of a request: a stable code and a
// message for the operator (which never carries key material or
// credentials). Match it with errors.Is against the Err* values below, or
// take it with errors.As to read RetryAfter.
type Error struct {
	// Code is the refusal's stable name, e.g. "unknown_key"
	// (docs/protocol.md lists them all). A code this package does not
	// know (from a newer enclave) reads "code(N)".
	Code string
	// Message says what was wrong; empty in the Err* values.
	Message string
	// RetryAfter is, for rate_limited, how long until the request could
	// succeed; 0 otherwise.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// Is reports whether target is an *Error with the same Code and either an
// empty Message (one of the Err* values) or the same Message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t == nil {
		return false
	}
	return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// The enclave's refusals, for errors.Is. docs/protocol.md says when each
// is sent.
var (
	// ErrNotReady: the enclave holds no keys yet (waiting, provisioning or
	// failed).
	ErrNotReady = &Error{Code: "not_ready"}
	// ErrUnknownKey: no loaded key has the requested id.
	ErrUnknownKey = &Error{Code: "unknown_key"}
	// ErrInvalidRequest: a field's value is unacceptable (an empty key id,
	// a nonce too long); the message says which.
	ErrInvalidRequest = &Error{Code: "invalid_request"}
	// ErrInvalidDigest: a digest of the wrong length for the key's
	// algorithm.
	ErrInvalidDigest = &Error{Code: "invalid_digest"}
	// ErrDigestNotAllowed: a digest for an algorithm that signs only whole
	// messages (ed25519).
	ErrDigestNotAllowed = &Error{Code: "digest_not_allowed"}
	// ErrUnauthenticated: the key signs only requests of a client
	// (Options.Credentials), or the credential was wrong, stale or
	// replayed.
	ErrUnauthenticated = &Error{Code: "unauthenticated"}
	// ErrForbidden: the key's policy refuses this client's request (the
	// message names the rule), or the request needs a privileged peer.
	ErrForbidden = &Error{Code: "forbidden"}
	// ErrRateLimited: the key's or the client's rate is spent; the
	// *Error's RetryAfter says when to try again.
	ErrRateLimited = &Error{Code: "rate_limited"}
	// ErrAuthUnavailable: the enclave cannot check credentials now (its
	// nonce cache is full, or its clock is off); try again later.
	ErrAuthUnavailable = &Error{Code: "auth_unavailable"}
	// ErrAuditUnavailable: the enclave's audit trail cannot record the
	// request, so nothing is signed until the host drains it.
	ErrAuditUnavailable = &Error{Code: "audit_unavailable"}
	// ErrTooManyConnections: the enclave serves its maximum of
	// connections from unprivileged source ports and refused this one
	// (Options.PrivilegedSourcePort is exempt). It comes inside an
	// *UnavailableError.
	ErrTooManyConnections = &Error{Code: "too_many_connections"}
	// ErrVersionMismatch: the enclave speaks no protocol version this
	// package does.
	ErrVersionMismatch = &Error{Code: "version_mismatch"}
	// ErrUnsupported: the enclave does not serve this request (it is
	// older than this package).
	ErrUnsupported = &Error{Code: "unsupported"}
	// ErrInternal: the enclave failed in a way it does not detail (the
	// detail is in its log).
	ErrInternal = &Error{Code: "internal"}
)

// ErrUnavailable is matched (errors.Is) by every error that says the
// enclave could not be reached or its connection was lost: see
// UnavailableError.
var ErrUnavailable = errors.New("enclave unavailable")

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("client: closed")

// UnavailableError says the enclave could not be reached, or the
// connection a call was using was lost before the answer came. Calls may
// simply be retried: the Client redials by itself.
type UnavailableError struct {
	Addr string // the enclave's address, e.g. "vsock://16:5005"
	Op   string // the request, e.g. "sign"
	Err  error  // why: a dial error, a lost connection, ErrTooManyConnections
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%s: enclave at %s unavailable: %v", e.Op, e.Addr, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable) hold.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

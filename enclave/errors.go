package main

import (
	"context"
	"errors"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// Errors signerd's handlers wrap to choose a wire code.
var (
	errNotReady       = errors.New("not ready")
	errInvalidRequest = errors.New("invalid request")
	errUnsupported    = errors.New("unsupported")
	errForbidden      = errors.New("forbidden")
)

// codes maps the errors a caller can act on to wire codes; wireError tries
// them in order.
var codes = []struct {
	err  error
	code wire.Code
}{
	{errNotReady, wire.CodeNotReady},
	{errAuditUnavailable, wire.CodeAuditUnavailable},
	{errInvalidRequest, wire.CodeInvalidRequest},
	{errUnsupported, wire.CodeUnsupported},
	{errForbidden, wire.CodeForbidden},
	{errUnauthenticated, wire.CodeUnauthenticated},
	{errAuthUnavailable, wire.CodeAuthUnavailable},
	{keyring.ErrForbidden, wire.CodeForbidden},
	{keyring.ErrUnknownKey, wire.CodeUnknownKey},
	{keyring.ErrDigestNotAllowed, wire.CodeDigestNotAllowed},
	{keyring.ErrInvalidDigest, wire.CodeInvalidDigest},
}

// wireError is the one place where Go errors become wire codes. A mapped
// error keeps its message (none of them carries secrets: keyring errors
// name key ids only when well formed, and signerd's own name fields and
// sizes); anything else becomes CodeInternal with a generic message, and
// the full error goes to the enclave's log only.
func (d *daemon) wireError(req wire.Message, err error) error {
	var we *wire.Error
	if errors.As(err, &we) {
		return we
	}
	var rl *rateLimitError
	if errors.As(err, &rl) {
		return &wire.Error{Code: wire.CodeRateLimited, Message: rl.msg, RetryAfterMillis: rl.retryAfterMillis()}
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			msg := err.Error()
			// signerd's own sentinels only name the code again.
			switch c.err {
			case errNotReady, errInvalidRequest, errUnsupported, errForbidden, errUnauthenticated, errAuthUnavailable, errAuditUnavailable:
				msg = strings.TrimPrefix(msg, c.err.Error()+": ")
			}
			return wire.NewError(c.code, msg)
		}
	}
	if errors.Is(err, keyring.ErrDestroyed) {
		// Only when signerd shuts down: re-provisioning retries on the new set.
		return wire.NewError(wire.CodeNotReady, "signerd is shutting down")
	}
	if errors.Is(err, context.Canceled) {
		// The caller hung up (or signerd is stopping): nobody reads this.
		d.log.Debug("request cancelled", "type", req.MessageType().String(), "err", err)
		return wire.NewError(wire.CodeInternal, "request cancelled")
	}
	d.log.Error("request failed", "type", req.MessageType().String(), "code", wire.CodeInternal.String(), "err", err)
	return wire.NewError(wire.CodeInternal, "internal error; see the enclave log")
}

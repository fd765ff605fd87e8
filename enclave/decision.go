package main

import (
	"crypto/sha256"
	"errors"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// decision is one decided sign request: what the audit trail records.
// Every sign request, allowed or refused, makes exactly one.
type decision struct {
	Time time.Time
	// Client is the authenticated client's id, "" for a request that was
	// not authenticated.
	Client string
	KeyID  string
	// Kind is the request kind: "message", "digest" (and the typed kinds
	// later issues add).
	Kind string
	// Digest is the SHA-256 of what was (or would have been) signed: the
	// message, or the digest bytes.
	Digest [32]byte
	// Outcome is outcomeAllowed or the refusal's name.
	Outcome string
	// Reason is the rule or error that decided, short; never a secret.
	Reason string
}

// The outcomes a decision records.
const (
	outcomeAllowed         = "allowed"
	outcomeUnauthenticated = "unauthenticated"
	outcomeForbidden       = "forbidden"
	outcomeRateLimited     = "rate_limited"
	outcomeUnknownKey      = "unknown_key"
	outcomeInvalid         = "invalid"
	outcomeNotReady        = "not_ready"
	outcomeAuthUnavailable = "auth_unavailable"
)

// recorder receives every decision. For an allowed decision record is
// called before the signature is made, and a non-nil error refuses the
// request (the audit trail fails closed): it must wrap errAuditUnavailable.
// A recorder may aggregate refusals (unauthenticated ones are counted per
// interval, so junk cannot fill the trail). It must be safe for concurrent
// use and fast: it runs on the signing path.
type recorder interface {
	record(d decision) error
}

// errAuditUnavailable refuses a request the audit trail cannot record.
var errAuditUnavailable = errors.New("audit trail unavailable")

// nopRecorder records nothing: signerd without an audit trail.
type nopRecorder struct{}

func (nopRecorder) record(decision) error { return nil }

// record hands dec to the daemon's recorder, if it has one.
func (d *daemon) record(dec decision) error {
	if d.rec == nil {
		return nil
	}
	return d.rec.record(dec)
}

// signDecision describes a plain sign request and how it ended; err is
// the error the request is answered with, nil when it was allowed.
func signDecision(r *wire.SignRequest, err error) decision {
	d := decision{Time: time.Now(), KeyID: r.KeyID, Kind: keyring.KindMessage, Digest: sha256.Sum256(r.Data), Outcome: outcomeAllowed}
	if r.IsDigest {
		d.Kind = keyring.KindDigest
	}
	if err != nil {
		d.Outcome, d.Reason = outcomeOf(err), err.Error()
	}
	return d
}

// outcomeOf names the refusal err stands for.
func outcomeOf(err error) string {
	switch {
	case errors.Is(err, keyring.ErrUnknownKey):
		return outcomeUnknownKey
	case errors.Is(err, errNotReady):
		return outcomeNotReady
	case errors.Is(err, errUnauthenticated):
		return outcomeUnauthenticated
	case errors.Is(err, keyring.ErrForbidden):
		return outcomeForbidden
	case errors.Is(err, errRateLimited):
		return outcomeRateLimited
	case errors.Is(err, errAuthUnavailable):
		return outcomeAuthUnavailable
	}
	return outcomeInvalid
}

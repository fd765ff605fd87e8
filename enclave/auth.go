package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// Authenticated sign requests (docs/protocol.md, Authenticated sign
// requests): signerd verifies the client's MAC over the HTTP request's
// exact bytes, then reads the key and what to sign from those bytes only,
// then applies the key's policy and the rates.

// Errors of the authenticated path, mapped to wire codes in errors.go.
var (
	errUnauthenticated = errors.New("unauthenticated")
	errAuthUnavailable = errors.New("auth unavailable")
	errRateLimited     = errors.New("rate limited")
)

// rateLimitError is a request over a rate: which one, and when a token is
// next free.
type rateLimitError struct {
	msg  string
	wait time.Duration
}

func (e *rateLimitError) Error() string { return e.msg }
func (e *rateLimitError) Unwrap() error { return errRateLimited }

// retryAfterMillis is e's wait in whole milliseconds, rounded up.
func (e *rateLimitError) retryAfterMillis() uint32 {
	ms := (e.wait + time.Millisecond - 1) / time.Millisecond
	return uint32(min(max(ms, 1), math.MaxUint32))
}

// authedRequest is an auth_sign_request that passed authentication: who
// sent it and what it asks, read from the verified bytes.
type authedRequest struct {
	client *keyring.Client
	req    wire.SignRequest
}

// authSign serves an auth_sign_request. It records exactly one decision.
func (d *daemon) authSign(r *wire.AuthSignRequest) (*wire.SignResponse, error) {
	dec := decision{Time: d.now(), Outcome: outcomeAllowed}
	a, err := d.authenticate(r, &dec)
	if err != nil {
		return nil, d.refuse(dec, err)
	}
	return d.signAuthed(a, dec)
}

// refuse records dec as refused with err, counts it, and returns err.
func (d *daemon) refuse(dec decision, err error) error {
	dec.Outcome, dec.Reason = outcomeOf(err), err.Error()
	d.refusals.count(dec.Outcome)
	_ = d.record(dec)
	return err
}

// authenticate checks r's credential and reads what it asks. It fills in
// dec as it learns the client, key, kind and digest.
func (d *daemon) authenticate(r *wire.AuthSignRequest, dec *decision) (*authedRequest, error) {
	set := d.set.Load()
	if set == nil {
		return nil, d.notReady()
	}
	cred, err := signreq.ParseAuthorization(r.Authorization)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnauthenticated, err)
	}
	if err := d.checkTime(cred.Timestamp); err != nil {
		return nil, err
	}
	for {
		client, ok := set.Client(cred.Client)
		if !ok {
			return nil, fmt.Errorf("%w: client %q is not declared by the loaded keyrings", errUnauthenticated, cred.Client)
		}
		err = verifyMAC(client, &cred, r)
		if errors.Is(err, keyring.ErrDestroyed) {
			// A re-provisioning replaced the set meanwhile: check
			// against the new one.
			if cur := d.set.Load(); cur != set && cur != nil {
				set = cur
				continue
			}
			return nil, d.notReady()
		}
		if err != nil {
			return nil, err
		}
		dec.Client = client.ID
		switch d.nonces.add(d.now().Unix(), cred.Timestamp, cred.Nonce) {
		case nonceReplayed:
			return nil, fmt.Errorf("%w: nonce replayed: signerd has seen this ts and nonce already (within the %s window); sign each request with a fresh random nonce", errUnauthenticated, authWindow)
		case nonceFull:
			size, capacity := d.nonces.stats(d.now().Unix())
			d.warnNonceCacheFull(size, capacity)
			return nil, fmt.Errorf("%w: the nonce cache is full (%d of %d nonces of the last %s): retry in a few seconds; signerd --nonce-cache sets its size", errAuthUnavailable, size, capacity, authWindow)
		}
		req, err := readSignRequest(r, dec)
		if err != nil {
			return nil, err
		}
		return &authedRequest{client: client, req: req}, nil
	}
}

// nonceWarnEvery bounds the "nonce cache full" warnings: one per interval
// while requests are refused for it, not one per request.
const nonceWarnEvery = 10 * time.Second

// warnNonceCacheFull logs that authenticated requests are refused for a
// full nonce cache, at most once per nonceWarnEvery.
func (d *daemon) warnNonceCacheFull(size, capacity int) {
	now := d.now().UnixNano()
	last := d.nonceWarned.Load()
	if now-last < int64(nonceWarnEvery) || !d.nonceWarned.CompareAndSwap(last, now) {
		return
	}
	d.log.Warn("the nonce cache is full: authenticated sign requests are refused (auth_unavailable) until nonces expire; it must hold every authenticated request of the last minute: raise --nonce-cache to at least 60 times the peak requests per second (about 40 bytes each)",
		"nonce_cache_size", size, "nonce_cache", capacity)
}

// checkTime refuses a timestamp outside the window, or from a second
// before the one signerd started in, or any while signerd's clock is
// unconfirmed. (A request of the start's own second is taken: refusing
// it would refuse every client for up to a second after each start, and
// what it could replay is the residue threat-model.md describes.)
func (d *daemon) checkTime(ts int64) error {
	if !d.clock.ok.Load() {
		c := d.clock.snapshot()
		return fmt.Errorf("%w: signerd's clock is not confirmed by the NSM's (last check %s: skew %s, allowed %s); authenticated requests wait until it is",
			errAuthUnavailable, c.checked.UTC().Format(time.RFC3339), c.skew, authWindow)
	}
	now := d.now().Unix()
	win := int64(authWindow / time.Second)
	switch {
	case ts < now-win || ts > now+win:
		return fmt.Errorf("%w: ts %d is %+d s from signerd's clock (%d): want within %d s; check the client's clock", errUnauthenticated, ts, ts-now, now, win)
	case ts < d.boot:
		return fmt.Errorf("%w: ts %d is before signerd started (%d): a restart forgets the nonces seen, so older requests are refused; sign again with the current time", errUnauthenticated, ts, d.boot)
	}
	return nil
}

// verifyMAC checks cred's mac under each of client's secrets.
func verifyMAC(client *keyring.Client, cred *signreq.Credential, r *wire.AuthSignRequest) error {
	chk, err := signreq.NewCheck(cred, client.Audience, r.Method, r.Path, r.Body)
	if err != nil {
		return fmt.Errorf("%w: %v", errUnauthenticated, err)
	}
	// Every secret is tried (match returns false), whatever matched.
	if _, err := client.MatchSecret(func(s []byte) bool { chk.Try(s); return false }); err != nil {
		return err
	}
	if !chk.Matched() {
		return fmt.Errorf("%w: client %q (audience %q): %v", errUnauthenticated, client.ID, client.Audience, signreq.ErrBadMAC)
	}
	return nil
}

// readSignRequest reads the key id from r's verified path and what to
// sign from its verified body.
func readSignRequest(r *wire.AuthSignRequest, dec *decision) (wire.SignRequest, error) {
	if r.Method != "POST" {
		return wire.SignRequest{}, fmt.Errorf("%w: method %q: the sign endpoint takes POST", errInvalidRequest, r.Method)
	}
	id, err := signreq.KeyIDFromPath(r.Path)
	if err != nil {
		return wire.SignRequest{}, fmt.Errorf("%w: %v", errInvalidRequest, err)
	}
	dec.KeyID = id
	b, err := signreq.ParseBody(r.Body)
	if err != nil {
		return wire.SignRequest{}, fmt.Errorf("%w: body: %v", errInvalidRequest, err)
	}
	dec.Kind = b.Field()
	data, err := b.Decode(nil)
	if err != nil {
		return wire.SignRequest{}, fmt.Errorf("%w: body: %v", errInvalidRequest, err)
	}
	if data == nil {
		data = []byte{}
	}
	dec.Digest = sha256.Sum256(data)
	return wire.SignRequest{KeyID: id, Data: data, IsDigest: b.IsDigest}, nil
}

// signAuthed applies the key's policy and the rates to an authenticated
// request, records the decision and signs. If a re-provisioning destroys
// the set meanwhile, the policy is applied again on the new set (the rates
// were charged once).
func (d *daemon) signAuthed(a *authedRequest, dec decision) (*wire.SignResponse, error) {
	set := d.set.Load()
	charged := false
	for {
		if set == nil {
			return nil, d.refuseOnce(&charged, dec, d.notReady())
		}
		key, err := set.Key(a.req.KeyID)
		if err == nil {
			err = key.Authorize(a.client.ID, dec.Kind, len(a.req.Data))
		}
		if err == nil && a.req.IsDigest {
			err = key.CheckDigest(a.req.Data)
		}
		if err == nil && !charged {
			err = d.takeTokens(key, a.client)
		}
		if err != nil {
			return nil, d.refuseOnce(&charged, dec, err)
		}
		if !charged {
			charged = true
			if err := d.record(dec); err != nil {
				return nil, err
			}
		}
		resp, err := signWithKey(key, &a.req)
		if errors.Is(err, keyring.ErrDestroyed) {
			if cur := d.set.Load(); cur != set {
				set = cur
				continue
			}
		}
		return resp, err
	}
}

// refuseOnce refuses with err, recording the decision unless it was
// already recorded as allowed (a retry on a new set that now refuses).
func (d *daemon) refuseOnce(recorded *bool, dec decision, err error) error {
	if *recorded {
		return err
	}
	return d.refuse(dec, err)
}

// takeTokens takes a token from the key's bucket and the client's, or
// from neither.
func (d *daemon) takeTokens(key *keyring.Key, client *keyring.Client) error {
	l := d.limits.Load()
	kb, cb := l.bucket(keyBucket(key.ID())), l.bucket(clientBucket(client.ID))
	if kb == nil && cb == nil {
		return nil
	}
	now := d.now()
	if kb != nil {
		if ok, wait := kb.take(now); !ok {
			return &rateLimitError{fmt.Sprintf("key %q: policy.rate %s is spent: retry in %s", key.ID(), key.Policy().Rate, wait.Round(time.Millisecond)), wait}
		}
	}
	if cb != nil {
		if ok, wait := cb.take(now); !ok {
			if kb != nil {
				kb.refund()
			}
			return &rateLimitError{fmt.Sprintf("client %q: rate %s is spent: retry in %s", client.ID, client.Rate, wait.Round(time.Millisecond)), wait}
		}
	}
	return nil
}

// signWithKey signs r's data with key.
func signWithKey(key *keyring.Key, r *wire.SignRequest) (*wire.SignResponse, error) {
	var sig keyring.Signature
	var err error
	if r.IsDigest {
		sig, err = key.SignDigest(r.Data)
	} else {
		sig, err = key.SignMessage(r.Data)
	}
	if err != nil {
		return nil, err
	}
	resp := &wire.SignResponse{KeyID: key.ID(), Algorithm: string(key.Algorithm()), Signature: sig.Signature}
	if key.Algorithm() == keyring.ECDSASecp256k1 {
		v := uint8(sig.RecoveryID)
		resp.RecoveryID = &v
		resp.SignatureRSV = sig.RSV
	}
	return resp, nil
}

func keyBucket(id string) string    { return "key:" + id }
func clientBucket(id string) string { return "client:" + id }

// newLimiters returns the token buckets of set's rates, keeping old's
// bucket for each rate that did not change.
func newLimiters(set *keyring.Set, old *limiters, now time.Time) *limiters {
	l := &limiters{buckets: map[string]*tokenBucket{}}
	add := func(name string, r *keyring.Rate) {
		if r == nil {
			return
		}
		if b := old.bucket(name); b != nil && b.sameRate(r.PerSecond, r.Burst) {
			l.buckets[name] = b
			return
		}
		l.buckets[name] = newTokenBucket(r.PerSecond, r.Burst, now)
	}
	for _, info := range set.Keys() {
		if k, err := set.Key(info.ID); err == nil && k.Policy() != nil {
			add(keyBucket(info.ID), k.Policy().Rate)
		}
	}
	for _, c := range set.Clients() {
		add(clientBucket(c.ID), c.Rate)
	}
	return l
}

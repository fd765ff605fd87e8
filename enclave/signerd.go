package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyringsig"
	"github.com/enclave-signer/enclave-signer/internal/kms"
	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// daemonConfig is what a daemon is built from: the boundary objects run
// sets up, and the facts about this enclave it reports in Status.
type daemonConfig struct {
	// NSM attests (the real device or nsmsim). Required.
	NSM nsm.Module
	// Attestation is wire.AttestationNSM or wire.AttestationSimulated.
	Attestation string
	// Keys hands out the RSA keys KMS encrypts its answers to. Required.
	Keys *kms.KeySource
	// KMSProxy is where every KMS connection is dialed (--kms-proxy).
	KMSProxy transport.Addr
	// KMSEndpoint overrides https://kms.<region>.amazonaws.com (simulated
	// attestation only); KMSRoots verify KMS's TLS certificate, nil meaning
	// the roots compiled into the binary.
	KMSEndpoint string
	KMSRoots    *x509.CertPool
	// Pins are what signerd takes keys from: the KMS keys an identity may
	// be sealed under, and the keyring signers (and threshold) keyrings
	// need. They are attested in the user_data of every document signerd
	// makes for a caller. The zero value checks neither.
	Pins Pins
	// AuditBuffer is how many audit records wait to be drained
	// (--audit-buffer); 0 means defaultAuditBuffer.
	AuditBuffer int
	// Version is signerd's version string.
	Version string
	// Log is the daemon's logger; nil discards.
	Log *slog.Logger
	// NonceCapacity bounds the nonces of authenticated requests remembered
	// (--nonce-cache); 0 means defaultNonceCapacity.
	NonceCapacity int
	// ClockCheckEvery is the interval between comparisons of signerd's
	// clock with the NSM's; 0 means clockCheckEvery.
	ClockCheckEvery time.Duration
	// Now is signerd's clock; nil means time.Now. For tests.
	Now func() time.Time
}

// daemon is signerd's state machine and its wire.Handler.
//
// The key set lives in an atomic pointer: signing loads it and signs with
// no lock, and provisioning swaps in a whole new set at once. A nil set
// means nothing is loaded (states waiting, provisioning, failed); once a
// set is loaded the state is ready, and a failed re-provisioning leaves the
// loaded set serving.
type daemon struct {
	cfg daemonConfig
	log *slog.Logger
	// life bounds provisioning: it ends when signerd shuts down, not when
	// the connection that asked for the provisioning goes away.
	life context.Context

	// Reported in every Status, from the attestation document signerd
	// asked for at startup.
	pcrs      map[uint16][]byte
	debugMode bool

	// pins go into every caller's document, which leaves callerRoom bytes
	// of its user_data for the caller's own.
	pins       attestation.Pins
	callerRoom int

	set atomic.Pointer[keyring.Set]
	// provision serializes provisioning: a token in the channel is held by
	// the provisioning that runs.
	provision chan struct{}
	// versions is the highest version of every keyring id accepted since
	// signerd started (signed keyrings only); only the holder of the
	// provision token touches it.
	versions keyringsig.Versions

	stop context.CancelFunc // ends life

	// rec receives every sign request's decision (the audit trail).
	rec recorder
	// audit is the audit trail: its key is attested in every document.
	audit *auditTrail

	// Authenticated requests (auth.go): the clock, when signerd started
	// (timestamps before it are refused: a restart empties the nonce
	// cache), the nonces seen, the rate limits of the loaded set, and the
	// refusals counted for status.
	now      func() time.Time
	boot     int64 // Unix seconds
	clock    clockState
	nonces   *nonceCache
	limits   atomic.Pointer[limiters]
	refusals authCounters
	// nonceWarned is when the last "nonce cache full" warning was logged
	// (Unix nanoseconds).
	nonceWarned atomic.Int64

	mu       sync.Mutex
	state    wire.State
	lastErr  *wire.StatusError // the last provisioning's failure, nil after a success
	closed   bool              // close ran: no new provisioning or attestation
	inflight sync.WaitGroup    // provisionings and attestations running; close waits for them
}

// newDaemon asks the NSM for an attestation document (with no public key)
// to learn this enclave's PCRs, and returns a daemon in state waiting.
func newDaemon(life context.Context, cfg daemonConfig) (*daemon, error) {
	if cfg.NSM == nil || cfg.Keys == nil {
		return nil, errors.New("signerd: NSM and key source are required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	nonceCap := cfg.NonceCapacity
	if nonceCap <= 0 {
		nonceCap = defaultNonceCapacity
	}
	pins := cfg.Pins.attested()
	if cfg.AuditBuffer == 0 {
		cfg.AuditBuffer = defaultAuditBuffer
	}
	audit, err := newAuditTrail(cfg.AuditBuffer, cfg.Pins.AuditOverflow, log.With("component", "audit"))
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			audit.close()
		}
	}()
	room, err := callerRoom(pins, audit.spki)
	if err != nil {
		return nil, err
	}
	before := now()
	raw, err := nsm.Attest(cfg.NSM, nsm.AttestRequest{})
	after := now()
	if err != nil {
		return nil, fmt.Errorf("read own PCRs: %w", err)
	}
	doc, err := attestation.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("read own PCRs: own attestation document: %w", err)
	}
	d := &daemon{
		cfg:        cfg,
		log:        log,
		pcrs:       make(map[uint16][]byte, 16),
		debugMode:  doc.DebugMode(),
		pins:       pins,
		callerRoom: room,
		provision:  make(chan struct{}, 1),
		state:      wire.StateWaiting,
		rec:        audit,
		audit:      audit,
		now:        now,
		boot:       before.Unix(),
		nonces:     newNonceCache(int64(authWindow/time.Second), nonceCap),
	}
	for i := range 16 {
		if v, ok := doc.PCRs[i]; ok {
			d.pcrs[uint16(i)] = v
		}
	}
	if _, ok := doc.PCRs[0]; !ok {
		return nil, errors.New("read own PCRs: own attestation document has no PCR0")
	}
	d.life, d.stop = context.WithCancel(life)
	// The first clock check is the document just made; then periodically.
	d.clockObserved(before, after, doc.Timestamp)
	every := cfg.ClockCheckEvery
	if every <= 0 {
		every = clockCheckEvery
	}
	go d.clockLoop(d.life, every)
	ok = true
	return d, nil
}

// pcr0Hex returns this enclave's PCR0 as lowercase hex.
func (d *daemon) pcr0Hex() string { return fmt.Sprintf("%x", d.pcrs[0]) }

// ServeWire implements wire.Handler. Every error it returns has passed
// through wireError.
func (d *daemon) ServeWire(ctx context.Context, req wire.Message) (wire.Message, error) {
	var resp wire.Message
	var err error
	switch r := req.(type) {
	case *wire.SignRequest:
		resp, err = d.sign(r)
	case *wire.AuthSignRequest:
		resp, err = d.authSign(r)
	case *wire.StatusRequest:
		return d.status(), nil
	case *wire.ListKeysRequest:
		resp, err = d.listKeys()
	case *wire.AttestRequest:
		resp, err = d.attest(r)
	case *wire.ProvisionRequest:
		resp, err = d.provisionRequest(ctx, r)
	case *wire.AuditReadRequest:
		if err = d.hasAudit(); err == nil {
			if err = checkAuditReader(ctx); err == nil {
				resp, err = d.audit.read(r)
			}
		}
	case *wire.AuditHeadRequest:
		if err = d.hasAudit(); err == nil {
			resp, err = d.audit.head(r.Nonce)
		}
	default:
		err = fmt.Errorf("%w: signerd does not serve %s", errUnsupported, req.MessageType())
	}
	if err != nil {
		return nil, d.wireError(req, err)
	}
	return resp, nil
}

// status reports the state. It never fails.
func (d *daemon) status() *wire.Status {
	d.mu.Lock()
	state, lastErr := d.state, d.lastErr
	d.mu.Unlock()
	s := &wire.Status{
		State:       state,
		Attestation: d.cfg.Attestation,
		DebugMode:   d.debugMode,
		PCRs:        d.pcrs,
		Keys:        d.set.Load().Len(),
		Version:     d.cfg.Version,
		Pinned:      d.cfg.Pins.Pinned(),
	}
	if d.audit != nil {
		s.Audit = d.audit.status()
	}
	if kp := d.cfg.Pins.KeyringPolicy(); s.Pinned || kp.Pinned() || d.cfg.Pins.RequireAuth || d.cfg.Pins.AuditOverflow != "" {
		s.Pins = &wire.Pins{KMSKeys: d.cfg.Pins.KMSKeyStrings(), RequireAuth: d.cfg.Pins.RequireAuth, AuditOverflow: d.cfg.Pins.AuditOverflow}
		if kp.Pinned() {
			s.Pins.KeyringSigners, s.Pins.KeyringThreshold = kp.SignerStrings(), kp.M()
		}
	}
	s.Auth = d.authStatus()
	if lastErr != nil {
		e := *lastErr
		s.Error = &e
	}
	return s
}

// notReady explains why nothing can be signed yet.
func (d *daemon) notReady() error {
	d.mu.Lock()
	state, closed := d.state, d.closed
	d.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("%w: signerd is shutting down", errNotReady)
	case state == wire.StateFailed:
		return fmt.Errorf("%w: provisioning failed (see status)", errNotReady)
	}
	return fmt.Errorf("%w: state is %s, no keyring is loaded", errNotReady, state)
}

// sign is the hot path: one atomic load, a map lookup, the signature.
func (d *daemon) sign(r *wire.SignRequest) (*wire.SignResponse, error) {
	if r.KeyID == "" {
		return nil, d.refusePlain(r, fmt.Errorf("%w: key_id is empty", errInvalidRequest))
	}
	return d.signWith(d.set.Load(), r)
}

// refusePlain records and counts the refusal of a plain sign request.
func (d *daemon) refusePlain(r *wire.SignRequest, err error) error {
	dec := signDecision(r, err)
	d.refusals.count(dec.Outcome)
	_ = d.record(dec)
	return err
}

// plainAllowed refuses a plain (unauthenticated) sign request for a key
// of a keyring that declares clients.
func plainAllowed(key *keyring.Key) error {
	if !key.Policed() {
		return nil
	}
	return fmt.Errorf("%w: key %q is in keyring %q, which declares clients: send an authenticated request (an Authorization: %s header; docs/protocol.md, Authenticated sign requests)",
		errUnauthenticated, key.ID(), key.Keyring(), signreq.Scheme)
}

// signWith signs with set, the set loaded when the request arrived. If a
// re-provisioning swapped set out and destroyed it before the signature
// was made, it signs with the set now loaded.
func (d *daemon) signWith(set *keyring.Set, r *wire.SignRequest) (*wire.SignResponse, error) {
	recorded := false
	for {
		if set == nil {
			err := d.notReady()
			if !recorded {
				err = d.refusePlain(r, err)
			}
			return nil, err
		}
		key, err := set.Key(r.KeyID)
		if err == nil {
			err = plainAllowed(key)
		}
		if err == nil && r.IsDigest {
			// Refused before the decision, not after it: the audit trail
			// records no "allowed" for a digest the key cannot sign.
			err = key.CheckDigest(r.Data)
		}
		if err != nil {
			if !recorded {
				err = d.refusePlain(r, err)
			}
			return nil, err
		}
		if !recorded {
			if err := d.record(signDecision(r, nil)); err != nil {
				return nil, err
			}
			recorded = true
		}
		resp, err := signWithKey(key, r)
		if errors.Is(err, keyring.ErrDestroyed) {
			if cur := d.set.Load(); cur != set {
				set = cur
				continue
			}
		}
		return resp, err
	}
}

func (d *daemon) listKeys() (*wire.KeyList, error) {
	set := d.set.Load()
	if set == nil {
		return nil, d.notReady()
	}
	digest, err := keySetDigest(set)
	if err != nil {
		return nil, err
	}
	infos := set.Keys()
	kl := &wire.KeyList{Keys: make([]wire.KeyInfo, len(infos)), KeySetDigest: digest}
	for i, k := range infos {
		kl.Keys[i] = wire.KeyInfo{ID: k.ID, Algorithm: string(k.Algorithm), PublicKeyPEM: k.PublicKeyPEM, EthereumAddress: k.EthereumAddress}
	}
	return kl, nil
}

// attest returns a fresh document for the caller's nonce, with no public
// key: a document that proves what runs here, not one that could unseal
// anything. Its user_data is signerd's map (attestation.UserData): the
// digest of the key set loaded now, the pins, this boot's audit key, and
// the caller's user data under "caller". The host chooses the caller's bytes, never the rest.
func (d *daemon) attest(r *wire.AttestRequest) (*wire.AttestResponse, error) {
	if len(r.Nonce) > attestation.MaxUserFieldSize {
		return nil, fmt.Errorf("%w: nonce is %d bytes, want at most %d", errInvalidRequest, len(r.Nonce), attestation.MaxUserFieldSize)
	}
	if len(r.UserData) > d.callerRoom {
		return nil, fmt.Errorf("%w: user_data is %d bytes, want at most %d: the document's user_data (%d bytes at most) holds signerd's key set digest, pins and audit key too, which leaves %d bytes for yours (send a hash of larger data)",
			errInvalidRequest, len(r.UserData), d.callerRoom, attestation.MaxUserFieldSize, d.callerRoom)
	}
	if !d.enter() {
		return nil, d.notReady()
	}
	defer d.inflight.Done()
	digest, err := keySetDigest(d.set.Load())
	if err != nil {
		return nil, err
	}
	userData, err := (&attestation.UserData{KeySet: digest, Pins: d.pins, Audit: d.audit.spki, Caller: r.UserData}).Marshal()
	if err != nil {
		return nil, err
	}
	doc, err := nsm.Attest(d.cfg.NSM, nsm.AttestRequest{Nonce: r.Nonce, UserData: userData})
	if err != nil {
		return nil, err
	}
	return &wire.AttestResponse{Document: doc}, nil
}

// enter registers a provisioning or attestation, unless close has run.
func (d *daemon) enter() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.inflight.Add(1)
	return true
}

// close stops new provisioning and attestation, waits for those running
// (their contexts end with life), then unloads and destroys the key set,
// which waits for signatures in flight; last, it zeroes the audit key.
func (d *daemon) close() {
	d.stop()
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.inflight.Wait()
	if old := d.set.Swap(nil); old != nil {
		old.Destroy()
		d.log.Info("key set destroyed", "keys", old.Len())
	}
	if d.audit != nil {
		d.audit.close()
	}
}

// hasAudit refuses the audit messages of a daemon without a trail (one
// a benchmark builds by hand).
func (d *daemon) hasAudit() error {
	if d.audit == nil {
		return fmt.Errorf("%w: this signerd has no audit trail", errUnsupported)
	}
	return nil
}

// regionRE matches AWS region names (us-east-1, us-gov-west-1,
// ap-southeast-2, …). The region becomes part of the KMS host name, so
// nothing else may pass: a host that could choose the host name could
// choose whom the enclave talks TLS to.
var regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)

// checkProvisionRequest refuses requests that cannot work before any state
// changes.
func checkProvisionRequest(r *wire.ProvisionRequest) error {
	var errs []error
	if !regionRE.MatchString(r.Region) {
		errs = append(errs, fmt.Errorf("region %q: want an AWS region such as us-east-1", r.Region))
	}
	if r.Credentials.AccessKeyID == "" || r.Credentials.SecretAccessKey == "" {
		errs = append(errs, errors.New("credentials: access_key_id and secret_access_key are required"))
	}
	if len(r.IdentityCiphertext) == 0 {
		errs = append(errs, errors.New("identity_ciphertext is empty: want the KMS CiphertextBlob of the sealed age identity"))
	}
	if len(r.Keyrings) == 0 {
		errs = append(errs, errors.New("keyrings: want at least one age-encrypted keyring"))
	}
	for i, k := range r.Keyrings {
		if k.Name == "" {
			errs = append(errs, fmt.Errorf("keyrings[%d]: name is empty", i))
		}
		if len(k.Data) == 0 {
			errs = append(errs, fmt.Errorf("keyrings[%d] (%q): data is empty", i, k.Name))
		}
		if len(k.Signature) > keyringsig.MaxSignedSize {
			errs = append(errs, fmt.Errorf("keyrings[%d] (%q): signature is %d bytes, want at most %d", i, k.Name, len(k.Signature), keyringsig.MaxSignedSize))
		}
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("%w: provision_request: %s", errInvalidRequest, strings.Join(msgs, "; "))
	}
	return nil
}

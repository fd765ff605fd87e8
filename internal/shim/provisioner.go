package shim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// credentialsRetry is how soon the shim asks again for new credentials
// when the ones it has are due for refresh but the source still returns
// the same (IMDS rotates them at least five minutes before expiry).
const credentialsRetry = 15 * time.Second

// kickGap is the least time between two status checks triggered by failed
// API requests, so a flood of not_ready answers polls the enclave at most
// this often.
const kickGap = 50 * time.Millisecond

// provisioner keeps the enclave provisioned: at start, whenever it reports
// waiting (it restarted), with backoff while it is failed, and again
// before the credentials it was given expire.
type provisioner struct {
	cfg     *Config
	client  *wireclient.Client
	creds   aws.CredentialsProvider
	fetch   *fetcher
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	kick chan struct{}

	// provMu serializes provisioning attempts.
	provMu sync.Mutex
	// mu guards the fields below; it is never held across a call.
	mu           sync.Mutex
	failures     int       // failed attempts in a row
	nextAttempt  time.Time // no automatic attempt before this
	held         bool      // the last attempt failed permanently: no automatic attempt until a manual one or an enclave restart
	heldConnects uint64    // client.Connects() when held was set
	lastAttempt  time.Time
	lastSuccess  time.Time
	lastErr      string // why the last attempt failed; "" after a success
	connects     uint64 // client.Connects() at the last status check
	pushedKeyID  string // the access key id pushed last (never the secret)
	pushedExpiry time.Time
	refreshAt    time.Time // when to look for new credentials; zero if they don't expire

	seen atomic.Pointer[seenStatus]
}

// seenStatus is the enclave's status as last seen, for metrics and status.
type seenStatus struct {
	st  *wire.Status // nil if unreachable
	err error
}

func (p *provisioner) observe(st *wire.Status, err error) {
	p.seen.Store(&seenStatus{st: st, err: err})
}

// nudge asks the loop to check the enclave soon (a request found it not
// ready or unreachable). It never blocks.
func (p *provisioner) nudge() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run checks the enclave every StatusInterval (sooner when nudged) and
// provisions it when needed, until ctx ends.
func (p *provisioner) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.kick:
		}
		timer.Reset(p.step(ctx))
		select {
		case <-ctx.Done():
			return
		case <-time.After(kickGap):
		}
	}
}

// step checks the enclave once, provisions it if needed, and returns how
// long to wait before the next check.
func (p *provisioner) step(ctx context.Context) time.Duration {
	interval := p.cfg.StatusInterval.D()
	sctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout.D())
	st, err := p.client.Status(sctx)
	cancel()
	p.observe(st, err)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Debug("enclave status failed", "err", err)
		}
		// Look again soon: a restarting enclave should be provisioned as
		// soon as it listens. The client's dial backoff bounds the rate.
		return min(interval, 250*time.Millisecond)
	}
	now := p.now()
	p.mu.Lock()
	if c := p.client.Connects(); c != p.connects {
		// A new connection: the enclave may have restarted, so what
		// held the last attempts back no longer applies.
		p.connects, p.failures, p.nextAttempt = c, 0, time.Time{}
		// Only a restart is a reason to try a permanent failure's inputs
		// again: the pool opens its connections lazily, so up to
		// EnclaveConnections-1 new ones mean nothing, but once as many
		// as it has were opened since, one was lost and reopened.
		if p.held && c-p.heldConnects >= uint64(p.cfg.EnclaveConnections) {
			p.held = false
		}
	}
	if st.State == wire.StateReady && !p.refreshDue(now) {
		// Ready, and no credentials refresh pending: no automatic
		// attempt is scheduled, whatever failed before.
		p.failures, p.nextAttempt = 0, time.Time{}
	}
	due := !p.held && !now.Before(p.nextAttempt)
	refresh := due && p.refreshDue(now)
	p.mu.Unlock()

	switch st.State {
	case wire.StateWaiting, wire.StateFailed:
		if due {
			p.log.Info("provisioning the enclave", "reason", "enclave "+string(st.State))
			p.provision(ctx)
		}
	case wire.StateReady:
		if refresh {
			p.refreshCredentials(ctx)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	wait := interval
	for _, t := range []time.Time{p.nextAttempt, p.refreshAt} {
		if !t.IsZero() {
			wait = min(wait, max(t.Sub(p.now()), 0))
		}
	}
	return wait
}

// refreshCredentials provisions again if the credentials source has new
// credentials; else it looks again in credentialsRetry.
func (p *provisioner) refreshCredentials(ctx context.Context) {
	invalidate(p.creds)
	cctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout.D())
	c, err := p.creds.Retrieve(cctx)
	cancel()
	p.mu.Lock()
	old := p.pushedExpiry
	same := err == nil && c.AccessKeyID == p.pushedKeyID && c.Expires.Equal(old)
	if err != nil || same {
		p.refreshAt = p.now().Add(credentialsRetry)
		p.mu.Unlock()
		if err != nil {
			p.log.Warn("refreshing AWS credentials failed", "err", err, "expiration", old)
		} else {
			p.log.Debug("no new AWS credentials yet", "expiration", old)
		}
		return
	}
	p.mu.Unlock()
	p.log.Info("provisioning the enclave", "reason", "credentials refresh", "old_expiration", old, "new_expiration", c.Expires)
	p.provision(ctx)
}

// refreshDue reports whether the pushed credentials are due for refresh.
// p.mu must be held.
func (p *provisioner) refreshDue(now time.Time) bool {
	return !p.refreshAt.IsZero() && !now.Before(p.refreshAt)
}

func invalidate(cp aws.CredentialsProvider) {
	if inv, ok := cp.(interface{ Invalidate() }); ok {
		inv.Invalidate()
	}
}

// ProvisionError is a provisioning that failed. Status, when not nil, is
// the enclave's status after it (state failed, with the detail); a nil
// Status means the attempt failed on the host side (fetching the sealed
// files, loading credentials) or the enclave could not be reached.
// Permanent means trying again with the same inputs cannot succeed (see
// isPermanent); the shim then makes no automatic attempt until a manual
// provisioning or an enclave restart.
type ProvisionError struct {
	Err       error
	Status    *wire.Status
	Permanent bool
}

func (e *ProvisionError) Error() string { return "provisioning failed: " + e.Err.Error() }
func (e *ProvisionError) Unwrap() error { return e.Err }

// provision provisions the enclave now and returns its status after.
func (p *provisioner) provision(ctx context.Context) (*wire.Status, error) {
	p.provMu.Lock()
	defer p.provMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ProvisionTimeout.D())
	defer cancel()
	p.mu.Lock()
	p.lastAttempt = p.now()
	p.held = false
	p.mu.Unlock()
	req, creds, err := p.build(ctx)
	if err != nil {
		return nil, p.failed(&ProvisionError{Err: err, Permanent: isPermanent(err)})
	}
	st, err := p.client.Provision(ctx, req)
	if err != nil {
		perr := &ProvisionError{Err: err, Permanent: isPermanent(err)}
		if errors.Is(err, wire.ErrProvisioningFailed) {
			sctx, cancel := context.WithTimeout(context.Background(), p.cfg.RequestTimeout.D())
			perr.Status, _ = p.client.Status(sctx)
			cancel()
			p.observe(perr.Status, nil)
		}
		return perr.Status, p.failed(perr)
	}
	p.observe(st, nil)
	if st.State != wire.StateReady || st.Error != nil {
		// signerd answers a failed provisioning with its status: failed,
		// or still ready on the keys it had, with the error either way.
		why := fmt.Sprintf("enclave state %s after provisioning", st.State)
		if st.Error != nil {
			why = "enclave" + describeStatusError(st.Error)
			if st.State == wire.StateReady {
				why += " (the keys loaded before keep serving)"
			}
		}
		return st, p.failed(&ProvisionError{Err: errors.New(why), Status: st})
	}
	p.metrics.provisions[0].Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.failures, p.nextAttempt, p.lastErr, p.lastSuccess = 0, time.Time{}, "", now
	p.pushedKeyID, p.pushedExpiry, p.refreshAt = creds.AccessKeyID, time.Time{}, time.Time{}
	if creds.CanExpire {
		p.pushedExpiry = creds.Expires
		p.refreshAt = creds.Expires.Add(-p.cfg.CredentialRefresh.D())
	}
	p.log.Info("enclave provisioned", "keys", st.Keys, "access_key_id", creds.AccessKeyID, "credentials_expiration", p.pushedExpiry)
	return st, nil
}

// failed records a failed attempt and schedules the next, if any: none
// after a permanent error, none while the enclave stays ready on its keys
// (unless the credentials are due for refresh), else after backoff.
func (p *provisioner) failed(err *ProvisionError) error {
	p.metrics.provisions[1].Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := err.Err.Error()
	p.lastErr = msg
	now := p.now()
	switch {
	case err.Permanent:
		p.failures, p.nextAttempt, p.held, p.heldConnects = p.failures+1, time.Time{}, true, p.client.Connects()
		p.log.Error("provisioning failed; not retrying: the same inputs would fail again", "err", msg,
			"fix", "correct the cause, then signer provision (POST /v1/provision)")
	case err.Status != nil && err.Status.State == wire.StateReady && !p.refreshDue(now):
		p.failures, p.nextAttempt = 0, time.Time{}
		p.log.Warn("provisioning failed; the enclave keeps serving the keys it had", "err", msg)
	default:
		p.failures++
		backoff := p.cfg.RetryMin.D() << min(p.failures-1, 20)
		if backoff <= 0 || backoff > p.cfg.RetryMax.D() {
			backoff = p.cfg.RetryMax.D()
		}
		p.nextAttempt = now.Add(backoff)
		p.log.Warn("provisioning failed", "err", msg, "failures", p.failures, "retry_in", backoff)
	}
	return err
}

// permanentError is a host-side failure that no retry with the same
// inputs can get past: what the configuration points at does not fit in
// a provisioning.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// isPermanent reports whether a failed provisioning would fail again
// with the same inputs: a permanentError from build, or the enclave (or
// the wire encoder, before sending) refusing the request itself as too
// large, invalid or of another protocol version, or refusing the shim as
// an unprivileged peer (its privileges do not change while it runs).
// Everything else (the enclave unreachable, KMS refusing or throttling, a
// missing file that may yet appear, credentials) may pass on a later
// attempt.
func isPermanent(err error) bool {
	var pe permanentError
	return errors.As(err, &pe) || errors.Is(err, wire.ErrFrameTooLarge) ||
		errors.Is(err, wire.ErrInvalidRequest) || errors.Is(err, wire.ErrVersionMismatch) ||
		errors.Is(err, wire.ErrForbidden)
}

func describeStatusError(e *wire.StatusError) string {
	if e == nil {
		return ""
	}
	s := fmt.Sprintf(": step %s: %s", e.Step, e.Message)
	if e.KMSCode != "" {
		s += fmt.Sprintf(" (KMS %s: %s)", e.KMSCode, e.KMSMessage)
	}
	return s
}

// build fetches the sealed identity and keyrings and the credentials, and
// makes the provision request.
func (p *provisioner) build(ctx context.Context) (*wire.ProvisionRequest, aws.Credentials, error) {
	creds, err := p.credentials(ctx)
	if err != nil {
		return nil, aws.Credentials{}, err
	}
	identity, err := p.fetch.fetch(ctx, p.cfg.Identity)
	if errors.Is(err, errEmptySource) {
		return nil, aws.Credentials{}, fmt.Errorf("identity %s is empty (0 bytes): want the KMS ciphertext of the sealed identity, as signer seal writes it", p.cfg.Identity)
	}
	if err != nil {
		return nil, aws.Credentials{}, fmt.Errorf("identity (config field identity; signer seal writes it): %w", err)
	}
	total := len(identity)
	keyrings := make([]wire.SealedKeyring, 0, len(p.cfg.Keyrings))
	for _, src := range p.cfg.Keyrings {
		data, err := p.fetch.fetch(ctx, src)
		if errors.Is(err, errEmptySource) {
			return nil, aws.Credentials{}, fmt.Errorf("keyring %s is empty (0 bytes), so it holds no keys: want an age-encrypted keyring of at least one key (signer keyring new makes one)", src)
		}
		if err != nil {
			return nil, aws.Credentials{}, fmt.Errorf("keyring (config field keyrings; signer keyring new writes one): %w", err)
		}
		sig, err := p.fetch.fetchSignature(ctx, src)
		if err != nil {
			return nil, aws.Credentials{}, fmt.Errorf("keyring signature (%s%s, signer keyring sign writes it): %w", src, sigSuffix, err)
		}
		if sig == nil {
			p.log.Debug("keyring has no signature file", "keyring", src, "signature", src+sigSuffix)
		}
		total += len(data) + len(sig)
		keyrings = append(keyrings, wire.SealedKeyring{Name: src, Data: data, Signature: sig})
	}
	// Leave room for the credentials and framing in the 1 MiB frame.
	if limit := wire.MaxFrameSize - 16<<10; total > limit {
		return nil, aws.Credentials{}, permanentError{fmt.Errorf("the identity and keyrings total %d bytes; one provisioning carries at most %d: load fewer or smaller keyrings", total, limit)}
	}
	req := &wire.ProvisionRequest{
		Region: p.cfg.Region,
		Credentials: wire.Credentials{
			AccessKeyID:     creds.AccessKeyID,
			SecretAccessKey: wire.Secret(creds.SecretAccessKey),
			SessionToken:    wire.Secret(creds.SessionToken),
		},
		IdentityCiphertext: identity,
		EncryptionContext:  p.cfg.EncryptionContext,
		Keyrings:           keyrings,
	}
	if creds.CanExpire {
		req.Credentials.Expiration = creds.Expires
	}
	return req, creds, nil
}

// credentials returns credentials from the provider, fetched afresh if the
// cached ones are already within the refresh margin of expiry.
func (p *provisioner) credentials(ctx context.Context) (aws.Credentials, error) {
	c, err := p.creds.Retrieve(ctx)
	if err != nil {
		// SDK errors never carry the secrets.
		return aws.Credentials{}, fmt.Errorf("AWS credentials (%s): %w", credentialsSource, err)
	}
	if c.CanExpire && c.Expires.Sub(p.now()) < p.cfg.CredentialRefresh.D() {
		invalidate(p.creds)
		if c2, err := p.creds.Retrieve(ctx); err == nil && c2.Expires.After(c.Expires) {
			c = c2
		}
	}
	if !c.HasKeys() {
		return aws.Credentials{}, fmt.Errorf("AWS credentials (%s): the provider returned no access key", credentialsSource)
	}
	if c.CanExpire && !c.Expires.After(p.now()) {
		return aws.Credentials{}, fmt.Errorf("AWS credentials (%s): expired at %s", credentialsSource, c.Expires.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// shimState is the provisioner's own state, shown in /v1/status.
type shimState struct {
	Instance              string     `json:"instance,omitempty"`
	Enclave               string     `json:"enclave"`
	LastAttempt           *time.Time `json:"last_attempt,omitempty"`
	LastSuccess           *time.Time `json:"last_success,omitempty"`
	LastError             string     `json:"last_error,omitempty"`
	LastErrorPermanent    bool       `json:"last_error_permanent,omitempty"`
	NextAttempt           *time.Time `json:"next_attempt,omitempty"`
	CredentialsExpiration *time.Time `json:"credentials_expiration,omitempty"`
	Connects              uint64     `json:"enclave_connects"`
	// AuditLog is the audit drain's state; nil without audit_log.
	AuditLog *AuditLogState `json:"audit_log,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (p *provisioner) state() shimState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := shimState{
		Instance:              p.cfg.Instance,
		Enclave:               p.cfg.EnclaveAddr().String(),
		LastAttempt:           timePtr(p.lastAttempt),
		LastSuccess:           timePtr(p.lastSuccess),
		LastError:             p.lastErr,
		CredentialsExpiration: timePtr(p.pushedExpiry),
		Connects:              p.client.Connects(),
	}
	if p.held {
		s.LastErrorPermanent = true
	} else if p.failures > 0 {
		s.NextAttempt = timePtr(p.nextAttempt)
	}
	return s
}

package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyringsig"
	"github.com/enclave-signer/enclave-signer/internal/kms"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// The steps of the unseal sequence, as Status.Error.Step names them.
const (
	stepRecipientKey = "recipient_key" // take the pre-generated RSA-2048 key
	stepAttest       = "attest"        // attest its public key with the NSM
	stepKMSClient    = "kms_client"    // configure the KMS client
	stepKMSDecrypt   = "kms_decrypt"   // KMS Decrypt with Recipient, open the CMS envelope
	stepKMSKey       = "kms_key"       // the identity is sealed under a pinned KMS key
	stepIdentity     = "identity"      // parse the age identity
	stepKeyring      = "keyring"       // decrypt and parse the keyrings
	stepRequireAuth  = "require_auth"  // --require-auth refused a keyring without clients

	// With pinned keyring signers (--keyring-signer), before anything is
	// decrypted: each keyring's statement is signed by enough pinned
	// signers and is about this file, and later about this enclave's
	// identity and the keyring's plaintext (keyring_signature); the NSM's
	// time is within its window (keyring_expired); it is no rollback
	// (keyring_version).
	stepKeyringSignature = "keyring_signature"
	stepKeyringExpired   = "keyring_expired"
	stepKeyringVersion   = "keyring_version"
)

// unsealError is a failed unseal: the step, the error, and what the
// enclave attested with (nil before the attest step succeeded).
type unsealError struct {
	step      string
	err       error
	recipient *kms.Recipient
}

func (e *unsealError) Error() string { return e.step + ": " + e.err.Error() }
func (e *unsealError) Unwrap() error { return e.err }

// statusError is what Status reports about e. Every error text on the way
// is free of secrets by construction: keyring and identity errors never
// quote key material, KMS errors carry KMS's code and message.
func (e *unsealError) statusError() *wire.StatusError {
	se := &wire.StatusError{Step: e.step, Message: e.err.Error()}
	var ke *kms.Error
	if errors.As(e.err, &ke) {
		se.KMSCode, se.KMSMessage = ke.Code, ke.Message
	}
	if e.recipient != nil {
		se.PCR0 = e.recipient.PCR0
	}
	return se
}

// unseal runs the unseal sequence for r and returns the new key set and,
// with pinned keyring signers, the statements of its keyrings (to be
// remembered once the set is in use). It writes nothing to disk; the
// identity's plaintext is cleared as soon as it is parsed, and keyring
// plaintext never leaves internal/keyring.
func (d *daemon) unseal(ctx context.Context, r *wire.ProvisionRequest) (*keyring.Set, []*keyringsig.Statement, *unsealError) {
	key, err := d.cfg.Keys.Take(ctx)
	if err != nil {
		return nil, nil, &unsealError{step: stepRecipientKey, err: err}
	}
	rec, err := kms.NewRecipient(d.cfg.NSM, key)
	if err != nil {
		return nil, nil, &unsealError{step: stepAttest, err: err}
	}
	d.log.Debug("recipient key attested", "step", stepAttest, "pcr0", hex.EncodeToString(rec.PCR0), "debug_mode", rec.DebugMode, "nsm_time", rec.Timestamp)
	// Before anything is decrypted, the identity included: every keyring
	// must be vouched for, as of the NSM's time (the document just made).
	stmts, uerr := d.checkKeyrings(r.Keyrings, rec)
	if uerr != nil {
		return nil, nil, uerr
	}
	client, err := kms.New(kms.Config{
		Region: r.Region,
		Credentials: kms.Credentials{
			AccessKeyID:     r.Credentials.AccessKeyID,
			SecretAccessKey: string(r.Credentials.SecretAccessKey),
			SessionToken:    string(r.Credentials.SessionToken),
			Expires:         r.Credentials.Expiration,
		},
		Proxy:    d.cfg.KMSProxy,
		Endpoint: d.cfg.KMSEndpoint,
		Roots:    d.cfg.KMSRoots,
		Log:      d.log.With("component", "kms"),
	})
	if err != nil {
		return nil, nil, &unsealError{step: stepKMSClient, err: err, recipient: rec}
	}
	defer client.Close()
	start := time.Now()
	pt, uerr := d.decryptIdentity(ctx, client, r, rec)
	if uerr != nil {
		return nil, nil, uerr
	}
	d.log.Debug("identity decrypted by KMS", "step", stepKMSDecrypt, "duration", time.Since(start))
	id, err := keyring.ParseIdentity(pt)
	clear(pt)
	if err != nil {
		return nil, nil, &unsealError{step: stepIdentity, err: fmt.Errorf("the sealed identity is not an age-keygen key file: %w", err), recipient: rec}
	}
	for i, s := range stmts {
		if err := keyringsig.CheckRecipients(s, id.Recipients()); err != nil {
			return nil, nil, keyringRefusal(r.Keyrings[i].Name, err, rec)
		}
	}
	set, uerr := d.loadKeyrings(id, r.Keyrings, stmts, rec)
	if uerr != nil {
		return nil, nil, uerr
	}
	return set, stmts, nil
}

// checkKeyrings checks, with pinned keyring signers, each keyring against
// its signature file before anything is decrypted: enough distinct pinned
// signers signed a statement about exactly this file, the NSM's time (now,
// from rec's document) is within the statement's window, and its version
// is no rollback. Each keyring id may come once. It returns the
// statements, in the order of the keyrings; nil when nothing is pinned.
func (d *daemon) checkKeyrings(ks []wire.SealedKeyring, rec *kms.Recipient) ([]*keyringsig.Statement, *unsealError) {
	p := d.cfg.Pins.KeyringPolicy()
	if !p.Pinned() {
		d.log.Warn("keyrings are not checked: no keyring signer is pinned (--keyring-signer), so any keyring encrypted to the identity's recipient is loaded", "keyrings", len(ks))
		return nil, nil
	}
	now := rec.Timestamp
	stmts := make([]*keyringsig.Statement, len(ks))
	names := map[string]string{} // keyring id → the keyring (name) that has it
	for i, k := range ks {
		v, err := p.Verify(k.Data, k.Signature, now)
		if err != nil {
			return nil, keyringRefusal(k.Name, err, rec)
		}
		s := v.Statement
		if other, dup := names[s.KeyringID]; dup {
			return nil, &unsealError{step: stepKeyringVersion, recipient: rec,
				err: fmt.Errorf("keyrings %q and %q are both keyring %s: provision one version of each keyring", other, k.Name, s.KeyringID)}
		}
		names[s.KeyringID] = k.Name
		if err := d.versions.Check(s); err != nil {
			return nil, keyringRefusal(k.Name, err, rec)
		}
		stmts[i] = s
		signers := make([]string, len(v.Signers))
		for j, sg := range v.Signers {
			signers[j] = sg.String()
		}
		d.log.Info("keyring vouched for", "step", stepKeyringSignature, "keyring", k.Name, "keyring_id", s.KeyringID, "keyring_version", s.Version,
			"not_after", s.NotAfter, "nsm_time", now, "signers", signers)
	}
	return stmts, nil
}

// keyringRefusal is a keyring refused by internal/keyringsig, under the step
// of its kind.
func keyringRefusal(name string, err error, rec *kms.Recipient) *unsealError {
	step := stepKeyringSignature
	switch {
	case errors.Is(err, keyringsig.ErrExpired):
		step = stepKeyringExpired
	case errors.Is(err, keyringsig.ErrVersion):
		step = stepKeyringVersion
	}
	return &unsealError{step: step, err: fmt.Errorf("keyring %q: %w", name, err), recipient: rec}
}

// loadKeyrings decrypts and parses each keyring and joins them into a set.
// With statements (pinned keyring signers), each plaintext must be format
// 2 and name the keyring id and version its statement does.
func (d *daemon) loadKeyrings(id *keyring.Identity, ks []wire.SealedKeyring, stmts []*keyringsig.Statement, rec *kms.Recipient) (*keyring.Set, *unsealError) {
	rings := make([]*keyring.Keyring, 0, len(ks))
	fail := func(step string, err error) (*keyring.Set, *unsealError) {
		for _, kr := range rings {
			kr.Destroy()
		}
		return nil, &unsealError{step: step, err: err, recipient: rec}
	}
	for i, k := range ks {
		kr, err := keyring.DecryptKeyring(id, k.Name, k.Data)
		if err != nil {
			return fail(stepKeyring, err)
		}
		rings = append(rings, kr)
		if stmts == nil {
			continue
		}
		if kr.FormatVersion() != keyring.Format2 {
			return fail(stepKeyringSignature, fmt.Errorf("keyring %q: its plaintext is version %d, and a signed keyring must be version %d, naming its keyring_id and keyring_version (docs/keyring.md)",
				k.Name, kr.FormatVersion(), keyring.Format2))
		}
		if err := keyringsig.CheckContent(stmts[i], kr.KeyringID(), kr.KeyringVersion()); err != nil {
			return fail(stepKeyringSignature, fmt.Errorf("keyring %q: %w", k.Name, err))
		}
	}
	set, err := keyring.NewSet(rings...)
	if err != nil {
		return fail(stepKeyring, err)
	}
	if open := set.OpenKeyrings(); d.cfg.Pins.RequireAuth && len(open) > 0 {
		set.Destroy()
		return nil, &unsealError{step: stepRequireAuth, recipient: rec, err: fmt.Errorf(
			"keyrings %q declare no clients, so anyone who reaches signerd could sign with their keys, and this signerd runs with --require-auth (pinned in its image): declare clients and key policies in them (signer keyring new --client …; docs/keyring.md)", open)}
	}
	return set, nil
}

// checkProvisioner refuses a provisioning from an unprivileged peer: a
// vsock or TCP source port of 1024 or above, which any local user on the
// parent can open (wire.PeerFromContext; a request without a peer counts
// as unprivileged). Only root (or CAP_NET_BIND_SERVICE) binds a port
// below 1024, as the host shim does; over a unix socket, development only,
// every peer is privileged and the socket's mode (0600) decides.
func checkProvisioner(ctx context.Context) error {
	p, ok := wire.PeerFromContext(ctx)
	if ok && p.Privileged {
		return nil
	}
	from := "a peer of unknown address"
	if ok && p.Addr != nil {
		from = p.Addr.Network() + " peer " + p.Addr.String()
	}
	return fmt.Errorf("%w: provisioning is accepted only from a privileged source port (below 1024, which only root or CAP_NET_BIND_SERVICE can bind), and this request came from %s; nothing changed: provision through the host shim, run as root or with CAP_NET_BIND_SERVICE", errForbidden, from)
}

// decryptIdentity has KMS decrypt the sealed identity to rec. Unpinned,
// KMS chooses the key from the ciphertext. Pinned, each Decrypt names a
// pinned key of the request's region (KeyId), in the order pinned, so KMS
// decrypts only a ciphertext made under that key, and its answer must
// name that key (the answer comes over TLS that ends here). If none
// decrypts because KMS said each was not the identity's key
// (IncorrectKeyException), one more Decrypt without KeyId asks KMS which
// key the ciphertext is under, its plaintext dropped unopened, so that the
// error can name it: a key of someone else's is an attack to report, a key
// dropped from the pins a mistake to fix. Any other refusal (access
// denied, throttled) is reported as it is, with no further call.
func (d *daemon) decryptIdentity(ctx context.Context, client *kms.Client, r *wire.ProvisionRequest, rec *kms.Recipient) ([]byte, *unsealError) {
	in := kms.DecryptInput{CiphertextBlob: r.IdentityCiphertext, EncryptionContext: r.EncryptionContext}
	pins := d.cfg.Pins
	if !pins.Pinned() {
		out, err := client.Decrypt(ctx, in, rec)
		if err != nil {
			return nil, &unsealError{step: stepKMSDecrypt, err: err, recipient: rec}
		}
		return out.Plaintext, nil
	}
	keyErr := func(format string, a ...any) *unsealError {
		return &unsealError{step: stepKMSKey, recipient: rec, err: fmt.Errorf(format+"; signerd accepts only an identity sealed under %s (pinned in its image: --kms-key)",
			append(a, strings.Join(pins.KMSKeyStrings(), " or "))...)}
	}
	var refused []string // "ARN: code" for each pinned key KMS refused
	tried := 0
	var firstOther error // the first refusal other than IncorrectKeyException
	for _, k := range pins.KMSKeys {
		if k.Region != r.Region {
			continue
		}
		tried++
		in.KeyID = k.String()
		out, err := client.Decrypt(ctx, in, rec)
		if err == nil {
			if out.KeyARN != in.KeyID {
				clear(out.Plaintext)
				return nil, keyErr("KMS answered a Decrypt naming key %s with key %q", in.KeyID, out.KeyARN)
			}
			d.log.Debug("identity is sealed under a pinned key", "step", stepKMSKey, "key_arn", out.KeyARN)
			return out.Plaintext, nil
		}
		var ke *kms.Error
		if !errors.As(err, &ke) {
			// KMS unreachable, credentials expired: no other key does better.
			return nil, &unsealError{step: stepKMSDecrypt, err: err, recipient: rec}
		}
		refused = append(refused, k.String()+": "+ke.Code)
		if ke.Code != "IncorrectKeyException" && firstOther == nil {
			firstOther = err
		}
	}
	if tried == 0 {
		return nil, keyErr("no pinned KMS key is in region %s, where the host asked for the identity to be decrypted", r.Region)
	}
	if firstOther != nil {
		// A pinned key refused otherwise (access denied, disabled,
		// throttled beyond the retries): that is the error to fix, and
		// asking KMS once more which key the identity is under would
		// only repeat it.
		return nil, &unsealError{step: stepKMSDecrypt, err: firstOther, recipient: rec}
	}
	// Every pinned key was refused as not the identity's
	// (IncorrectKeyException): ask KMS which key it is under.
	answered, cerr := client.CiphertextKey(ctx, in, rec)
	if cerr == nil && !slices.Contains(pins.KMSKeyStrings(), answered) {
		d.log.Warn("provisioning offered an identity sealed under a KMS key that is not pinned", "step", stepKMSKey, "key_arn", answered, "kms_keys", pins.KMSKeyStrings())
		return nil, keyErr("the identity is sealed under KMS key %s, which is not pinned (KMS refused it for the pinned keys: %s)", answered, strings.Join(refused, ", "))
	}
	why := "it did not say which key the identity is sealed under"
	switch {
	case cerr != nil:
		why += " (" + cerr.Error() + ")"
	default: // a pinned key, which KMS had just refused: not KMS as it documents itself
		why = "then named the pinned key " + answered + " as the identity's key"
	}
	return nil, keyErr("KMS refused the identity for every pinned key as sealed under another key (%s), and %s", strings.Join(refused, ", "), why)
}

// provisionRequest validates r, waits for any other provisioning to end,
// unseals, and swaps the new set in. The answer is the status afterwards,
// also when the unseal failed (its Error says why); only a request from an
// unprivileged peer, an invalid one, or one that arrives while shutting
// down gets an error frame instead.
func (d *daemon) provisionRequest(ctx context.Context, r *wire.ProvisionRequest) (*wire.Status, error) {
	if err := checkProvisioner(ctx); err != nil {
		d.log.Warn("provisioning refused", "err", err)
		return nil, err
	}
	if err := checkProvisionRequest(r); err != nil {
		return nil, err
	}
	if !d.enter() {
		return nil, d.notReady()
	}
	defer d.inflight.Done()
	select {
	case d.provision <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for another provisioning to finish: %w", ctx.Err())
	case <-d.life.Done():
		return nil, d.notReady()
	}
	defer func() { <-d.provision }()

	d.mu.Lock()
	if d.set.Load() == nil {
		d.state = wire.StateProvisioning
	}
	d.mu.Unlock()
	start := time.Now()
	d.log.Info("provisioning", "state", d.status().State, "request", r)

	set, stmts, uerr := d.unseal(d.life, r)
	if uerr != nil {
		se := uerr.statusError()
		d.mu.Lock()
		d.lastErr = se
		if d.set.Load() == nil {
			d.state = wire.StateFailed
		}
		state := d.state
		d.mu.Unlock()
		attrs := []any{"state", state, "step", se.Step, "err", uerr.err}
		if se.KMSCode != "" {
			attrs = append(attrs, "code", se.KMSCode)
		}
		if se.PCR0 != nil {
			attrs = append(attrs, "pcr0", hex.EncodeToString(se.PCR0))
		}
		if state == wire.StateReady {
			attrs = append(attrs, "note", "the previously loaded keys keep serving")
		}
		d.log.Warn("provisioning failed", attrs...)
		return d.status(), nil
	}

	// Accepted: from now on no lower version of these keyrings loads.
	for _, s := range stmts {
		d.versions.Accept(s)
	}
	d.mu.Lock()
	// The rates' buckets first: a request that finds the new set finds
	// its buckets too.
	d.limits.Store(newLimiters(set, d.limits.Load(), d.now()))
	old := d.set.Swap(set)
	d.state = wire.StateReady
	d.lastErr = nil
	d.mu.Unlock()
	if old != nil {
		// Signatures in flight on the old set finish first.
		old.Destroy()
	}
	d.log.Info("provisioned", "state", wire.StateReady, "keys", set.Len(), "keyrings", set.Keyrings(),
		"replaced_keys", old.Len(), "duration", time.Since(start))
	return d.status(), nil
}

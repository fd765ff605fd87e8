// Package fakeenclave stands in for signerd in tests of the host side: a
// wire.Server on a unix socket whose handler is a small state machine
// (waiting → provisioning → ready, or failed) holding real ed25519 and
// ecdsa-p256 keys.
//
// It is faithful in what the host sees on the wire: the messages, the error
// codes and when each is sent, connection loss on Restart. It is not an
// enclave: provisioning checks only that the request is complete and
// "unseals" nothing, and its secp256k1 key answers with fixed bytes of the
// right shapes, not a real signature.
package fakeenclave

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// Key ids the fake serves once ready.
const (
	KeyEd25519   = "ed"
	KeyP256      = "p256"
	KeySecp256k1 = "eth"
	// KeyInternalError is no key: signing with it gets an internal error
	// frame, as an unmapped failure inside signerd would.
	KeyInternalError = "fail-internal"
)

// EthereumAddress is the fixed address the fake gives its secp256k1 key.
const EthereumAddress = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"

// Enclave is a running fake signerd. Its methods may be called from any
// goroutine.
type Enclave struct {
	// Addr is the enclave's address (unix://…).
	Addr transport.Addr
	// Ed25519 and P256 are the public keys of KeyEd25519 and KeyP256.
	Ed25519 ed25519.PublicKey
	P256    *ecdsa.PublicKey

	dir    string // the temporary directory of the socket
	path   string
	edPriv ed25519.PrivateKey
	p256   *ecdsa.PrivateKey
	keys   []wire.KeyInfo
	// keySetDigest is attestation.KeySetDigest of keys, as signerd sends it.
	keySetDigest []byte

	mu         sync.Mutex
	srv        *wire.Server
	served     chan struct{}
	state      wire.State
	statusErr  *wire.StatusError
	provisions []wire.ProvisionRequest
	failNext   *wire.StatusError
	refuse     *wire.Error // answers every provisioning, as signerd refuses an unprivileged peer
	signGate   chan struct{}
	signsHeld  chan struct{}
	provDelay  time.Duration
	restarts   int
	authSigns  []wire.AuthSignRequest
	authErr    *wire.Error
	authStatus *wire.AuthStatus
	audit      *fakeAudit // nil until EnableAudit
}

// Start serves a fake enclave in state waiting on a unix socket in a fresh
// short temporary directory, until the test ends.
func Start(t testing.TB) *Enclave {
	t.Helper()
	e, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// New serves a fake enclave as Start does, for code without a testing.TB
// (runnable examples); Close stops it and removes its directory.
func New() (*Enclave, error) {
	// Unix socket paths are limited to about 100 bytes: t.TempDir() can be
	// longer than that for long test names.
	dir, err := os.MkdirTemp("", "fakeenclave")
	if err != nil {
		return nil, err
	}
	e := &Enclave{dir: dir, path: filepath.Join(dir, "signerd.sock"), state: wire.StateWaiting, signsHeld: make(chan struct{}, 1024)}
	e.Addr = transport.Addr{Scheme: transport.Unix, Path: e.path}
	e.Ed25519, e.edPriv, _ = ed25519.GenerateKey(rand.Reader)
	e.p256, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.P256 = &e.p256.PublicKey
	e.keys = []wire.KeyInfo{
		{ID: KeyEd25519, Algorithm: "ed25519", PublicKeyPEM: pemSPKI(e.Ed25519)},
		{ID: KeyP256, Algorithm: "ecdsa-p256", PublicKeyPEM: pemSPKI(e.P256)},
		{ID: KeySecp256k1, Algorithm: "ecdsa-secp256k1", PublicKeyPEM: "-----BEGIN PUBLIC KEY-----\nfake\n-----END PUBLIC KEY-----\n", EthereumAddress: EthereumAddress},
	}
	var pubs []attestation.PublicKey
	for _, k := range e.keys {
		block, _ := pem.Decode([]byte(k.PublicKeyPEM))
		pubs = append(pubs, attestation.PublicKey{ID: k.ID, Algorithm: k.Algorithm, SPKI: block.Bytes})
	}
	if e.keySetDigest, err = attestation.KeySetDigest(pubs); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := e.listen(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return e, nil
}

// Close stops the enclave and removes its socket's directory.
func (e *Enclave) Close() {
	e.Stop()
	os.RemoveAll(e.dir)
}

func pemSPKI(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func (e *Enclave) listen() error {
	os.Remove(e.path)
	ln, err := net.Listen("unix", e.path)
	if err != nil {
		return err
	}
	srv := &wire.Server{Handler: wire.HandlerFunc(e.serve), Software: "fakeenclave"}
	served := make(chan struct{})
	e.mu.Lock()
	e.srv, e.served = srv, served
	e.mu.Unlock()
	go func() {
		srv.Serve(ln)
		close(served)
	}()
	return nil
}

// Stop closes the listener and every connection: the enclave is gone.
func (e *Enclave) Stop() {
	e.mu.Lock()
	srv, served := e.srv, e.served
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-served
	}
}

// Restart stops the enclave and starts a new one on the same socket in
// state waiting, as a restarted signerd would be.
func (e *Enclave) Restart() error {
	e.Stop()
	e.mu.Lock()
	e.state, e.statusErr = wire.StateWaiting, nil
	e.restarts++
	if e.audit != nil {
		e.audit.newBoot()
	}
	e.mu.Unlock()
	return e.listen()
}

// SetState forces the state (and, for failed, the error Status reports).
func (e *Enclave) SetState(s wire.State, serr *wire.StatusError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.state, e.statusErr = s, serr
}

// State returns the current state.
func (e *Enclave) State() wire.State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

// FailProvisioning makes provisioning fail with serr until it is called
// again with nil. As signerd does, a failed provisioning is answered with
// the status carrying serr: state failed, or still ready (with serr) if
// keys were loaded before.
func (e *Enclave) FailProvisioning(serr *wire.StatusError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failNext = serr
}

// SetProvisionDelay makes each provisioning take d.
func (e *Enclave) SetProvisionDelay(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.provDelay = d
}

// HoldSigns makes every sign request wait until ReleaseSigns (or the
// connection's end); SignsHeld receives once per held request.
func (e *Enclave) HoldSigns() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.signGate == nil {
		e.signGate = make(chan struct{})
	}
}

// ReleaseSigns lets held and later sign requests through.
func (e *Enclave) ReleaseSigns() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.signGate != nil {
		close(e.signGate)
		e.signGate = nil
	}
}

// SignsHeld receives once for each sign request that HoldSigns holds.
func (e *Enclave) SignsHeld() <-chan struct{} { return e.signsHeld }

// Provisions returns the provision requests received so far, in order.
func (e *Enclave) Provisions() []wire.ProvisionRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]wire.ProvisionRequest(nil), e.provisions...)
}

func (e *Enclave) status() *wire.Status {
	st := &wire.Status{
		State:       e.state,
		Attestation: wire.AttestationSimulated,
		PCRs:        map[uint16][]byte{0: make([]byte, 48), 1: make([]byte, 48), 2: make([]byte, 48)},
		Version:     "fakeenclave",
		Error:       e.statusErr,
	}
	st.PCRs[0][0] = 0xaa
	if e.state == wire.StateReady {
		st.Keys = len(e.keys)
	}
	st.Auth = e.authStatus
	return st
}

// authSign records r and answers it: with the error SetAuthError set, or
// else by signing what its body asks with the key its path names. It
// checks no credential: that is signerd's job, tested there.
func (e *Enclave) authSign(ctx context.Context, r *wire.AuthSignRequest) (wire.Message, error) {
	e.mu.Lock()
	e.authSigns = append(e.authSigns, *r)
	we := e.authErr
	e.mu.Unlock()
	if we != nil {
		return nil, we
	}
	id, err := signreq.KeyIDFromPath(r.Path)
	if err != nil {
		return nil, wire.NewError(wire.CodeInvalidRequest, err.Error())
	}
	b, err := signreq.ParseBody(r.Body)
	if err != nil {
		return nil, wire.NewError(wire.CodeInvalidRequest, err.Error())
	}
	data, err := b.Decode(nil)
	if err != nil {
		return nil, wire.NewError(wire.CodeInvalidRequest, err.Error())
	}
	return e.sign(ctx, &wire.SignRequest{KeyID: id, Data: data, IsDigest: b.IsDigest})
}

// AuthSigns returns the authenticated sign requests received so far.
func (e *Enclave) AuthSigns() []wire.AuthSignRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]wire.AuthSignRequest(nil), e.authSigns...)
}

// SetAuthError makes every later authenticated sign request answer we
// (nil: sign again).
func (e *Enclave) SetAuthError(we *wire.Error) {
	e.mu.Lock()
	e.authErr = we
	e.mu.Unlock()
}

// SetAuthStatus sets the auth part of every later status.
func (e *Enclave) SetAuthStatus(a *wire.AuthStatus) {
	e.mu.Lock()
	e.authStatus = a
	e.mu.Unlock()
}

func (e *Enclave) serve(ctx context.Context, req wire.Message) (wire.Message, error) {
	switch r := req.(type) {
	case *wire.StatusRequest:
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.status(), nil
	case *wire.ProvisionRequest:
		return e.provision(ctx, r)
	case *wire.ListKeysRequest:
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.state != wire.StateReady {
			return nil, wire.NewError(wire.CodeNotReady, "no keyring loaded (state "+string(e.state)+")")
		}
		return &wire.KeyList{Keys: e.keys, KeySetDigest: e.keySetDigest}, nil
	case *wire.SignRequest:
		m, err := e.sign(ctx, r)
		e.auditRecord(r, err)
		return m, err
	case *wire.AuthSignRequest:
		return e.authSign(ctx, r)
	case *wire.AuditReadRequest, *wire.AuditHeadRequest:
		e.mu.Lock()
		a := e.audit
		e.mu.Unlock()
		if a == nil {
			break
		}
		if rr, ok := r.(*wire.AuditReadRequest); ok {
			return a.read(rr)
		}
		return a.head(r.(*wire.AuditHeadRequest))
	case *wire.AttestRequest:
		e.mu.Lock()
		a := e.audit
		e.mu.Unlock()
		if a != nil {
			return a.attest(r, e.keySetDigest)
		}
		doc := append([]byte("fake-cose-sign1|nonce="), r.Nonce...)
		doc = append(doc, "|user_data="...)
		return &wire.AttestResponse{Document: append(doc, r.UserData...)}, nil
	}
	return nil, wire.NewError(wire.CodeUnsupported, fmt.Sprintf("%s not served", req.MessageType()))
}

// RefuseProvisioning makes every later provisioning answer the error
// frame we (nil: accept again), as signerd answers a peer it does not
// take provisioning from (wire.CodeForbidden). Nothing is recorded.
func (e *Enclave) RefuseProvisioning(we *wire.Error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refuse = we
}

func (e *Enclave) provision(ctx context.Context, r *wire.ProvisionRequest) (wire.Message, error) {
	e.mu.Lock()
	refuse := e.refuse
	e.mu.Unlock()
	if refuse != nil {
		return nil, refuse
	}
	if r.Region == "" || len(r.Keyrings) == 0 || len(r.IdentityCiphertext) == 0 || r.Credentials.AccessKeyID == "" {
		return nil, wire.NewError(wire.CodeInvalidRequest, "provision request needs region, credentials, identity_ciphertext and keyrings")
	}
	e.mu.Lock()
	e.provisions = append(e.provisions, *r)
	wasReady := e.state == wire.StateReady
	if !wasReady {
		e.state = wire.StateProvisioning
	}
	delay, fail := e.provDelay, e.failNext
	e.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if fail != nil {
		// As signerd: the answer is the status, with the error; keys
		// already loaded keep serving.
		e.statusErr = fail
		if !wasReady {
			e.state = wire.StateFailed
		}
		return e.status(), nil
	}
	e.state, e.statusErr = wire.StateReady, nil
	return e.status(), nil
}

func (e *Enclave) sign(ctx context.Context, r *wire.SignRequest) (wire.Message, error) {
	e.mu.Lock()
	state, gate := e.state, e.signGate
	e.mu.Unlock()
	if gate != nil {
		e.signsHeld <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if state != wire.StateReady {
		return nil, wire.NewError(wire.CodeNotReady, "no keyring loaded (state "+string(state)+")")
	}
	switch r.KeyID {
	case KeyInternalError:
		return nil, errors.New("simulated internal failure")
	case KeyEd25519:
		if r.IsDigest {
			return nil, wire.NewError(wire.CodeDigestNotAllowed, `key "ed" is ed25519, which signs whole messages only`)
		}
		return &wire.SignResponse{KeyID: r.KeyID, Algorithm: "ed25519", Signature: ed25519.Sign(e.edPriv, r.Data)}, nil
	case KeyP256, KeySecp256k1:
		digest := r.Data
		if r.IsDigest {
			if len(digest) != 32 {
				return nil, wire.NewError(wire.CodeInvalidDigest, fmt.Sprintf("digest is %d bytes, want 32", len(digest)))
			}
		} else {
			h := sha256.Sum256(r.Data)
			digest = h[:]
		}
		if r.KeyID == KeySecp256k1 {
			// Fixed bytes of the right shapes: the fake holds no secp256k1 key.
			one := uint8(1)
			rsv := make([]byte, 65)
			copy(rsv, digest)
			rsv[64] = one
			return &wire.SignResponse{KeyID: r.KeyID, Algorithm: "ecdsa-secp256k1", Signature: []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, RecoveryID: &one, SignatureRSV: rsv}, nil
		}
		sig, err := ecdsa.SignASN1(rand.Reader, e.p256, digest)
		if err != nil {
			return nil, err
		}
		return &wire.SignResponse{KeyID: r.KeyID, Algorithm: "ecdsa-p256", Signature: sig}, nil
	}
	return nil, wire.NewError(wire.CodeUnknownKey, fmt.Sprintf("no key %q", r.KeyID))
}

// ErrNoProvision is returned by WaitProvisions when too few came in time.
var ErrNoProvision = errors.New("fakeenclave: not enough provision requests")

// WaitProvisions waits until at least n provision requests have come, or d
// has passed.
func (e *Enclave) WaitProvisions(n int, d time.Duration) ([]wire.ProvisionRequest, error) {
	deadline := time.Now().Add(d)
	for {
		p := e.Provisions()
		if len(p) >= n {
			return p, nil
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("%w: got %d after %s, want %d", ErrNoProvision, len(p), d, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitState waits until the enclave is in state s, or d has passed.
func (e *Enclave) WaitState(s wire.State, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		got := e.State()
		if got == s {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fakeenclave: state %s after %s, want %s", got, d, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

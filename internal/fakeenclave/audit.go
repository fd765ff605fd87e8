package fakeenclave

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/audit"
	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// fakeAudit is a small audit trail in the fake's image of signerd's
// (docs/audit.md): each sign request is a decision entry, a read that
// reaches the end adds a checkpoint, reads go by cursor, and each boot
// (Restart) has a key of its own, attested in the fake's documents,
// which are real simulated ones. Unlike signerd's, its buffer has no
// bound.
type fakeAudit struct {
	ca  *nsmsim.CA
	sim *nsmsim.Simulator

	mu     sync.Mutex
	priv   ed25519.PrivateKey
	chain  *audit.Chain
	recs   []audit.Record // not yet freed, in order
	next   uint64         // the position after the last record freed
	lastCP uint64
	refuse *wire.Error
}

// EnableAudit gives the fake an audit trail; its attestation documents
// become real simulated ones (see AuditRoots and AuditPCR0) whose
// user_data attests the boot's audit key.
func (e *Enclave) EnableAudit(t testing.TB) {
	t.Helper()
	ca, err := nsmsim.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sim, err := nsmsim.New(nsmsim.Options{CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAudit{ca: ca, sim: sim}
	a.newBoot()
	e.mu.Lock()
	e.audit = a
	e.mu.Unlock()
}

// AuditRoots verifies the documents of a fake with an audit trail.
func (e *Enclave) AuditRoots() *x509.CertPool { return e.audit.ca.Roots() }

// AuditPCR0 is the PCR0 of those documents.
func (e *Enclave) AuditPCR0() []byte { return e.audit.sim.PCR(0) }

// AuditKey is the current boot's audit key.
func (e *Enclave) AuditKey() ed25519.PublicKey {
	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	return e.audit.priv.Public().(ed25519.PublicKey)
}

// AuditLastSeq is the current boot's last entry.
func (e *Enclave) AuditLastSeq() uint64 {
	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	seq, _ := e.audit.chain.Head()
	return seq
}

// RefuseAuditReads makes every audit read answer we (nil: serve again).
func (e *Enclave) RefuseAuditReads(we *wire.Error) {
	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	e.audit.refuse = we
}

func (a *fakeAudit) newBoot() {
	a.mu.Lock()
	defer a.mu.Unlock()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	a.priv, a.chain, a.recs, a.next, a.lastCP = priv, audit.NewChain(pub), nil, 0, 0
}

// auditRecord records a sign request's decision, if the fake has an
// audit trail: allowed, or the code of the error it was answered with.
func (e *Enclave) auditRecord(r *wire.SignRequest, err error) {
	e.mu.Lock()
	a := e.audit
	e.mu.Unlock()
	if a == nil {
		return
	}
	outcome := audit.OutcomeAllowed
	if we, ok := err.(*wire.Error); ok {
		outcome = we.Code.String()
	} else if err != nil {
		outcome = "invalid"
	}
	a.record(r, outcome)
}

func (a *fakeAudit) record(r *wire.SignRequest, outcome string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	kind := "message"
	if r.IsDigest {
		kind = "digest"
	}
	e := &audit.Entry{Type: audit.Decision, Time: time.Now(), Key: r.KeyID, Kind: kind, Digest: sha256.Sum256(r.Data), Outcome: outcome}
	if outcome != audit.OutcomeAllowed {
		e.Reason = outcome
	}
	a.chain.Append(e)
	a.recs = append(a.recs, e)
}

func (a *fakeAudit) read(r *wire.AuditReadRequest) (wire.Message, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refuse != nil {
		return nil, a.refuse
	}
	pub := a.priv.Public().(ed25519.PublicKey)
	if bytes.Equal(r.AuditKey, pub) {
		for len(a.recs) > 0 && audit.Position(a.recs[0]) < r.Cursor {
			a.next = audit.Position(a.recs[0]) + 1
			a.recs = a.recs[1:]
		}
	}
	if seq, h := a.chain.Head(); seq > a.lastCP {
		a.recs = append(a.recs, audit.SignCheckpoint(a.priv, seq, h, time.Now()))
		a.lastCP = seq
	}
	b := &wire.AuditBatch{AuditKey: pub, Next: a.next}
	max := int(r.Max)
	if max == 0 {
		max = 1024
	}
	for i, rec := range a.recs {
		if i == max {
			b.More = true
			break
		}
		b.Records = append(b.Records, rec.AppendJSON(nil))
		b.Next = audit.Position(rec) + 1
	}
	return b, nil
}

func (a *fakeAudit) head(r *wire.AuditHeadRequest) (wire.Message, error) {
	if err := audit.CheckNonce(r.Nonce); err != nil {
		return nil, wire.NewError(wire.CodeInvalidRequest, err.Error())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	seq, h := a.chain.Head()
	hd := audit.SignHead(a.priv, seq, h, time.Now(), r.Nonce)
	return &wire.AuditHead{AuditKey: hd.AuditKey, Seq: hd.Seq, Hash: hd.Hash[:], Time: hd.Time.UnixNano(), Nonce: hd.Nonce, Sig: hd.Sig}, nil
}

// attest makes a real simulated document attesting the audit key.
func (a *fakeAudit) attest(r *wire.AttestRequest, keySetDigest []byte) (wire.Message, error) {
	a.mu.Lock()
	spki, err := attestation.MarshalAuditKey(a.priv.Public().(ed25519.PublicKey))
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ud, err := (&attestation.UserData{KeySet: keySetDigest, Audit: spki, Caller: r.UserData}).Marshal()
	if err != nil {
		return nil, err
	}
	doc, err := nsm.Attest(a.sim, nsm.AttestRequest{Nonce: r.Nonce, UserData: ud})
	if err != nil {
		return nil, err
	}
	return &wire.AttestResponse{Document: doc}, nil
}

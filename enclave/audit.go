package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// auditTrail is signerd's audit trail (docs/audit.md): the ed25519 key
// that signs this boot's checkpoints and heads, generated at boot, held
// in memory only and attested in the "audit" of every document signerd
// makes.
type auditTrail struct {
	pub  ed25519.PublicKey
	spki []byte // pub's DER SubjectPublicKeyInfo, as user_data carries it

	mu   sync.Mutex
	priv ed25519.PrivateKey // nil once closed
}

// newAuditTrail generates this boot's audit key.
func newAuditTrail() (*auditTrail, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	spki, err := attestation.MarshalAuditKey(pub)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	return &auditTrail{pub: pub, spki: spki, priv: priv}, nil
}

// close zeroes the audit key: nothing can be signed for this boot after.
func (a *auditTrail) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.priv)
	a.priv = nil
}

package main

import (
	"bytes"
	"testing"

	"github.com/enclave-signer/enclave-signer/pkg/attestation"
	"github.com/enclave-signer/enclave-signer/pkg/wire"
)

// attestedAuditKey returns the audit key of a fresh document from e.
func attestedAuditKey(t *testing.T, e *env) []byte {
	t.Helper()
	resp, err := e.dial().Attest(t.Context(), &wire.AttestRequest{})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := attestation.Verify(resp.Document, attestation.VerifyOptions{Roots: e.simCA.Roots()})
	if err != nil {
		t.Fatal(err)
	}
	ud, err := doc.SignerdUserData()
	if err != nil {
		t.Fatal(err)
	}
	if ud.Audit == nil || ud.AuditKey() == nil {
		t.Fatalf("the document attests no ed25519 audit key: %+v", ud)
	}
	if err := doc.Check(attestation.Expect{PCRs: map[int][]byte{0: doc.PCRs[0]}, AuditKey: ud.Audit}); err != nil {
		t.Fatal(err)
	}
	return ud.Audit
}

// TestAuditKeyAttested: every document attests the boot's audit key, the
// same all boot long; another boot has another key.
func TestAuditKeyAttested(t *testing.T) {
	e := start(t)
	k1 := attestedAuditKey(t, e)
	if again := attestedAuditKey(t, e); !bytes.Equal(again, k1) {
		t.Fatalf("the audit key changed within a boot: %x, then %x", k1, again)
	}
	if k2 := attestedAuditKey(t, start(t)); bytes.Equal(k2, k1) {
		t.Fatalf("two boots attest the same audit key %x", k1)
	}
}

// TestAuditKeyZeroedAtClose: closing the trail zeroes the private key's
// bytes where they were.
func TestAuditKeyZeroedAtClose(t *testing.T) {
	a, err := newAuditTrail()
	if err != nil {
		t.Fatal(err)
	}
	priv := a.priv
	if bytes.Equal(priv, make([]byte, len(priv))) {
		t.Fatal("a zero key")
	}
	a.close()
	if !bytes.Equal(priv, make([]byte, len(priv))) || a.priv != nil {
		t.Fatalf("after close: %x", priv)
	}
	a.close() // twice is harmless
}

package attestation

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
)

// vectorKeyList is testdata/keyset-vector.json, parsed.
func vectorKeyList(t *testing.T) *KeyList {
	t.Helper()
	raw, err := os.ReadFile("testdata/keyset-vector.json")
	if err != nil {
		t.Fatal(err)
	}
	kl, err := ParseKeyListJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	return kl
}

// simDocument is a verified simulated document whose user_data is
// userData; debug makes it a debug-mode one.
func simDocument(t *testing.T, debug bool, userData, nonce []byte) *Document {
	t.Helper()
	ca, err := nsmsim.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sim, err := nsmsim.New(nsmsim.Options{CA: ca, DebugMode: debug})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := nsm.Attest(sim, nsm.AttestRequest{UserData: userData, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Verify(raw, VerifyOptions{Roots: ca.Roots()})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestCheckKeySet(t *testing.T) {
	kl := vectorKeyList(t)
	digest, _ := KeySetDigest(kl.Keys)
	ud, _ := (&UserData{KeySet: digest, Pins: testPins, Caller: []byte("mine")}).Marshal()
	nonce := []byte("fresh-0001")
	doc := simDocument(t, false, ud, nonce)
	pcr0 := doc.PCRs[0]
	pin := map[int][]byte{0: pcr0}

	if err := doc.Check(Expect{PCRs: pin, Keys: kl, Nonce: nonce}); err != nil {
		t.Fatalf("the attested key list: %v", err)
	}
	got, err := doc.SignerdUserData()
	if err != nil || !got.Pins.Equal(testPins) || string(got.Caller) != "mine" {
		t.Fatalf("SignerdUserData = %+v, %v", got, err)
	}

	// One key changed, in each of its fields; one key more, one less.
	edits := map[string]func(k []PublicKey) []PublicKey{
		"spki":      func(k []PublicKey) []PublicKey { k[0].SPKI = bytes.Clone(k[0].SPKI); k[0].SPKI[20] ^= 1; return k },
		"algorithm": func(k []PublicKey) []PublicKey { k[1].Algorithm = "ecdsa-secp256k1"; return k },
		"id":        func(k []PublicKey) []PublicKey { k[2].ID = "payments-3"; return k },
		"removed":   func(k []PublicKey) []PublicKey { return k[1:] },
		"added": func(k []PublicKey) []PublicKey {
			return append(k, PublicKey{ID: "z", Algorithm: "ed25519", SPKI: k[0].SPKI})
		},
		"none": func(k []PublicKey) []PublicKey { return []PublicKey{} },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			other := &KeyList{Keys: edit(append([]PublicKey(nil), kl.Keys...))}
			err := doc.Check(Expect{PCRs: pin, Keys: other})
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "key set digest") {
				t.Fatalf("got %v, want a key set mismatch", err)
			}
			if !strings.Contains(err.Error(), "digest to") {
				t.Errorf("the error does not give the recomputed digest: %v", err)
			}
		})
	}
	// The list's own keyset_digest is never trusted: a list whose claim
	// matches the document but whose keys do not is refused, and so is a
	// list whose keys match but whose claim does not.
	changed := &KeyList{Keys: edits["id"](append([]PublicKey(nil), kl.Keys...)), ClaimedDigest: digest}
	if err := doc.Check(Expect{PCRs: pin, Keys: changed}); !errors.Is(err, ErrMismatch) {
		t.Errorf("changed keys under the right claimed digest: %v", err)
	}
	wrongClaim := &KeyList{Keys: kl.Keys, ClaimedDigest: bytes.Repeat([]byte{1}, 48)}
	if err := doc.Check(Expect{PCRs: pin, Keys: wrongClaim}); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "altered") {
		t.Errorf("right keys, wrong claimed digest: %v", err)
	}

	other := bytes.Repeat([]byte{0xee}, 48)
	for name, tt := range map[string]struct {
		e     Expect
		class error
		want  string
	}{
		"PCR0":         {Expect{PCRs: map[int][]byte{0: other}, Keys: kl}, ErrMismatch, "PCR0: is "},
		"PCR16 absent": {Expect{PCRs: map[int][]byte{0: pcr0, 16: other}}, ErrMismatch, "PCR16: absent"},
		"nonce":        {Expect{PCRs: pin, Keys: kl, Nonce: []byte("stale")}, ErrMismatch, "nonce: is " + "667265736" /* fresh- in hex */},
	} {
		if err := doc.Check(tt.e); !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want class %v containing %q", name, err, tt.class, tt.want)
		}
	}
	// Keys without a PCR0 pin is a mistake of the caller, not a verdict.
	var ae *Error
	if err := doc.Check(Expect{Keys: kl, PCRs: map[int][]byte{8: other}}); err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), "PCR0") {
		t.Errorf("keys without PCR0: %v", err)
	}
	if err := (Expect{Keys: kl}).Validate(); err == nil {
		t.Error("Validate accepts keys without PCR0")
	}
}

func TestCheckDebugMode(t *testing.T) {
	kl := vectorKeyList(t)
	digest, _ := KeySetDigest(kl.Keys)
	ud, _ := (&UserData{KeySet: digest}).Marshal()
	doc := simDocument(t, true, ud, nil)
	pin := map[int][]byte{0: make([]byte, 48)}
	if err := doc.Check(Expect{PCRs: pin, Keys: kl}); !errors.Is(err, ErrDebugMode) {
		t.Fatalf("a debug-mode document with a key set: %v, want ErrDebugMode", err)
	}
	if err := doc.Check(Expect{PCRs: pin, Keys: kl, AllowDebug: true}); err != nil {
		t.Fatalf("with AllowDebug: %v", err)
	}
	// Without a key set, debug mode is the PCR pin's business, as before.
	if err := doc.Check(Expect{PCRs: pin}); err != nil {
		t.Fatalf("debug document, PCR0 pinned to zero, no key set: %v", err)
	}
}

func TestCheckKeySetUserDataNotSignerds(t *testing.T) {
	kl := vectorKeyList(t)
	for name, ud := range map[string][]byte{"null": nil, "caller bytes": []byte("just mine")} {
		doc := simDocument(t, false, ud, nil)
		err := doc.Check(Expect{PCRs: map[int][]byte{0: doc.PCRs[0]}, Keys: kl})
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "user_data") {
			t.Errorf("%s user_data: %v, want a malformed user_data error", name, err)
		}
	}
}

// TestCheckAuditKey: the attested "audit" must be the expected SPKI, which
// needs a PCR0 and refuses debug mode like a key set does.
func TestCheckAuditKey(t *testing.T) {
	ud, _ := (&UserData{KeySet: testKeySet, Audit: testAuditSPKI}).Marshal()
	doc := simDocument(t, false, ud, nil)
	pin := map[int][]byte{0: doc.PCRs[0]}
	if err := doc.Check(Expect{PCRs: pin, AuditKey: testAuditSPKI}); err != nil {
		t.Fatalf("the attested audit key: %v", err)
	}
	other, _ := MarshalAuditKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32)).Public().(ed25519.PublicKey))
	if err := doc.Check(Expect{PCRs: pin, AuditKey: other}); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "audit key") {
		t.Fatalf("another audit key: %v", err)
	}
	if err := (Expect{AuditKey: other}).Validate(); err == nil || !strings.Contains(err.Error(), "audit key needs an expected PCR0") {
		t.Fatalf("audit key without PCR0: %v", err)
	}
	noAudit, _ := (&UserData{KeySet: testKeySet}).Marshal()
	if err := simDocument(t, false, noAudit, nil).Check(Expect{PCRs: pin, AuditKey: testAuditSPKI}); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "attests no audit key") {
		t.Fatalf("a document without an audit key: %v", err)
	}
	debug := simDocument(t, true, ud, nil)
	zero := map[int][]byte{0: make([]byte, 48)}
	if err := debug.Check(Expect{PCRs: zero, AuditKey: testAuditSPKI}); !errors.Is(err, ErrDebugMode) {
		t.Fatalf("debug mode with an audit key: %v", err)
	}
	if err := debug.Check(Expect{PCRs: zero, AuditKey: testAuditSPKI, AllowDebug: true}); err != nil {
		t.Fatalf("debug mode allowed: %v", err)
	}
}

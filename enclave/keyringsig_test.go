package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyringsig"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// signer is a keyring signer made for a test, and its pin.
type signer struct {
	keyringsig.Signer
	pin keyringsig.SignerKey
}

func newSigner(t testing.TB, alg string) signer {
	t.Helper()
	var k any
	switch alg {
	case "ed25519":
		_, k, _ = ed25519.GenerateKey(rand.Reader)
	default:
		k, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keyringsig.ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	pin, err := keyringsig.NewSignerKey(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return signer{Signer: s, pin: pin}
}

// keyringJSONv2 is a format 2 plaintext.
func keyringJSONv2(id string, version uint64, keys ...testKey) []byte {
	var v1 map[string]any
	if err := json.Unmarshal(keyringJSON(keys...), &v1); err != nil {
		panic(err)
	}
	v1["version"], v1["keyring_id"], v1["keyring_version"] = 2, id, version
	b, err := json.Marshal(v1)
	if err != nil {
		panic(err)
	}
	return b
}

// ring describes a signed keyring for signedRing; the zero values mean:
// the statement's id and version in the plaintext, a window of an hour
// either side of now, the env's recipient.
type ring struct {
	id         string
	version    uint64
	plaintext  []byte // default keyringJSONv2(id, version, keys…)
	keys       []testKey
	notBefore  time.Time
	notAfter   time.Time
	recipients []string
	signers    []signer
}

// signedRing encrypts a keyring to the env's identity and signs a
// statement about it with each signer.
func (e *env) signedRing(name string, r ring) wire.SealedKeyring {
	e.t.Helper()
	pt := r.plaintext
	if pt == nil {
		pt = keyringJSONv2(r.id, r.version, r.keys...)
	}
	data := sealKeyring(e.t, e.identity.Recipient(), pt)
	return wire.SealedKeyring{Name: name, Data: data, Signature: e.signFor(data, r)}
}

// signFor is the signature file of a statement about data.
func (e *env) signFor(data []byte, r ring) []byte {
	e.t.Helper()
	if r.notBefore.IsZero() {
		r.notBefore = time.Now().Add(-time.Hour)
	}
	if r.notAfter.IsZero() {
		r.notAfter = time.Now().Add(time.Hour)
	}
	if r.recipients == nil {
		r.recipients = []string{e.identity.Recipient().String()}
	}
	s, err := keyringsig.NewStatement(r.id, r.version, r.notBefore, r.notAfter, r.recipients, data)
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := keyringsig.NewSigned(s)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, sg := range r.signers {
		if _, err := keyringsig.Sign(e.t.Context(), sg, f); err != nil {
			e.t.Fatal(err)
		}
	}
	return f.Marshal()
}

func pinFlags(m int, signers ...signer) []string {
	var args []string
	for _, s := range signers {
		args = append(args, "--keyring-signer", s.pin.String())
	}
	if m > 0 {
		args = append(args, "--keyring-threshold", strconv.Itoa(m))
	}
	return args
}

// TestSignedKeyringRefusals: with two pinned signers and threshold 2,
// each bad keyring fails provisioning under its own step, and those
// refused for their signature, window or version before KMS was even
// asked for the identity (the fake KMS counts its calls): signerd never
// decrypts bytes no operator vouched for.
func TestSignedKeyringRefusals(t *testing.T) {
	a, b, stranger := newSigner(t, "ed25519"), newSigner(t, "ecdsa-p256"), newSigner(t, "ecdsa-p256")
	e := start(t, pinFlags(2, a, b)...)
	c := e.dial()
	k := newKey(t, "pay-1", keyring.ECDSASecp256k1)
	both := []signer{a, b}
	other, err := newIdentityPair()
	if err != nil {
		t.Fatal(err)
	}
	good := func() ring { return ring{id: "payments", version: 3, keys: []testKey{k}, signers: both} }
	with := func(mod func(*ring)) ring { r := good(); mod(&r); return r }

	// A keyring whose age file is corrupt, signed as it is: it passes the
	// checks and fails to decrypt (step keyring); unsigned, the signature
	// check refuses it first.
	corrupt := e.signedRing("corrupt.age", good())
	corrupt.Data = append(corrupt.Data[:len(corrupt.Data)-10:len(corrupt.Data)-10], make([]byte, 10)...)
	corrupt.Signature = e.signFor(corrupt.Data, good())
	unsignedCorrupt := corrupt
	unsignedCorrupt.Signature = nil

	dupSig := func() wire.SealedKeyring {
		kr := e.signedRing("k.age", with(func(r *ring) { r.signers = []signer{b} }))
		lines := strings.SplitAfter(string(kr.Signature), "\n")
		kr.Signature = []byte(strings.Join(append(lines[:3], lines[2]), "")) // b's line twice
		return kr
	}()
	wrongTag := func() wire.SealedKeyring {
		kr := e.signedRing("k.age", good())
		f, err := keyringsig.ParseSigned(kr.Signature)
		if err != nil {
			t.Fatal(err)
		}
		stmt := append([]byte("enclave-signer keyring statement v9\n"), f.StatementBytes()[len(keyringsig.Tag):]...)
		var lines []string
		for _, s := range both {
			sig, _ := s.Sign(t.Context(), stmt)
			lines = append(lines, "signature "+s.pin.String()+" "+base64.StdEncoding.EncodeToString(sig)+"\n")
		}
		kr.Signature = []byte(keyringsig.Header + "\nstatement " + base64.StdEncoding.EncodeToString(stmt) + "\n" + strings.Join(lines, ""))
		return kr
	}()
	otherFile := e.signedRing("k.age", good())
	otherFile.Signature = e.signFor(sealKeyring(t, e.identity.Recipient(), keyringJSONv2("payments", 3, k)), good())

	tests := []struct {
		name      string
		keyrings  []wire.SealedKeyring
		step      string
		contains  []string
		beforeKMS bool // refused before KMS decrypted the identity
	}{
		{"unsigned", []wire.SealedKeyring{e.keyringFor("k.age", k)}, "keyring_signature", []string{`keyring "k.age"`, "no signature"}, true},
		{"unsigned and corrupt: refused before decryption", []wire.SealedKeyring{unsignedCorrupt}, "keyring_signature", []string{"no signature"}, true},
		{"signed by unpinned keys", []wire.SealedKeyring{e.signedRing("k.age", with(func(r *ring) { r.signers = []signer{stranger} }))}, "keyring_signature",
			[]string{"0 valid signatures of distinct pinned keyring signers", "signed by " + stranger.pin.String() + ", not a pinned keyring signer"}, true},
		{"below threshold", []wire.SealedKeyring{e.signedRing("k.age", with(func(r *ring) { r.signers = []signer{a, stranger} }))}, "keyring_signature",
			[]string{"1 valid signature of distinct pinned keyring signers, want 2 of the pinned keyring signers " + a.pin.String() + ", " + b.pin.String()}, true},
		{"duplicate signer counted twice", []wire.SealedKeyring{dupSig}, "keyring_signature", []string{"1 valid signature of", "counts once"}, true},
		{"wrong domain tag", []wire.SealedKeyring{wrongTag}, "keyring_signature", []string{"tag"}, true},
		{"signature of another file", []wire.SealedKeyring{otherFile}, "keyring_signature", []string{"about another file"}, true},
		{"expired", []wire.SealedKeyring{e.signedRing("k.age", with(func(r *ring) {
			r.notBefore, r.notAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
		}))}, "keyring_expired", []string{"expired", "keyring payments version 3 was valid until"}, true},
		{"not yet valid", []wire.SealedKeyring{e.signedRing("k.age", with(func(r *ring) {
			r.notBefore, r.notAfter = time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour)
		}))}, "keyring_expired", []string{"not yet valid"}, true},
		{"one keyring id twice", []wire.SealedKeyring{e.signedRing("a.age", good()), e.signedRing("b.age", good())}, "keyring_version",
			[]string{`keyrings "a.age" and "b.age" are both keyring payments`}, true},
		{"signed for another identity", []wire.SealedKeyring{e.signedRing("k.age", with(func(r *ring) { r.recipients = []string{other.Recipient().String()} }))},
			"keyring_signature", []string{"signed for another identity", other.Recipient().String()}, false},
		{"plaintext names another id", []wire.SealedKeyring{e.signedRing("k.age", with(func(r *ring) { r.plaintext = keyringJSONv2("payroll", 3, k) }))},
			"keyring_signature", []string{"plaintext is keyring payroll version 3, but the signed statement says keyring payments version 3"}, false},
		{"plaintext names an older version", []wire.SealedKeyring{e.signedRing("k.age", with(func(r *ring) { r.plaintext = keyringJSONv2("payments", 2, k) }))},
			"keyring_signature", []string{"plaintext is keyring payments version 2"}, false},
		{"plaintext of format 1", []wire.SealedKeyring{e.signedRing("k.age", with(func(r *ring) { r.plaintext = keyringJSON(k) }))},
			"keyring_signature", []string{"version 1, and a signed keyring must be version 2"}, false},
		{"signed but corrupt: vouched for, then fails to decrypt", []wire.SealedKeyring{corrupt}, "keyring", []string{`keyring "corrupt.age"`, "decrypt"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.kms.callCount()
			st, err := call[*wire.Status](t.Context(), c, e.request(tt.keyrings...))
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			if st.State != wire.StateFailed || st.Error == nil || st.Error.Step != tt.step {
				t.Fatalf("status %+v, error %+v\nwant failed at step %s", st, st.Error, tt.step)
			}
			for _, s := range tt.contains {
				if !strings.Contains(st.Error.Message, s) {
					t.Errorf("error message:\n%s\nlacks %q", st.Error.Message, s)
				}
			}
			if calls := e.kms.callCount() - before; tt.beforeKMS && calls != 0 || !tt.beforeKMS && calls != 1 {
				t.Errorf("%d KMS calls, want %d (refused before KMS: %v)", calls, map[bool]int{true: 0, false: 1}[tt.beforeKMS], tt.beforeKMS)
			}
		})
	}
	if !strings.Contains(e.logs.String(), `"step":"keyring_signature"`) {
		t.Error("the refusals are not logged with their step")
	}

	// And the good one, signed by both: ready; signing works.
	st := e.provision(c, e.signedRing("k.age", good()))
	if st.State != wire.StateReady || st.Error != nil || st.Keys != 1 {
		t.Fatalf("a keyring signed by both pinned signers: %+v %+v", st, st.Error)
	}
	if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "pay-1", Data: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), `"msg":"keyring vouched for"`) {
		t.Error("no log line for the keyring vouched for")
	}
	// Status names the keyring pins (no KMS key is pinned here).
	if st.Pins == nil || !slices.Equal(st.Pins.KeyringSigners, []string{a.pin.String(), b.pin.String()}) || st.Pins.KeyringThreshold != 2 || st.Pinned || len(st.Pins.KMSKeys) != 0 {
		t.Errorf("status pins %+v (pinned %v), want the two keyring signers, threshold 2", st.Pins, st.Pinned)
	}
}

// TestKeyringRollback: signerd remembers the highest version of every
// keyring id it accepted, also one a later provisioning dropped; a lower
// version is refused naming both, the same version only with the same
// file; a refused provisioning leaves the loaded keys serving.
func TestKeyringRollback(t *testing.T) {
	a := newSigner(t, "ecdsa-p256")
	e := start(t, pinFlags(0, a)...)
	c := e.dial()
	k := newKey(t, "pay", keyring.Ed25519)
	o := newKey(t, "other", keyring.ECDSAP256)
	payments := func(v uint64) wire.SealedKeyring {
		return e.signedRing("payments.age", ring{id: "payments", version: v, keys: []testKey{k}, signers: []signer{a}})
	}
	v3 := payments(3)
	v2 := payments(2)
	v3b := payments(3) // the same version, another file (age encrypts afresh)
	steps := []struct {
		name     string
		keyrings []wire.SealedKeyring
		step     string // "" for ready without error
		contains string
	}{
		{"version 3", []wire.SealedKeyring{v3}, "", ""},
		{"version 2 after 3", []wire.SealedKeyring{v2}, "keyring_version", "keyring payments version 2 is lower than version 3, which this signerd has accepted"},
		{"version 3 again, the same file", []wire.SealedKeyring{v3}, "", ""},
		{"version 3 again, another file", []wire.SealedKeyring{v3b}, "keyring_version", "a changed keyring needs a new version"},
		{"version 4", []wire.SealedKeyring{payments(4)}, "", ""},
		{"payments dropped", []wire.SealedKeyring{e.signedRing("other.age", ring{id: "other", version: 1, keys: []testKey{o}, signers: []signer{a}})}, "", ""},
		{"version 3 after the drop", []wire.SealedKeyring{v3}, "keyring_version", "version 3 is lower than version 4"},
	}
	for _, s := range steps {
		st, err := call[*wire.Status](t.Context(), c, e.request(s.keyrings...))
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if st.State != wire.StateReady {
			t.Fatalf("%s: state %s, want ready (the loaded keys keep serving after a refusal)", s.name, st.State)
		}
		switch {
		case s.step == "" && st.Error != nil:
			t.Fatalf("%s: %+v", s.name, st.Error)
		case s.step != "" && (st.Error == nil || st.Error.Step != s.step || !strings.Contains(st.Error.Message, s.contains)):
			t.Fatalf("%s: error %+v\nwant step %s containing %q", s.name, st.Error, s.step, s.contains)
		}
	}
	// The last loaded set (other) still serves.
	kl, err := listKeys(t.Context(), c)
	if err != nil || len(kl) != 1 || kl[0].ID != "other" {
		t.Errorf("keys after the refused rollback: %+v, %v", kl, err)
	}
}

// TestKeyringWindowUsesNSMTime: the window is checked against the time in
// the attestation document signerd just obtained, not signerd's (the
// host's) clock. The simulated NSM runs two days ahead: a keyring valid
// now by the host's clock is expired by the NSM's.
func TestKeyringWindowUsesNSMTime(t *testing.T) {
	ahead := 48 * time.Hour
	testOnlySimNow = func() time.Time { return time.Now().Add(ahead) }
	t.Cleanup(func() { testOnlySimNow = nil })
	a := newSigner(t, "ed25519")
	e := start(t, pinFlags(0, a)...)
	c := e.dial()
	k := newKey(t, "k", keyring.Ed25519)
	st := e.provision(c, e.signedRing("k.age", ring{id: "k", version: 1, keys: []testKey{k}, signers: []signer{a}}))
	if st.Error == nil || st.Error.Step != "keyring_expired" {
		t.Fatalf("a keyring valid by the host's clock, expired by the NSM's: %+v", st.Error)
	}
	// Valid from a day ahead: not yet by the host's clock, already by
	// the NSM's; it passes the window (and fails later, at KMS, whose
	// clock does not accept the simulator's document from the future).
	st = e.provision(c, e.signedRing("k.age", ring{id: "k", version: 1, keys: []testKey{k}, signers: []signer{a},
		notBefore: time.Now().Add(24 * time.Hour), notAfter: time.Now().Add(72 * time.Hour)}))
	if st.Error == nil || st.Error.Step == "keyring_expired" || slices.Contains([]string{"keyring_signature", "keyring_version"}, st.Error.Step) {
		t.Fatalf("a keyring valid by the NSM's clock only: %+v", st.Error)
	}
}

// TestUnpinnedKeyrings: without keyring signers signerd loads keyrings as
// before (unsigned, format 1 or 2; a signature file is not looked at) and
// says so in its log.
func TestUnpinnedKeyrings(t *testing.T) {
	e := start(t)
	c := e.dial()
	k, k2 := newKey(t, "k", keyring.Ed25519), newKey(t, "k2", keyring.Ed25519)
	signed := e.signedRing("signed.age", ring{id: "x", version: 1, keys: []testKey{k2}, signers: []signer{newSigner(t, "ed25519")}})
	signed.Signature = []byte("garbage")
	st := e.provision(c, e.keyringFor("k.age", k), signed)
	if st.State != wire.StateReady || st.Error != nil || st.Keys != 2 {
		t.Fatalf("unpinned: %+v %+v", st, st.Error)
	}
	if st.Pins != nil {
		t.Errorf("unpinned status carries pins %+v", st.Pins)
	}
	logs := e.logs.String()
	for _, want := range []string{"no keyring signer is pinned (--keyring-signer)", "keyrings are not checked"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no warning %q in the log", want)
		}
	}
}

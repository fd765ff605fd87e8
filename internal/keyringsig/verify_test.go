package keyringsig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// testSigner is a fresh key and its pin.
type testSigner struct {
	Signer
	pin SignerKey
}

func newTestSigner(t testing.TB, alg Algorithm) testSigner {
	t.Helper()
	var s *fileSigner
	switch alg {
	case Ed25519:
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		s = &fileSigner{key: k}
	case ECDSAP256:
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		s = &fileSigner{key: k}
	}
	pin, err := NewSignerKey(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return testSigner{Signer: s, pin: pin}
}

// sigLine is one signature line over stmt.
func sigLine(t testing.TB, s testSigner, stmt []byte) string {
	t.Helper()
	sig, err := s.Sign(t.Context(), stmt)
	if err != nil {
		t.Fatal(err)
	}
	return "signature " + s.pin.String() + " " + base64.StdEncoding.EncodeToString(sig) + "\n"
}

// sigFile assembles a signature file by hand: any statement bytes, any
// signature lines.
func sigFile(stmt []byte, lines ...string) []byte {
	return []byte(Header + "\n" + "statement " + base64.StdEncoding.EncodeToString(stmt) + "\n" + strings.Join(lines, ""))
}

func TestVerifyRefusals(t *testing.T) {
	a, b, c := newTestSigner(t, Ed25519), newTestSigner(t, ECDSAP256), newTestSigner(t, Ed25519)
	stranger := newTestSigner(t, ECDSAP256)
	file := []byte("age-encryption.org/v1\n-> X25519 …\n--- …\nciphertext")
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	stmtFor := func(mod func(*Statement)) []byte {
		s, err := NewStatement("payments", 7, now.Add(-time.Hour), now.Add(time.Hour), vectorRecipients, file)
		if err != nil {
			t.Fatal(err)
		}
		if mod != nil {
			mod(s)
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := stmtFor(nil)
	wrongTag := append([]byte("enclave-signer keyring statement v2\n"), good[len(Tag):]...)
	otherTag := append([]byte("some other protocol's message v1\n..."), good[len(Tag):]...)
	flipped := sigLine(t, a, good)
	flipped = flipped[:len(flipped)-6] + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, flipped[len(flipped)-6:len(flipped)-5]) + flipped[len(flipped)-5:]

	one, _ := NewPolicy([]SignerKey{a.pin}, 0)
	twoOfThree, _ := NewPolicy([]SignerKey{a.pin, b.pin, c.pin}, 2)

	tests := []struct {
		name   string
		policy Policy
		sig    []byte
		file   []byte
		at     time.Time
		want   error  // nil: accepted
		msg    string // in the error
	}{
		{"accepted", one, sigFile(good, sigLine(t, a, good)), file, now, nil, ""},
		{"accepted 2 of 3, an unpinned extra ignored", twoOfThree, sigFile(good, sigLine(t, stranger, good), sigLine(t, c, good), sigLine(t, b, good)), file, now, nil, ""},
		{"window ends included", one, sigFile(good, sigLine(t, a, good)), file, now.Add(time.Hour), nil, ""},
		{"window starts included", one, sigFile(good, sigLine(t, a, good)), file, now.Add(-time.Hour), nil, ""},
		{"no signature file", one, nil, file, now, ErrSignature, "no signature"},
		{"statement only", one, sigFile(good), file, now, ErrSignature, "no signature"},
		{"wrong domain tag", one, sigFile(wrongTag, sigLine(t, a, wrongTag)), file, now, ErrSignature, "tag"},
		{"another protocol's message", one, sigFile(otherTag, sigLine(t, a, otherTag)), file, now, ErrSignature, "tag"},
		{"wrong hash", one, sigFile(good, sigLine(t, a, good)), append(bytes.Clone(file), '!'), now, ErrSignature, "about another file"},
		{"expired", one, sigFile(good, sigLine(t, a, good)), file, now.Add(time.Hour + time.Second), ErrExpired, "expired"},
		{"not yet valid", one, sigFile(good, sigLine(t, a, good)), file, now.Add(-time.Hour - time.Second), ErrExpired, "not yet valid"},
		{"unpinned signer", one, sigFile(good, sigLine(t, stranger, good)), file, now, ErrSignature, "signed by " + stranger.pin.String() + ", not a pinned"},
		{"below threshold", twoOfThree, sigFile(good, sigLine(t, b, good)), file, now, ErrSignature, "1 valid signature of distinct pinned keyring signers, want 2"},
		{"duplicate signer counted twice", twoOfThree, sigFile(good, sigLine(t, b, good), sigLine(t, b, good)), file, now, ErrSignature, "counts once"},
		{"signature over another statement", one, sigFile(good, sigLine(t, a, stmtFor(func(s *Statement) { s.Version = 8 }))), file, now, ErrSignature, "does not verify"},
		{"altered signature", one, sigFile(good, flipped), file, now, ErrSignature, "does not verify"},
		{"altered statement", one, sigFile(stmtFor(func(s *Statement) { s.Version = 8 }), sigLine(t, a, good)), file, now, ErrSignature, "does not verify"},
		{"malformed file", one, []byte("not a signature file\n"), file, now, ErrSignature, "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tt.policy.Verify(tt.file, tt.sig, tt.at)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if len(v.Signers) < tt.policy.M() || v.Statement.KeyringID != "payments" {
					t.Errorf("verified %+v", v)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error:\n%v\nwant errors.Is %v", err, tt.want)
			}
			if v != nil {
				t.Errorf("a refusal returned a statement")
			}
			for _, other := range []error{ErrSignature, ErrExpired, ErrVersion} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("error is also %v", other)
				}
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error:\n%v\nwant it to contain %q", err, tt.msg)
			}
		})
	}
}

func TestCheckRecipientsAndContent(t *testing.T) {
	s := vectorStatement(t)
	if err := CheckRecipients(s, []string{"age1zzz", vectorRecipients[1]}); err != nil {
		t.Errorf("a listed recipient: %v", err)
	}
	err := CheckRecipients(s, []string{"age1qqqqqqqq"})
	if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "signed for another identity") {
		t.Errorf("wrong recipient: %v", err)
	}
	if err := CheckContent(s, "payments", 3); err != nil {
		t.Errorf("matching content: %v", err)
	}
	for _, tc := range []struct {
		id  string
		ver uint64
	}{{"payments", 2}, {"payroll", 3}, {"", 3}} {
		err := CheckContent(s, tc.id, tc.ver)
		if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "signed statement says keyring payments version 3") {
			t.Errorf("content %q %d: %v", tc.id, tc.ver, err)
		}
	}
}

func TestVersions(t *testing.T) {
	var v Versions
	st := func(id string, ver uint64, content string) *Statement {
		s, err := NewStatement(id, ver, vectorNotBefore, vectorNotAfter, vectorRecipients, []byte(content))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	steps := []struct {
		s      *Statement
		want   error
		msg    string
		accept bool
	}{
		{st("payments", 3, "v3"), nil, "", true},
		{st("payroll", 1, "p1"), nil, "", true},
		{st("payments", 3, "v3"), nil, "", true},                                          // the same again
		{st("payments", 2, "v2"), ErrVersion, "version 2 is lower than version 3", false}, // lower
		{st("payments", 3, "v3 changed"), ErrVersion, "a changed keyring needs a new version", false},
		{st("payments", 4, "v4"), nil, "", true},
		{st("payments", 3, "v3"), ErrVersion, "version 3 is lower than version 4", false}, // what was fine is now a rollback
		{st("payroll", 0, "p0"), ErrVersion, "lower than version 1", false},               // an id dropped meanwhile is remembered
	}
	for i, s := range steps {
		err := v.Check(s.s)
		if s.want == nil && err != nil || s.want != nil && (!errors.Is(err, s.want) || !strings.Contains(err.Error(), s.msg)) {
			t.Fatalf("step %d (%s %d): Check = %v, want %v containing %q", i, s.s.KeyringID, s.s.Version, err, s.want, s.msg)
		}
		if s.accept {
			v.Accept(s.s)
		}
	}
	if a, _ := v.Get("payments"); a.Version != 4 || v.Len() != 2 {
		t.Errorf("remembered %+v, %d ids", a, v.Len())
	}
	v.Accept(st("payments", 1, "v1")) // lower: no effect
	if a, _ := v.Get("payments"); a.Version != 4 {
		t.Errorf("Accept of a lower version lowered the memory to %d", a.Version)
	}
}

func TestPolicyValidate(t *testing.T) {
	a, b := newTestSigner(t, Ed25519), newTestSigner(t, ECDSAP256)
	for _, tc := range []struct {
		signers []SignerKey
		m       int
		msg     string
	}{
		{[]SignerKey{a.pin, a.pin}, 0, "pinned twice"},
		{[]SignerKey{a.pin, b.pin}, 3, "want 1 to 2"},
		{[]SignerKey{a.pin}, -1, "want 1 to 1"},
		{nil, 1, "without any keyring signer"},
		{[]SignerKey{{}}, 0, "no key"},
	} {
		if _, err := NewPolicy(tc.signers, tc.m); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("NewPolicy(%d signers, %d) = %v, want %q", len(tc.signers), tc.m, err, tc.msg)
		}
	}
	for _, tc := range []struct {
		signers []SignerKey
		m       int
	}{{nil, 0}, {[]SignerKey{a.pin}, 0}, {[]SignerKey{a.pin, b.pin}, 2}} {
		if _, err := NewPolicy(tc.signers, tc.m); err != nil {
			t.Errorf("NewPolicy(%d signers, %d): %v", len(tc.signers), tc.m, err)
		}
	}
	if _, err := (Policy{}).Verify(nil, nil, time.Now()); err == nil {
		t.Error("an empty policy verified something")
	}
}

func TestSignedAdd(t *testing.T) {
	a, b := newTestSigner(t, Ed25519), newTestSigner(t, ECDSAP256)
	f, err := NewSigned(vectorStatement(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(t.Context(), a, f); err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(t.Context(), a, f); err == nil || !strings.Contains(err.Error(), "already carries a signature of") {
		t.Errorf("second signature of the same signer: %v", err)
	}
	sig, _ := b.Sign(t.Context(), []byte("something else"))
	if err := f.Add(Signature{Signer: b.pin, Sig: sig}); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("a signature over something else: %v", err)
	}
	// A signer that lies about its key.
	if _, err := Sign(t.Context(), liarSigner{b.Signer, newTestSigner(t, ECDSAP256).Public()}, f); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("a signer whose signatures do not verify with its claimed key: %v", err)
	}
	if len(f.Signatures) != 1 {
		t.Errorf("%d signatures, want 1", len(f.Signatures))
	}
	back, err := ParseSigned(f.Marshal())
	if err != nil || !bytes.Equal(back.Marshal(), f.Marshal()) {
		t.Errorf("round trip: %v", err)
	}
}

type liarSigner struct {
	Signer
	pub crypto.PublicKey
}

func (l liarSigner) Public() crypto.PublicKey { return l.pub }

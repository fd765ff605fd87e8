package attestation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// forged builds documents with chosen defects, signed under a throwaway
// root, to test that the verifier rejects each class of bad document
// (CVE-2025-64186 and its kin) for the right reason.
type forged struct {
	t        testing.TB
	now      time.Time
	rootKey  *ecdsa.PrivateKey
	root     *x509.Certificate
	interKey crypto.Signer
	inter    *x509.Certificate
}

func newForged(t testing.TB, interIsCA bool) *forged {
	t.Helper()
	f := &forged{t: t, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	f.rootKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	f.root = f.cert(&x509.Certificate{IsCA: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil, &f.rootKey.PublicKey)
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	f.interKey = k
	f.inter = f.cert(&x509.Certificate{IsCA: interIsCA, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, f.root, f.rootKey, &k.PublicKey)
	return f
}

func (f *forged) cert(tmpl *x509.Certificate, parent *x509.Certificate, parentKey crypto.Signer, pub any) *x509.Certificate {
	f.t.Helper()
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.Subject = pkix.Name{CommonName: "forged"}
	tmpl.NotBefore = f.now.Add(-time.Hour)
	tmpl.NotAfter = f.now.Add(time.Hour)
	tmpl.BasicConstraintsValid = true
	if parent == nil {
		parent, parentKey = tmpl, f.rootKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// doc signs a payload with leafKey under a leaf issued by the intermediate;
// edit may change the payload fields before encoding.
func (f *forged) doc(leafKey crypto.Signer, edit func(m map[string]any)) []byte {
	f.t.Helper()
	leaf := f.cert(&x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature}, f.inter, f.interKey, leafKey.Public())
	pcrs := map[int][]byte{}
	for i := range 16 {
		pcrs[i] = make([]byte, 48)
	}
	m := map[string]any{
		"module_id": "i-0123456789abcdef0-enc0123456789abcdef", "digest": "SHA384",
		"timestamp": uint64(f.now.UnixMilli()), "pcrs": pcrs,
		"certificate": leaf.Raw, "cabundle": [][]byte{f.root.Raw, f.inter.Raw},
		"public_key": nil, "user_data": nil, "nonce": nil,
	}
	if edit != nil {
		edit(m)
	}
	payload, err := cbor.Marshal(m)
	if err != nil {
		f.t.Fatal(err)
	}
	protected := []byte{0xa1, 0x01, 0x38, 0x22}
	digest := sha512.Sum384(sigStructure(protected, payload))
	var sig []byte
	if k, ok := leafKey.(*ecdsa.PrivateKey); ok && k.Curve == elliptic.P384() {
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			f.t.Fatal(err)
		}
		sig = make([]byte, 96)
		r.FillBytes(sig[:48])
		s.FillBytes(sig[48:])
	} else {
		sig = make([]byte, 96) // the key cannot make an ES384 signature
	}
	out, err := cbor.Marshal([]any{protected, map[int]any{}, payload, sig})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *forged) opts() VerifyOptions {
	p := x509.NewCertPool()
	p.AddCert(f.root)
	return VerifyOptions{Roots: p, CurrentTime: f.now}
}

func TestForgedDocuments(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	good := newForged(t, true)
	if _, err := Verify(good.doc(p384, nil), good.opts()); err != nil {
		t.Fatalf("well-formed forged document under its own root: %v", err)
	}

	tests := []struct {
		name  string
		f     *forged
		key   crypto.Signer
		edit  func(m map[string]any)
		class error
	}{
		{"no pcrs field", good, p384, func(m map[string]any) { delete(m, "pcrs") }, ErrMalformed},
		{"empty pcrs map", good, p384, func(m map[string]any) { m["pcrs"] = map[int][]byte{} }, ErrMalformed},
		{"pcr of 32 bytes", good, p384, func(m map[string]any) { m["pcrs"] = map[int][]byte{0: make([]byte, 32)} }, ErrMalformed},
		{"pcr index 32", good, p384, func(m map[string]any) { m["pcrs"] = map[int][]byte{32: make([]byte, 48)} }, ErrMalformed},
		{"empty cabundle", good, p384, func(m map[string]any) { m["cabundle"] = [][]byte{} }, ErrMalformed},
		{"cabundle without the intermediate", good, p384, func(m map[string]any) { m["cabundle"] = [][]byte{good.root.Raw} }, ErrUntrustedRoot},
		{"intermediate is not a CA", newForged(t, false), p384, nil, ErrInvalidChain},
		{"leaf key is P-256", good, p256, nil, ErrInvalidChain},
		{"digest SHA256", good, p384, func(m map[string]any) { m["digest"] = "SHA256" }, ErrMalformed},
		{"timestamp as text", good, p384, func(m map[string]any) { m["timestamp"] = "1" }, ErrMalformed},
		{"negative timestamp", good, p384, func(m map[string]any) { m["timestamp"] = -1 }, ErrMalformed},
		{"module_id empty", good, p384, func(m map[string]any) { m["module_id"] = "" }, ErrMalformed},
		{"no certificate", good, p384, func(m map[string]any) { delete(m, "certificate") }, ErrMalformed},
		{"user_data too long", good, p384, func(m map[string]any) { m["user_data"] = make([]byte, 1025) }, ErrMalformed},
		{"nonce as text", good, p384, func(m map[string]any) { m["nonce"] = "abc" }, ErrMalformed},
		{"certificate not DER", good, p384, func(m map[string]any) { m["certificate"] = []byte{1, 2, 3} }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.f.doc(tt.key, tt.edit), tt.f.opts())
			if !errors.Is(err, tt.class) {
				t.Fatalf("got %v\nwant class %v", err, tt.class)
			}
		})
	}
}

// TestForgedDocumentsPCRsAndKeys: a correctly signed document must carry
// PCRs 0–15, which the NSM locks at boot and lists in every document, and
// no payload key beyond the nine the NSM writes. Without the first rule a
// document showing only PCR5 verified, and a policy condition written with
// an …IfExists operator let it decrypt.
func TestForgedDocumentsPCRsAndKeys(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	f := newForged(t, true)
	delPCR := func(i int) func(m map[string]any) {
		return func(m map[string]any) { delete(m["pcrs"].(map[int][]byte), i) }
	}
	tests := []struct {
		name string
		edit func(m map[string]any)
		msg  string // in the error
	}{
		{"only PCR5", func(m map[string]any) { m["pcrs"] = map[int][]byte{5: make([]byte, 48)} }, "pcrs: PCR0 is missing"},
		{"no PCR0", delPCR(0), "pcrs: PCR0 is missing"},
		{"no PCR3", delPCR(3), "pcrs: PCR3 is missing"},
		{"no PCR15", delPCR(15), "pcrs: PCR15 is missing"},
		{"extra payload key", func(m map[string]any) { m["pcr_policy"] = "lax" }, `payload: unknown key "pcr_policy"`},
		{"payload key in another case", func(m map[string]any) { m["Nonce"] = []byte{1}; delete(m, "nonce") }, `payload: unknown key "Nonce"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Verify(f.doc(p384, tt.edit), f.opts())
			if d != nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v\nwant class %v with %q", err, ErrMalformed, tt.msg)
			}
		})
	}

	// An application may extend and lock PCRs 16–31; the NSM then lists
	// them beside 0–15.
	withAppPCRs := f.doc(p384, func(m map[string]any) {
		for i := 16; i < 32; i++ {
			m["pcrs"].(map[int][]byte)[i] = make([]byte, 48)
		}
	})
	if d, err := Verify(withAppPCRs, f.opts()); err != nil || len(d.PCRs) != 32 {
		t.Fatalf("document with application PCRs 16–31: %v", err)
	}
}

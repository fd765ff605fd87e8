package attestation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
)

// FuzzParse: Parse never panics, returns nil with every error, and every
// error falls in the malformed class; whatever parses carries PCRs 0–15
// and can be verified without panicking.
func FuzzParse(f *testing.F) {
	for _, rd := range realDocs {
		f.Add(readB64(f, rd.file))
	}
	ca, err := nsmsim.NewCA(time.Now())
	if err != nil {
		f.Fatal(err)
	}
	for _, debug := range []bool{false, true} {
		s, err := nsmsim.New(nsmsim.Options{CA: ca, DebugMode: debug})
		if err != nil {
			f.Fatal(err)
		}
		doc, err := nsm.Attest(s, nsm.AttestRequest{PublicKey: []byte("pk"), UserData: []byte{}, Nonce: make([]byte, 1024)})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(doc)
	}
	// Signed documents the parser must refuse: PCRs missing, an unknown
	// payload key; and one it must accept, with application PCRs 16–31.
	forger := newForged(f, true)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, edit := range []func(m map[string]any){
		func(m map[string]any) { m["pcrs"] = map[int][]byte{5: make([]byte, 48)} },
		func(m map[string]any) { delete(m["pcrs"].(map[int][]byte), 3) },
		func(m map[string]any) { m["extra"] = []byte{1} },
		func(m map[string]any) {
			for i := 16; i < 32; i++ {
				m["pcrs"].(map[int][]byte)[i] = make([]byte, 48)
			}
		},
	} {
		f.Add(forger.doc(leafKey, edit))
	}
	f.Add([]byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0})
	f.Add([]byte{0xd2, 0x84})
	roots := ca.Roots()
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			if d != nil {
				t.Fatal("Parse returned a document with an error")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error outside the malformed class: %v", err)
			}
			return
		}
		if d.PCRs == nil || len(d.CABundle) == 0 || d.Certificate == nil {
			t.Fatal("Parse accepted a document without PCRs, cabundle or certificate")
		}
		for i := range LockedPCRs {
			if len(d.PCRs[i]) != 48 {
				t.Fatalf("Parse accepted a document without PCR%d", i)
			}
		}
		_ = d.Verify(VerifyOptions{Roots: roots})
		_ = d.Verify(VerifyOptions{CurrentTime: d.Timestamp})
	})
}

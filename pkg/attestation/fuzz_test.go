package attestation

import (
	"errors"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/pkg/attestation/nsmsim"
)

// FuzzParse: Parse never panics, returns nil with every error, and every
// error falls in the malformed class; whatever parses can be verified
// without panicking.
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
		doc, err := Attest(s, AttestRequest{PublicKey: []byte("pk"), UserData: []byte{}, Nonce: make([]byte, 1024)})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(doc)
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
		_ = d.Verify(VerifyOptions{Roots: roots})
		_ = d.Verify(VerifyOptions{CurrentTime: d.Timestamp})
	})
}

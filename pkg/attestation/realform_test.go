package attestation

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

// realForm is what a real document's bytes show beyond the values
// TestRealDocuments checks: which optional fields the NSM wrote as CBOR
// null.
var realForm = map[string]struct{ nullFields []string }{
	"att-tkhq-qos-mock_attestation_doc.b64":        {nullFields: []string{"nonce"}},
	"att-evervault-valid-attestation-doc.b64":      {nullFields: []string{"public_key"}},
	"att-evervault-beta-valid-attestation-doc.b64": {nullFields: []string{"public_key", "user_data"}},
}

// TestRealDocumentsForm reads the real documents with a plain CBOR reader,
// not with Parse, and checks the facts docs/nitro-facts.md marks as
// verified: the untagged COSE_Sign1 with the ES384 header, the payload's
// nine keys in the hardware's order with absent fields as null, PCRs 0–15
// of 48 bytes, the four-certificate cabundle root first with path lengths
// 2, 1, 0, a leaf that lives 3 h + 3 s, and PCR4 = SHA-384(48 zero bytes ‖
// the instance id in module_id).
func TestRealDocumentsForm(t *testing.T) {
	for _, rd := range realDocs {
		t.Run(rd.file, func(t *testing.T) {
			form, ok := realForm[rd.file]
			if !ok {
				t.Fatalf("no expected form for %s", rd.file)
			}
			raw := readB64(t, rd.file)
			if !bytes.HasPrefix(raw, []byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59}) {
				t.Fatalf("prefix % x, want 84 44 a1 01 38 22 a0 59 (untagged COSE_Sign1, protected {1: -35}, empty unprotected map, payload bstr)", raw[:8])
			}
			var cose []cbor.RawMessage
			if err := cbor.Unmarshal(raw, &cose); err != nil || len(cose) != 4 {
				t.Fatalf("COSE_Sign1: %v, %d items", err, len(cose))
			}
			var payload, sig []byte
			if err := cbor.Unmarshal(cose[2], &payload); err != nil {
				t.Fatal(err)
			}
			if err := cbor.Unmarshal(cose[3], &sig); err != nil || len(sig) != 96 {
				t.Fatalf("signature: %v, %d bytes, want 96 (r‖s of P-384)", err, len(sig))
			}
			if payload[0] != 0xa9 {
				t.Fatalf("payload starts %#x, want a definite map of 9 (0xa9)", payload[0])
			}
			rest := payload[1:]
			var keys []string
			values := map[string]cbor.RawMessage{}
			for range 9 {
				var k string
				var v cbor.RawMessage
				var err error
				if rest, err = cbor.UnmarshalFirst(rest, &k); err != nil {
					t.Fatal(err)
				}
				if rest, err = cbor.UnmarshalFirst(rest, &v); err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
				values[k] = v
			}
			want := "module_id digest timestamp pcrs certificate cabundle public_key user_data nonce"
			if got := strings.Join(keys, " "); got != want || len(rest) != 0 {
				t.Fatalf("payload keys %q (%d bytes after them)\nwant %q", got, len(rest), want)
			}
			for _, k := range []string{"public_key", "user_data", "nonce"} {
				isNull := bytes.Equal(values[k], []byte{0xf6})
				if wantNull := strings.Contains(strings.Join(form.nullFields, " "), k); isNull != wantNull {
					t.Errorf("%s: CBOR null %v, want %v", k, isNull, wantNull)
				}
			}
			if values["timestamp"][0] != 0x1b {
				t.Errorf("timestamp encoded with %#x, want 0x1b (8-byte uint)", values["timestamp"][0])
			}
			p := values["pcrs"]
			if p[0] != 0xb0 {
				t.Fatalf("pcrs starts %#x, want a map of 16 (0xb0)", p[0])
			}
			r := p[1:]
			for i := range 16 {
				var idx uint64
				var val []byte
				var err error
				if r, err = cbor.UnmarshalFirst(r, &idx); err != nil {
					t.Fatal(err)
				}
				if r, err = cbor.UnmarshalFirst(r, &val); err != nil {
					t.Fatal(err)
				}
				if idx != uint64(i) || len(val) != 48 {
					t.Fatalf("pcrs entry %d: index %d, %d bytes; want index %d, 48 bytes", i, idx, len(val), i)
				}
			}

			var leafDER []byte
			var bundle [][]byte
			if err := cbor.Unmarshal(values["certificate"], &leafDER); err != nil {
				t.Fatal(err)
			}
			if err := cbor.Unmarshal(values["cabundle"], &bundle); err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(leafDER)
			if err != nil {
				t.Fatal(err)
			}
			if life := leaf.NotAfter.Sub(leaf.NotBefore); life != 3*time.Hour+3*time.Second || leaf.IsCA {
				t.Errorf("leaf lives %v (CA %v), want 3h3s, not a CA", life, leaf.IsCA)
			}
			if len(bundle) != 4 {
				t.Fatalf("cabundle has %d certificates, want 4", len(bundle))
			}
			for i, wantPathLen := range []int{-1, 2, 1, 0} {
				c, err := x509.ParseCertificate(bundle[i])
				if err != nil {
					t.Fatalf("cabundle[%d]: %v", i, err)
				}
				if !c.IsCA || c.MaxPathLen != wantPathLen || len(bundle[i]) > MaxCertSize {
					t.Errorf("cabundle[%d]: CA %v, path length %d, %d bytes; want a CA, path length %d, at most %d bytes", i, c.IsCA, c.MaxPathLen, len(bundle[i]), wantPathLen, MaxCertSize)
				}
				if i > 0 {
					if err := c.CheckSignatureFrom(mustCert(t, bundle[i-1])); err != nil {
						t.Errorf("cabundle[%d] is not issued by cabundle[%d]: the bundle is not root first: %v", i, i-1, err)
					}
				}
			}

			instance, _, ok := strings.Cut(rd.moduleID, "-enc")
			if !ok {
				t.Fatalf("module_id %q has no -enc part", rd.moduleID)
			}
			if got := hex.EncodeToString(pcr.InstanceID(instance)); got != rd.pcr4 {
				t.Errorf("SHA-384(48 zero bytes ‖ %q) = %s\nwant PCR4 %s", instance, got, rd.pcr4)
			}
		})
	}
}

func mustCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

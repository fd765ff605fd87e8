package attestation

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// realDoc is a real document and the values its README publishes.
type realDoc struct {
	file      string
	moduleID  string
	timestamp int64
	pcr0      string
	pcr3      string
	pcr4      string
	pcr8      string
	debug     bool
}

const zeroPCR = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"

var realDocs = []realDoc{
	{
		file: "att-tkhq-qos-mock_attestation_doc.b64", moduleID: "i-07e25f3bada361dec-enc0181d3dff86da785", timestamp: 1657117102484,
		pcr0: "f8bb0133c427bc49aa39f6811a01077ce9ab7e635fa1f5439c9c8bf99754f8230e41b09426b0e595eebdc4d6ed4bc3b6",
		pcr3: zeroPCR,
		pcr4: "7021a47677bff47b7623ed573cb71326925d51773cb4f5af33f346d9ffceb3d6e2c4aa85f1e2b352e4b295ff22d16485",
		pcr8: zeroPCR,
	},
	{
		file: "att-evervault-valid-attestation-doc.b64", moduleID: "i-0918f6c55e3b61d89-enc018aa8b8e2285d13", timestamp: 1695049410860,
		pcr0:  zeroPCR,
		pcr3:  "4a9329d69c836267b18abbf9f4a38889124490453419e426818626348d21f989dc930b1562682a9082887454e53425aa",
		pcr4:  "d0531b1400dd43288c82c226c16bf647c637dd5e4d9b4f7a8aaadc6d6760b854a06c7008cca0d15ca80094dd33a65065",
		pcr8:  zeroPCR,
		debug: true,
	},
	{
		file: "att-evervault-beta-valid-attestation-doc.b64", moduleID: "i-020b6af9246d90e92-enc0183d09086c24190", timestamp: 1665651482136,
		pcr0: "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b",
		pcr3: "4a9329d69c836267b18abbf9f4a38889124490453419e426818626348d21f989dc930b1562682a9082887454e53425aa",
		pcr4: "1f442c86d494a88185642086d904ed89f62fb66ee9997d7b1a4f040faab3bba4244c768a584e5778195b3afc715637c6",
		pcr8: "8790eb3cce6c83d07e84b126dc61ca923333d6f66615c4a79157de48c5ab2418bdc60746ea7b7afbff03a1c6210201cb",
	},
}

func readB64(t testing.TB, name string) []byte {
	t.Helper()
	s, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(s)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func atOwnTime(d *Document) VerifyOptions { return VerifyOptions{CurrentTime: d.Timestamp} }

func TestRealDocuments(t *testing.T) {
	for _, rd := range realDocs {
		t.Run(rd.file, func(t *testing.T) {
			raw := readB64(t, rd.file)
			if raw[0] != 0x84 {
				t.Fatalf("first byte %#x, want an untagged COSE_Sign1 (0x84)", raw[0])
			}
			d, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Verify(atOwnTime(d)); err != nil {
				t.Fatalf("Verify at own timestamp: %v", err)
			}
			if d.ModuleID != rd.moduleID || d.TimestampMillis() != rd.timestamp || d.Digest != "SHA384" {
				t.Errorf("got module_id %q timestamp %d digest %q\nwant %q %d SHA384", d.ModuleID, d.TimestampMillis(), d.Digest, rd.moduleID, rd.timestamp)
			}
			for i, want := range map[int]string{0: rd.pcr0, 3: rd.pcr3, 4: rd.pcr4, 8: rd.pcr8} {
				if got := d.PCRHex(i); got != want {
					t.Errorf("PCR%d:\n got %s\nwant %s", i, got, want)
				}
			}
			if len(d.PCRs) != 16 {
				t.Errorf("%d PCRs, want 16", len(d.PCRs))
			}
			if d.DebugMode() != rd.debug {
				t.Errorf("DebugMode() = %v, want %v", d.DebugMode(), rd.debug)
			}
			if len(d.CABundle) != 4 {
				t.Errorf("cabundle has %d certificates, want 4", len(d.CABundle))
			}
			if root, _ := x509.ParseCertificate(d.CABundle[0]); root == nil || sha256.Sum256(root.Raw) != awsRootFingerprint(t) {
				t.Errorf("cabundle[0] is not the AWS root")
			}
		})
	}
}

func awsRootFingerprint(t *testing.T) [32]byte {
	var fp [32]byte
	b, _ := hex.DecodeString("641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b")
	copy(fp[:], b)
	return fp
}

func TestEmbeddedRootFingerprint(t *testing.T) {
	block, _ := pem.Decode(AWSRootPEM())
	if block == nil || sha256.Sum256(block.Bytes) != awsRootFingerprint(t) {
		t.Fatal("embedded AWS root: DER fingerprint is not 641a0321…")
	}
}

// TestTamper checks each failure class on every real document.
func TestTamper(t *testing.T) {
	for _, rd := range realDocs {
		t.Run(rd.file, func(t *testing.T) {
			raw := readB64(t, rd.file)
			d, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			opts := atOwnTime(d)

			// Every byte of the signature.
			sigStart := len(raw) - 96
			for i := sigStart; i < len(raw); i++ {
				b := bytes.Clone(raw)
				b[i] ^= 0x01
				if _, err := Verify(b, opts); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("signature byte %d flipped: got %v, want ErrBadSignature", i-sigStart, err)
				}
			}
			// Bytes across the payload: each flip must fail, whatever the class.
			payloadStart := bytes.Index(raw, d.payload)
			for i := payloadStart; i < payloadStart+len(d.payload); i += 61 {
				b := bytes.Clone(raw)
				b[i] ^= 0x40
				if _, err := Verify(b, opts); err == nil {
					t.Fatalf("payload byte %d flipped: document still verifies", i-payloadStart)
				}
			}
			// A flip in PCR0's value, inside the signed payload, keeps the
			// CBOR well formed: only the signature can catch it.
			pcr0 := d.PCRs[0]
			at := bytes.Index(raw, pcr0)
			b := bytes.Clone(raw)
			b[at+5] ^= 0xff
			if _, err := Verify(b, opts); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("PCR0 value changed: got %v, want ErrBadSignature", err)
			}

			// Another root.
			if _, err := Verify(raw, VerifyOptions{CurrentTime: d.Timestamp, Roots: otherRoot(t)}); !errors.Is(err, ErrUntrustedRoot) {
				t.Fatalf("other root: got %v, want ErrUntrustedRoot", err)
			}
			// A time past the leaf's 3-hour validity, and one before it.
			for _, at := range []time.Time{d.Timestamp.Add(3*time.Hour + time.Minute), d.Timestamp.Add(-24 * time.Hour)} {
				if _, err := Verify(raw, VerifyOptions{CurrentTime: at}); !errors.Is(err, ErrCertificateExpired) {
					t.Fatalf("verified at %v: got %v, want ErrCertificateExpired", at, err)
				}
			}
			// Too old for a verifier with a maximum age.
			if _, err := Verify(raw, VerifyOptions{CurrentTime: d.Timestamp.Add(10 * time.Minute), MaxAge: 5 * time.Minute}); !errors.Is(err, ErrTooOld) {
				t.Fatalf("stale document: got %v, want ErrTooOld", err)
			}
			// Truncation at every length: an error, never a panic.
			for n := 0; n < len(raw); n += 7 {
				if _, err := Parse(raw[:n]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("truncated to %d bytes: got %v, want ErrMalformed", n, err)
				}
			}
			// Trailing bytes.
			if _, err := Parse(append(bytes.Clone(raw), 0)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("trailing byte: got %v, want ErrMalformed", err)
			}
			// Tagged COSE_Sign1 (tag 18) is accepted.
			if _, err := Verify(append([]byte{0xd2}, raw...), opts); err != nil {
				t.Fatalf("tagged form: %v", err)
			}
		})
	}
}

func otherRoot(t *testing.T) *x509.CertPool {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "aws.nitro-enclaves"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

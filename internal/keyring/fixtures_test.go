package keyring_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
)

// Test keys are built in-process from fixed scalars, so tests and fuzz seeds
// are reproducible; the openssl tests generate their own.

var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidP256        = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384        = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

// scalar derives a fixed 32-byte test scalar (valid for both curves with
// overwhelming probability, and checked by the tests that load it).
func scalar(label string) []byte {
	s := sha256.Sum256([]byte(label))
	return s[:]
}

type fixture struct {
	id     string
	alg    keyring.Algorithm
	pem    string
	scalar []byte // ed25519 seed or ECDSA scalar
}

func pemString(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func ed25519Fixture(id string) fixture {
	seed := scalar(id)
	der := must(x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed)))
	return fixture{id: id, alg: keyring.Ed25519, pem: pemString("PRIVATE KEY", der), scalar: seed}
}

func p256Key(d []byte) *ecdsa.PrivateKey {
	return must(ecdsa.ParseRawPrivateKey(elliptic.P256(), d))
}

// p256Fixture: form is "sec1", "sec1+params" or "pkcs8".
func p256Fixture(id, form string) fixture {
	d := scalar(id)
	k := p256Key(d)
	var p string
	switch form {
	case "pkcs8":
		p = pemString("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(k)))
	case "sec1":
		p = pemString("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(k)))
	case "sec1+params":
		p = pemString("EC PARAMETERS", must(asn1.Marshal(oidP256))) + pemString("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(k)))
	default:
		panic(form)
	}
	return fixture{id: id, alg: keyring.ECDSAP256, pem: p, scalar: d}
}

type ecPrivateKey struct {
	Version       int
	PrivateKey    []byte
	NamedCurveOID asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey     asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

type pkcs8 struct {
	Version    int
	Algo       algorithmIdentifier
	PrivateKey []byte
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

// secp256k1SEC1 builds an ECPrivateKey for secp256k1 the way openssl
// writes one; curveInside puts the named curve in [0].
func secp256k1SEC1(d []byte, curveInside bool) []byte {
	pub := secp256k1.PrivKeyFromBytes(d).PubKey().SerializeUncompressed()
	k := ecPrivateKey{Version: 1, PrivateKey: d, PublicKey: asn1.BitString{Bytes: pub, BitLength: 8 * len(pub)}}
	if curveInside {
		k.NamedCurveOID = oidSecp256k1
	}
	return must(asn1.Marshal(k))
}

func pkcs8EC(curve asn1.ObjectIdentifier, inner []byte) []byte {
	params := must(asn1.Marshal(curve))
	return must(asn1.Marshal(pkcs8{
		Algo:       algorithmIdentifier{Algorithm: oidECPublicKey, Parameters: asn1.RawValue{FullBytes: params}},
		PrivateKey: inner,
	}))
}

// secp256k1Fixture: form is "sec1", "sec1+params", "sec1-nocurve+params"
// or "pkcs8".
func secp256k1Fixture(id, form string) fixture {
	d := scalar(id)
	return secp256k1FixtureFromScalar(id, form, d)
}

func secp256k1FixtureFromScalar(id, form string, d []byte) fixture {
	var p string
	params := pemString("EC PARAMETERS", must(asn1.Marshal(oidSecp256k1)))
	switch form {
	case "sec1":
		p = pemString("EC PRIVATE KEY", secp256k1SEC1(d, true))
	case "sec1+params":
		p = params + pemString("EC PRIVATE KEY", secp256k1SEC1(d, true))
	case "sec1-nocurve+params":
		p = params + pemString("EC PRIVATE KEY", secp256k1SEC1(d, false))
	case "pkcs8":
		p = pemString("PRIVATE KEY", pkcs8EC(oidSecp256k1, secp256k1SEC1(d, false)))
	default:
		panic(form)
	}
	return fixture{id: id, alg: keyring.ECDSASecp256k1, pem: p, scalar: d}
}

// allFixtures has one key of each algorithm in every accepted encoding.
func allFixtures() []fixture {
	return []fixture{
		ed25519Fixture("ed"),
		p256Fixture("p256-sec1", "sec1"),
		p256Fixture("p256-sec1-params", "sec1+params"),
		p256Fixture("p256-pkcs8", "pkcs8"),
		secp256k1Fixture("k1-sec1", "sec1"),
		secp256k1Fixture("k1-sec1-params", "sec1+params"),
		secp256k1Fixture("k1-sec1-nocurve", "sec1-nocurve+params"),
		secp256k1Fixture("k1-pkcs8", "pkcs8"),
	}
}

type jsonKey struct {
	ID            string `json:"id"`
	Algorithm     string `json:"algorithm"`
	PrivateKeyPEM string `json:"private_key_pem"`
}

func keyringJSON(fs ...fixture) []byte {
	doc := struct {
		Version int       `json:"version"`
		Keys    []jsonKey `json:"keys"`
	}{Version: 1}
	for _, f := range fs {
		doc.Keys = append(doc.Keys, jsonKey{f.id, string(f.alg), f.pem})
	}
	return must(json.Marshal(doc))
}

// newIdentity returns a fresh age identity as age-keygen formats it, and
// the parsed form.
func newIdentity(t testing.TB) (keyFile []byte, id *keyring.Identity, rcpt *age.X25519Recipient) {
	t.Helper()
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	keyFile = []byte("# created: 2026-01-01T00:00:00Z\n# public key: " + x.Recipient().String() + "\n" + x.String() + "\n")
	id, err = keyring.ParseIdentity(keyFile)
	if err != nil {
		t.Fatalf("ParseIdentity: %v", err)
	}
	return keyFile, id, x.Recipient()
}

// encrypt encrypts plaintext to r in-process, armored or binary.
func encrypt(t testing.TB, r age.Recipient, plaintext []byte, armored bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var dst interface {
		Write([]byte) (int, error)
		Close() error
	}
	var aw interface{ Close() error }
	if armored {
		a := armor.NewWriter(&buf)
		aw = a
		w, err := age.Encrypt(a, r)
		if err != nil {
			t.Fatal(err)
		}
		dst = w
	} else {
		w, err := age.Encrypt(&buf, r)
		if err != nil {
			t.Fatal(err)
		}
		dst = w
	}
	if _, err := dst.Write(plaintext); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if aw != nil {
		if err := aw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// pemBodyLines returns the base64 lines of a PEM text.
func pemBodyLines(p string) []string {
	var out []string
	for line := range strings.Lines(p) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}

package keyring

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Key generation, for operators making new keyrings (signer keyring new).
// Keys are written as unencrypted PKCS#8 ("PRIVATE KEY") for every
// algorithm, exactly as openssl genpkey writes them, so openssl reads them
// back; for ECDSA the inner ECPrivateKey carries the public key, as
// openssl's does. The DER and PEM are built by hand into buffers sized in
// advance, so the only copies of the private key are ones this file can
// wipe (limits as in the package documentation: crypto/ecdh keeps its own
// copy of the P-256 scalar, age its chunk buffers).

// CheckID reports whether id is a valid key id ([A-Za-z0-9._-], 1 to
// [MaxIDLength] characters). The error says what is wrong without quoting
// the id.
func CheckID(id string) error { return checkID([]byte(id)) }

// ParseAlgorithm returns the algorithm called s, or an error listing the
// supported ones.
func ParseAlgorithm(s string) (Algorithm, error) {
	a := Algorithm(s)
	if a.valid() {
		return a, nil
	}
	names := make([]string, 0, 3)
	for _, a := range Algorithms() {
		names = append(names, string(a))
	}
	return "", fmt.Errorf("unknown algorithm %s, want one of %s", strconv.Quote(s), strings.Join(names, ", "))
}

// Generate returns a new private key of algorithm alg as a PKCS#8
// "PRIVATE KEY" PEM block, readable by [ParseKeyring] and by openssl pkey.
// The key comes from crypto/rand. The caller owns the returned buffer,
// which is secret, and should wipe it with clear.
func Generate(alg Algorithm) ([]byte, error) {
	var der []byte
	var buf []byte // the builder's backing array, wiped after encoding
	var err error
	switch alg {
	case Ed25519:
		seed := make([]byte, 32)
		defer clear(seed)
		if _, err := io.ReadFull(rand.Reader, seed); err != nil {
			return nil, fmt.Errorf("generate ed25519 key: %v", err)
		}
		der, buf, err = pkcs8Ed25519(seed)
	case ECDSAP256:
		k, gerr := ecdh.P256().GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("generate ecdsa-p256 key: %v", gerr)
		}
		d := k.Bytes()
		defer clear(d)
		der, buf, err = pkcs8EC(oidP256, d, k.PublicKey().Bytes())
	case ECDSASecp256k1:
		k, gerr := secp256k1.GeneratePrivateKey()
		if gerr != nil {
			return nil, fmt.Errorf("generate ecdsa-secp256k1 key: %v", gerr)
		}
		defer k.Zero()
		d := k.Serialize()
		defer clear(d)
		der, buf, err = pkcs8EC(oidSecp256k1, d, k.PubKey().SerializeUncompressed())
	default:
		_, err := ParseAlgorithm(string(alg))
		return nil, err
	}
	defer clear(buf[:cap(buf)])
	if err != nil {
		return nil, fmt.Errorf("generate %s key: encoding PKCS#8: %v", alg, err)
	}
	return encodePEM(pemPKCS8, der), nil
}

// pkcs8Ed25519 encodes an ed25519 seed (RFC 8410):
//
//	SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 },
//	           OCTET STRING { OCTET STRING seed } }
//
// It returns the DER and the buffer it was built in.
func pkcs8Ed25519(seed []byte) (der, buf []byte, err error) {
	buf = make([]byte, 0, 64)
	b := cryptobyte.NewBuilder(buf)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidEd25519)
		})
		b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(seed)
		})
	})
	der, err = b.Bytes()
	return der, buf, err
}

// pkcs8EC encodes an EC private key on the named curve (RFC 5208, RFC 5915)
// as openssl writes it:
//
//	SEQUENCE { INTEGER 0, SEQUENCE { OID ecPublicKey, OID curve },
//	           OCTET STRING { SEQUENCE { INTEGER 1, OCTET STRING d,
//	                                     [1] { BIT STRING point } } } }
//
// d is the 32-byte scalar, point the uncompressed public point. It returns
// the DER and the buffer it was built in.
func pkcs8EC(curve asn1.ObjectIdentifier, d, point []byte) (der, buf []byte, err error) {
	if len(d) != 32 || len(point) != 65 {
		return nil, nil, fmt.Errorf("scalar of %d bytes and point of %d bytes, want 32 and 65", len(d), len(point))
	}
	// 256 bytes leaves room for every length fix-up, so the builder never
	// reallocates (which would strand an unwiped copy).
	buf = make([]byte, 0, 256)
	b := cryptobyte.NewBuilder(buf)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidECPublicKey)
			b.AddASN1ObjectIdentifier(curve)
		})
		b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1OctetString(d)
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1BitString(point)
				})
			})
		})
	})
	der, err = b.Bytes()
	return der, buf, err
}

// encodePEM writes one PEM block with 64-character lines into a buffer of
// exactly the right size (encoding/pem grows a bytes.Buffer, leaving
// copies behind).
func encodePEM(typ string, der []byte) []byte {
	n := base64.StdEncoding.EncodedLen(len(der))
	lines := (n + 63) / 64
	size := len("-----BEGIN -----\n") + len(typ) + n + lines + len("-----END -----\n") + len(typ)
	out := make([]byte, 0, size)
	out = append(out, "-----BEGIN "...)
	out = append(out, typ...)
	out = append(out, "-----\n"...)
	b64 := make([]byte, n)
	defer clear(b64)
	base64.StdEncoding.Encode(b64, der)
	tmp := b64
	for len(tmp) > 0 {
		l := min(64, len(tmp))
		out = append(out, tmp[:l]...)
		out = append(out, '\n')
		tmp = tmp[l:]
	}
	out = append(out, "-----END "...)
	out = append(out, typ...)
	out = append(out, "-----\n"...)
	return out
}

// KeySpec names one key for [GenerateKeyring] to generate.
type KeySpec struct {
	ID        string
	Algorithm Algorithm
}

// GenerateOptions are the inputs of [GenerateKeyring].
type GenerateOptions struct {
	// Keys to generate, in keyring order. At least one; ids unique.
	Keys []KeySpec
	// Recipients the keyring is encrypted to (the sealed identity's age1…
	// recipient, and perhaps an offline backup). At least one.
	Recipients []age.Recipient
	// Armor writes the age file ASCII-armored (-----BEGIN AGE ENCRYPTED
	// FILE-----) instead of binary.
	Armor bool
	// KeyringID, when set, makes a Format2 keyring naming this id and
	// KeyringVersion, for a signed statement to repeat; else the keyring
	// is Format1.
	KeyringID      string
	KeyringVersion uint64
}

// GenerateKeyring generates a new key for each spec and returns the
// keyring, encrypted with age to the recipients, and the keys' public
// descriptions. The plaintext keyring and every PEM exist only in buffers
// this function allocates and wipes before returning; the keyring is parsed
// back with [ParseKeyring] before it is encrypted, so what is written is
// what signerd will load.
func GenerateKeyring(o GenerateOptions) (ciphertext []byte, keys []KeyInfo, err error) {
	if len(o.Keys) == 0 {
		return nil, nil, errors.New("generate keyring: no keys requested, want at least one")
	}
	if len(o.Recipients) == 0 {
		return nil, nil, errors.New("generate keyring: no recipients, want at least one age recipient")
	}
	head := `{"version": 1, "keys": [` + "\n"
	if o.KeyringID != "" {
		if err := CheckID(o.KeyringID); err != nil {
			return nil, nil, fmt.Errorf("generate keyring: keyring id: %v", err)
		}
		head = fmt.Sprintf(`{"version": 2, "keyring_id": "%s", "keyring_version": %d, "keys": [`+"\n", o.KeyringID, o.KeyringVersion)
	} else if o.KeyringVersion != 0 {
		return nil, nil, errors.New("generate keyring: a keyring version without a keyring id")
	}
	seen := make(map[string]bool, len(o.Keys))
	for i, k := range o.Keys {
		if err := CheckID(k.ID); err != nil {
			return nil, nil, fmt.Errorf("generate keyring: key %d: id: %v", i, err)
		}
		if seen[k.ID] {
			return nil, nil, fmt.Errorf("generate keyring: key id %q requested twice, want unique ids", k.ID)
		}
		seen[k.ID] = true
		if _, err := ParseAlgorithm(string(k.Algorithm)); err != nil {
			return nil, nil, fmt.Errorf("generate keyring: key %q: %v", k.ID, err)
		}
	}

	pems := make([][]byte, 0, len(o.Keys))
	defer func() {
		for _, p := range pems {
			clear(p)
		}
	}()
	size := len(head + `]}` + "\n")
	for _, k := range o.Keys {
		p, err := Generate(k.Algorithm)
		if err != nil {
			return nil, nil, fmt.Errorf("generate keyring: key %q: %v", k.ID, err)
		}
		pems = append(pems, p)
		size += len(`  {"id": "", "algorithm": "", "private_key_pem": ""},`+"\n") + len(k.ID) + len(k.Algorithm) +
			len(p) + bytes.Count(p, []byte("\n"))
	}

	// The JSON is written by hand into one buffer of the right size: ids
	// and algorithm names need no escaping (checked above), PEM text only
	// its newlines.
	plain := make([]byte, 0, size)
	defer func() { clear(plain[:cap(plain)]) }()
	plain = append(plain, head...)
	for i, k := range o.Keys {
		plain = append(plain, `  {"id": "`...)
		plain = append(plain, k.ID...)
		plain = append(plain, `", "algorithm": "`...)
		plain = append(plain, k.Algorithm...)
		plain = append(plain, `", "private_key_pem": "`...)
		for _, c := range pems[i] {
			if c == '\n' {
				plain = append(plain, '\\', 'n')
				continue
			}
			plain = append(plain, c)
		}
		plain = append(plain, `"}`...)
		if i < len(o.Keys)-1 {
			plain = append(plain, ',')
		}
		plain = append(plain, '\n')
	}
	plain = append(plain, "]}\n"...)

	kr, err := ParseKeyring("new keyring", plain)
	if err != nil {
		return nil, nil, fmt.Errorf("generate keyring: the generated keyring does not parse (a bug): %w", err)
	}
	if kr.KeyringID() != o.KeyringID || kr.KeyringVersion() != o.KeyringVersion {
		kr.Destroy()
		return nil, nil, errors.New("generate keyring: the generated keyring does not name its id and version (a bug)")
	}
	for _, k := range kr.Keys() {
		keys = append(keys, k.Info())
	}
	kr.Destroy()

	var out bytes.Buffer
	var dst io.Writer = &out
	var aw io.WriteCloser
	if o.Armor {
		aw = armor.NewWriter(&out)
		dst = aw
	}
	w, err := age.Encrypt(dst, o.Recipients...)
	if err != nil {
		return nil, nil, fmt.Errorf("generate keyring: age encrypt: %v", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, nil, fmt.Errorf("generate keyring: age encrypt: %v", err)
	}
	if err := w.Close(); err != nil {
		return nil, nil, fmt.Errorf("generate keyring: age encrypt: %v", err)
	}
	if aw != nil {
		if err := aw.Close(); err != nil {
			return nil, nil, fmt.Errorf("generate keyring: age armor: %v", err)
		}
	}
	return out.Bytes(), keys, nil
}

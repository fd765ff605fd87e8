package keyring

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
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
	// Policy, for a keyring with clients: which clients may use the key,
	// for which kinds (nil Kinds: every kind the algorithm signs), at what
	// rate, up to what message size. nil: no client may use it.
	Policy *KeyPolicy
}

// ClientSpec declares one client for [GenerateKeyring].
type ClientSpec struct {
	ID string
	// Secrets are the client's one or two secrets, 32 bytes each, from
	// GenerateClientSecret. They stay the caller's to wipe.
	Secrets [][]byte
	// Rate limits the client over all keys; nil for none.
	Rate *Rate
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
	// Audience and Clients, with a KeyringID, make a policed keyring (see
	// the package documentation); both or neither.
	Audience string
	Clients  []ClientSpec
}

// piece is a part of a keyring being written: public text, a PEM (written
// with its newlines escaped) or a client secret (written as hex).
type piece struct {
	text   string
	pem    []byte
	secret []byte
}

func (p piece) size() int {
	switch {
	case p.pem != nil:
		return len(p.pem) + bytes.Count(p.pem, []byte("\n"))
	case p.secret != nil:
		return hex.EncodedLen(len(p.secret))
	}
	return len(p.text)
}

// appendTo writes the piece into out, which has room for it.
func (p piece) appendTo(out []byte) []byte {
	switch {
	case p.pem != nil:
		for _, c := range p.pem {
			if c == '\n' {
				out = append(out, '\\', 'n')
				continue
			}
			out = append(out, c)
		}
		return out
	case p.secret != nil:
		n := len(out)
		out = out[:n+hex.EncodedLen(len(p.secret))]
		hex.Encode(out[n:], p.secret)
		return out
	}
	return append(out, p.text...)
}

// rateJSON writes a rate object; per_second is written exactly as a
// decimal with at most RateDecimals digits after the point.
func rateJSON(r *Rate) (string, error) {
	if err := checkRate(*r); err != nil {
		return "", err
	}
	ps := strconv.FormatFloat(r.PerSecond, 'f', -1, 64)
	if _, frac, ok := strings.Cut(ps, "."); ok && len(frac) > RateDecimals {
		return "", fmt.Errorf("per_second %s has more than %d digits after the decimal point", ps, RateDecimals)
	}
	return fmt.Sprintf(`{"per_second": %s, "burst": %d}`, ps, r.Burst), nil
}

// policyJSON writes a key's policy object. Ids and kinds are checked
// first, so nothing written needs escaping; what refers to the rest of the
// keyring is checked when the result is parsed back.
func policyJSON(p *KeyPolicy) (string, error) {
	quoted := func(what string, xs []string, check func(string) error) (string, error) {
		q := make([]string, len(xs))
		for i, x := range xs {
			if err := check(x); err != nil {
				return "", fmt.Errorf("%s %d: %v", what, i+1, err)
			}
			q[i] = `"` + x + `"`
		}
		return "[" + strings.Join(q, ", ") + "]", nil
	}
	clients, err := quoted("client", p.Clients, CheckID)
	if err != nil {
		return "", err
	}
	out := `, "policy": {"clients": ` + clients
	if p.Kinds != nil {
		kinds, err := quoted("kind", p.Kinds, func(k string) error {
			if k != KindMessage && k != KindDigest {
				return fmt.Errorf(`unknown request kind, want "message" or "digest"`)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		out += `, "kinds": ` + kinds
	}
	if p.Rate != nil {
		r, err := rateJSON(p.Rate)
		if err != nil {
			return "", fmt.Errorf("rate: %v", err)
		}
		out += `, "rate": ` + r
	}
	if p.MaxMessageBytes != 0 {
		out += `, "max_message_bytes": ` + strconv.Itoa(p.MaxMessageBytes)
	}
	return out + "}", nil
}

// headPieces writes the keyring's fields before "keys": version, id,
// audience and clients (with their secrets).
func headPieces(o GenerateOptions) ([]piece, error) {
	if o.KeyringID == "" {
		switch {
		case o.KeyringVersion != 0:
			return nil, errors.New("a keyring version without a keyring id")
		case o.Audience != "" || len(o.Clients) > 0:
			return nil, errors.New("clients and an audience need a format 2 keyring: give a keyring id and version")
		}
		return []piece{{text: `{"version": 1, "keys": [` + "\n"}}, nil
	}
	if err := CheckID(o.KeyringID); err != nil {
		return nil, fmt.Errorf("keyring id: %v", err)
	}
	ps := []piece{{text: fmt.Sprintf(`{"version": 2, "keyring_id": "%s", "keyring_version": %d,`+"\n", o.KeyringID, o.KeyringVersion)}}
	if (o.Audience == "") != (len(o.Clients) == 0) {
		return nil, errors.New("give an audience and clients together: a keyring with clients names its audience, an open one has neither")
	}
	if o.Audience == "" {
		return append(ps, piece{text: ` "keys": [` + "\n"}), nil
	}
	if err := CheckAudience(o.Audience); err != nil {
		return nil, fmt.Errorf("audience: %v", err)
	}
	ps = append(ps, piece{text: ` "audience": "` + o.Audience + `",` + "\n" + ` "clients": [` + "\n"})
	for i, c := range o.Clients {
		if err := CheckID(c.ID); err != nil {
			return nil, fmt.Errorf("client %d: id: %v", i+1, err)
		}
		if len(c.Secrets) < 1 || len(c.Secrets) > MaxClientSecrets {
			return nil, fmt.Errorf("client %q: %d secrets, want 1 or 2", c.ID, len(c.Secrets))
		}
		ps = append(ps, piece{text: `  {"id": "` + c.ID + `", "secrets": [`})
		for j, s := range c.Secrets {
			if len(s) != ClientSecretSize {
				return nil, fmt.Errorf("client %q: a secret of %d bytes, want %d", c.ID, len(s), ClientSecretSize)
			}
			if j > 0 {
				ps = append(ps, piece{text: ", "})
			}
			ps = append(ps, piece{text: `"`}, piece{secret: s}, piece{text: `"`})
		}
		tail := "]"
		if c.Rate != nil {
			r, err := rateJSON(c.Rate)
			if err != nil {
				return nil, fmt.Errorf("client %q: rate: %v", c.ID, err)
			}
			tail += `, "rate": ` + r
		}
		tail += "}"
		if i < len(o.Clients)-1 {
			tail += ","
		}
		ps = append(ps, piece{text: tail + "\n"})
	}
	return append(ps, piece{text: " ],\n" + ` "keys": [` + "\n"}), nil
}

// GenerateKeyring generates a new key for each spec and returns the
// keyring, encrypted with age to the recipients, and the keys' public
// descriptions. The plaintext keyring, every PEM and the hex of every
// client secret exist only in buffers this function allocates and wipes
// before returning; the keyring is parsed back with [ParseKeyring] before
// it is encrypted, so what is written is what signerd will load (a policy
// naming an undeclared client, for example, is reported then).
func GenerateKeyring(o GenerateOptions) (ciphertext []byte, keys []KeyInfo, err error) {
	if len(o.Keys) == 0 {
		return nil, nil, errors.New("generate keyring: no keys requested, want at least one")
	}
	if len(o.Recipients) == 0 {
		return nil, nil, errors.New("generate keyring: no recipients, want at least one age recipient")
	}
	head, err := headPieces(o)
	if err != nil {
		return nil, nil, fmt.Errorf("generate keyring: %v", err)
	}
	seen := make(map[string]bool, len(o.Keys))
	policies := make([]string, len(o.Keys))
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
		if k.Policy != nil {
			if policies[i], err = policyJSON(k.Policy); err != nil {
				return nil, nil, fmt.Errorf("generate keyring: key %q: policy: %v", k.ID, err)
			}
		}
	}

	pems := make([][]byte, 0, len(o.Keys))
	defer func() {
		for _, p := range pems {
			clear(p)
		}
	}()
	pieces := head
	for i, k := range o.Keys {
		p, err := Generate(k.Algorithm)
		if err != nil {
			return nil, nil, fmt.Errorf("generate keyring: key %q: %v", k.ID, err)
		}
		pems = append(pems, p)
		tail := `"` + policies[i] + "}"
		if i < len(o.Keys)-1 {
			tail += ","
		}
		pieces = append(pieces,
			piece{text: `  {"id": "` + k.ID + `", "algorithm": "` + string(k.Algorithm) + `", "private_key_pem": "`},
			piece{pem: p}, piece{text: tail + "\n"})
	}
	pieces = append(pieces, piece{text: "]}\n"})

	// The JSON is written into one buffer of the right size, so no
	// unwiped copy of a key or secret is left behind by a regrown slice.
	size := 0
	for _, p := range pieces {
		size += p.size()
	}
	plain := make([]byte, 0, size)
	defer func() { clear(plain[:cap(plain)]) }()
	for _, p := range pieces {
		plain = p.appendTo(plain)
	}
	if len(plain) != size {
		return nil, nil, errors.New("generate keyring: the keyring's size was miscounted (a bug)")
	}

	kr, err := ParseKeyring("new keyring", plain)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) && pe.Field != "private_key_pem" {
			// A policy or client the options got wrong.
			return nil, nil, fmt.Errorf("generate keyring: %w", err)
		}
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

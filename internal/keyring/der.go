package keyring

import (
	"bytes"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Private keys are unpacked by hand, field by field with cryptobyte, for
// every algorithm: crypto/x509 knows only the NIST curves (not secp256k1,
// OID 1.3.132.0.10), and parsing ourselves lets every buffer holding the
// scalar be wiped.

var (
	oidEd25519     = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidP256        = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

const (
	pemPKCS8        = "PRIVATE KEY"
	pemSEC1         = "EC PRIVATE KEY"
	pemECParameters = "EC PARAMETERS"
)

// rawKey is a private key unpacked from its PEM, before it becomes a signer.
type rawKey struct {
	alg Algorithm
	// scalar is the ed25519 seed or the ECDSA private scalar, 32 bytes
	// (left-padded); owned by rawKey and wiped by wipe.
	scalar []byte
	// pub is the public key embedded in the encoding, if any: the 32-byte
	// ed25519 key, or an uncompressed or compressed EC point.
	pub []byte
}

func (k *rawKey) wipe() { clear(k.scalar) }

// curveAlgorithm maps a named-curve OID to the ECDSA algorithm using it.
func curveAlgorithm(oid asn1.ObjectIdentifier) (Algorithm, error) {
	switch {
	case oid.Equal(oidP256):
		return ECDSAP256, nil
	case oid.Equal(oidSecp256k1):
		return ECDSASecp256k1, nil
	}
	return "", fmt.Errorf("unsupported elliptic curve OID %v, want prime256v1 (%v) or secp256k1 (%v)", oid, oidP256, oidSecp256k1)
}

// parsePrivateKeyPEM decodes the private_key_pem text. It accepts one
// "PRIVATE KEY" (PKCS#8) block, or one "EC PRIVATE KEY" (SEC1) block
// optionally preceded by an "EC PARAMETERS" block naming the same curve, and
// nothing else but white space.
func parsePrivateKeyPEM(text []byte) (rawKey, error) {
	var blocks []*pem.Block
	defer func() {
		for _, b := range blocks {
			clear(b.Bytes)
		}
	}()
	rest := text
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			break
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			if len(blocks) == 0 {
				return rawKey{}, errors.New(`not PEM: want text starting "-----BEGIN PRIVATE KEY-----" or "-----BEGIN EC PRIVATE KEY-----"`)
			}
			return rawKey{}, errors.New("unexpected text after the PEM block, want only PEM blocks")
		}
		if len(blocks) == 2 {
			return rawKey{}, errors.New(`too many PEM blocks, want one private key, optionally after "EC PARAMETERS"`)
		}
		b, r := pem.Decode(rest)
		if b == nil {
			return rawKey{}, errors.New("malformed PEM block (missing END line or invalid base64)")
		}
		blocks = append(blocks, b)
		rest = r
	}
	if len(blocks) == 0 {
		return rawKey{}, errors.New("empty, want a PEM private key")
	}
	for _, b := range blocks {
		if len(b.Headers) != 0 {
			return rawKey{}, fmt.Errorf("PEM block %s has headers (an encrypted key?), want an unencrypted key without headers", pemTypeName(b.Type))
		}
	}

	var paramsCurve Algorithm
	last := blocks[len(blocks)-1]
	if len(blocks) == 2 {
		if blocks[0].Type != pemECParameters || last.Type != pemSEC1 {
			return rawKey{}, fmt.Errorf(`PEM blocks %s then %s, want "EC PARAMETERS" then "EC PRIVATE KEY"`, pemTypeName(blocks[0].Type), pemTypeName(last.Type))
		}
		s := cryptobyte.String(blocks[0].Bytes)
		var oid asn1.ObjectIdentifier
		if !s.ReadASN1ObjectIdentifier(&oid) || !s.Empty() {
			return rawKey{}, errors.New("EC PARAMETERS: want a named curve OID (explicit curve parameters are not supported)")
		}
		alg, err := curveAlgorithm(oid)
		if err != nil {
			return rawKey{}, fmt.Errorf("EC PARAMETERS: %v", err)
		}
		paramsCurve = alg
	}

	var k rawKey
	var err error
	switch last.Type {
	case pemPKCS8:
		k, err = parsePKCS8(last.Bytes)
		if err != nil {
			return rawKey{}, fmt.Errorf("PKCS#8: %v", err)
		}
	case pemSEC1:
		k, err = parseSEC1(last.Bytes, "")
		if err != nil {
			return rawKey{}, fmt.Errorf("SEC1: %v", err)
		}
		if k.alg == "" && paramsCurve == "" {
			k.wipe()
			return rawKey{}, errors.New("SEC1: the key names no curve and no EC PARAMETERS block precedes it")
		}
	case "ENCRYPTED PRIVATE KEY":
		return rawKey{}, errors.New(`encrypted PKCS#8 is not supported, want "PRIVATE KEY" (openssl pkcs8 -topk8 -nocrypt)`)
	default:
		return rawKey{}, fmt.Errorf(`PEM block type %s, want "PRIVATE KEY" or "EC PRIVATE KEY"`, pemTypeName(last.Type))
	}
	if paramsCurve != "" {
		if k.alg == "" {
			k.alg = paramsCurve
		} else if k.alg != paramsCurve {
			k.wipe()
			return rawKey{}, fmt.Errorf("EC PARAMETERS names %s but the key is %s", paramsCurve, k.alg)
		}
	}
	return k, nil
}

// pemTypeName quotes a PEM type label for an error, if it looks like one.
func pemTypeName(t string) string {
	if len(t) > 40 {
		return "(unrecognised)"
	}
	for _, c := range t {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != ' ' && c != '-' {
			return "(unrecognised)"
		}
	}
	return fmt.Sprintf("%q", t)
}

// parsePKCS8 unpacks a PKCS#8 PrivateKeyInfo / OneAsymmetricKey (RFC 5958):
//
//	SEQUENCE { version INTEGER (0|1), algorithm AlgorithmIdentifier,
//	           privateKey OCTET STRING, [0] attributes OPTIONAL,
//	           [1] IMPLICIT publicKey BIT STRING OPTIONAL }
func parsePKCS8(der []byte) (rawKey, error) {
	input := cryptobyte.String(der)
	var seq cryptobyte.String
	if !input.ReadASN1(&seq, cbasn1.SEQUENCE) || !input.Empty() {
		return rawKey{}, errors.New("want one DER SEQUENCE")
	}
	var version int
	if !seq.ReadASN1Integer(&version) || (version != 0 && version != 1) {
		return rawKey{}, errors.New("version: want INTEGER 0 or 1")
	}
	var algID cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !seq.ReadASN1(&algID, cbasn1.SEQUENCE) || !algID.ReadASN1ObjectIdentifier(&oid) {
		return rawKey{}, errors.New("algorithm: want an AlgorithmIdentifier SEQUENCE with an OID")
	}
	var alg Algorithm
	switch {
	case oid.Equal(oidEd25519):
		if !algID.Empty() {
			return rawKey{}, errors.New("algorithm: ed25519 takes no parameters")
		}
		alg = Ed25519
	case oid.Equal(oidECPublicKey):
		var curve asn1.ObjectIdentifier
		if !algID.ReadASN1ObjectIdentifier(&curve) || !algID.Empty() {
			return rawKey{}, errors.New("algorithm: want a named curve OID as the EC parameters")
		}
		var err error
		if alg, err = curveAlgorithm(curve); err != nil {
			return rawKey{}, fmt.Errorf("algorithm: %v", err)
		}
	default:
		return rawKey{}, fmt.Errorf("algorithm: OID %v is not ed25519 (%v) or an EC key (%v)", oid, oidEd25519, oidECPublicKey)
	}
	var priv cryptobyte.String
	if !seq.ReadASN1(&priv, cbasn1.OCTET_STRING) {
		return rawKey{}, errors.New("privateKey: want an OCTET STRING")
	}
	if !seq.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return rawKey{}, errors.New("attributes: malformed")
	}
	var pub cryptobyte.String
	var hasPub bool
	if !seq.ReadOptionalASN1(&pub, &hasPub, cbasn1.Tag(1).ContextSpecific()) {
		return rawKey{}, errors.New("publicKey: malformed")
	}
	if !seq.Empty() {
		return rawKey{}, errors.New("unexpected data after the last field")
	}
	var pubKey []byte
	if hasPub {
		// IMPLICIT BIT STRING contents: the unused-bits count, then the key.
		if len(pub) < 1 || pub[0] != 0 {
			return rawKey{}, errors.New("publicKey: want a BIT STRING of whole bytes")
		}
		pubKey = bytes.Clone(pub[1:]) // public; the DER it points into gets wiped
	}

	if alg == Ed25519 {
		// CurvePrivateKey ::= OCTET STRING (RFC 8410), the 32-byte seed.
		var seed cryptobyte.String
		if !priv.ReadASN1(&seed, cbasn1.OCTET_STRING) || !priv.Empty() {
			return rawKey{}, errors.New("privateKey: want an ed25519 CurvePrivateKey OCTET STRING")
		}
		if len(seed) != 32 {
			return rawKey{}, fmt.Errorf("privateKey: ed25519 seed is %d bytes, want 32", len(seed))
		}
		return rawKey{alg: Ed25519, scalar: bytes.Clone(seed), pub: pubKey}, nil
	}
	k, err := parseSEC1(priv, alg)
	if err != nil {
		return rawKey{}, fmt.Errorf("privateKey: %v", err)
	}
	if k.pub == nil {
		k.pub = pubKey
	}
	return k, nil
}

// parseSEC1 unpacks an ECPrivateKey (RFC 5915):
//
//	SEQUENCE { version INTEGER (1), privateKey OCTET STRING,
//	           [0] EXPLICIT parameters OPTIONAL, [1] EXPLICIT publicKey BIT STRING OPTIONAL }
//
// curve is the algorithm already known from a PKCS#8 wrapper, or "". The
// returned alg is "" when neither names a curve.
func parseSEC1(der []byte, curve Algorithm) (rawKey, error) {
	input := cryptobyte.String(der)
	var seq cryptobyte.String
	if !input.ReadASN1(&seq, cbasn1.SEQUENCE) || !input.Empty() {
		return rawKey{}, errors.New("want one DER SEQUENCE (ECPrivateKey)")
	}
	var version int
	if !seq.ReadASN1Integer(&version) || version != 1 {
		return rawKey{}, errors.New("version: want INTEGER 1")
	}
	var d cryptobyte.String
	if !seq.ReadASN1(&d, cbasn1.OCTET_STRING) {
		return rawKey{}, errors.New("privateKey: want an OCTET STRING")
	}
	if len(d) == 0 || len(d) > 32 {
		return rawKey{}, fmt.Errorf("privateKey: scalar is %d bytes, want 1 to 32", len(d))
	}
	var params cryptobyte.String
	var hasParams bool
	if !seq.ReadOptionalASN1(&params, &hasParams, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return rawKey{}, errors.New("parameters: malformed")
	}
	if hasParams {
		var oid asn1.ObjectIdentifier
		if !params.ReadASN1ObjectIdentifier(&oid) || !params.Empty() {
			return rawKey{}, errors.New("parameters: want a named curve OID (explicit curve parameters are not supported)")
		}
		alg, err := curveAlgorithm(oid)
		if err != nil {
			return rawKey{}, fmt.Errorf("parameters: %v", err)
		}
		if curve != "" && curve != alg {
			return rawKey{}, fmt.Errorf("parameters name %s but the PKCS#8 algorithm names %s", alg, curve)
		}
		curve = alg
	}
	var pubField cryptobyte.String
	var hasPub bool
	if !seq.ReadOptionalASN1(&pubField, &hasPub, cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return rawKey{}, errors.New("publicKey: malformed")
	}
	var pub []byte
	if hasPub {
		var bits asn1.BitString
		if !pubField.ReadASN1BitString(&bits) || !pubField.Empty() || bits.BitLength%8 != 0 {
			return rawKey{}, errors.New("publicKey: want a BIT STRING of whole bytes")
		}
		pub = bytes.Clone(bits.Bytes) // public; the DER it points into gets wiped
	}
	if !seq.Empty() {
		return rawKey{}, errors.New("unexpected data after the last field")
	}
	scalar := make([]byte, 32)
	copy(scalar[32-len(d):], d)
	return rawKey{alg: curve, scalar: scalar, pub: pub}, nil
}

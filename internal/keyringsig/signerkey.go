package keyringsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Algorithm is a keyring signer's signature algorithm.
type Algorithm string

// The algorithms of keyring signers.
const (
	// Ed25519 signs the statement's bytes (pure RFC 8032): 64 bytes.
	Ed25519 Algorithm = "ed25519"
	// ECDSAP256 signs SHA-256 of the statement's bytes on P-256, ASN.1
	// DER: what KMS Sign returns for an ECC_NIST_P256 key with
	// ECDSA_SHA_256 and MessageType RAW.
	ECDSAP256 Algorithm = "ecdsa-p256"
)

// maxSignerValue bounds a pin value (a P-256 one is 135 characters).
const maxSignerValue = 256

// maxECDSASignature is the longest DER ECDSA P-256 signature: SEQUENCE of
// two INTEGERs of up to 33 bytes.
const maxECDSASignature = 72

// SignerKey is a keyring signer's public key: what signerd pins
// (--keyring-signer VALUE) and what a signature file names. Its text form,
// VALUE, is the algorithm, a colon and the standard base64 (with padding)
// of the DER SubjectPublicKeyInfo:
//
//	ed25519:MCowBQYDK2VwAyEA…
//	ecdsa-p256:MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE…
//
// Each key has exactly one VALUE, so two are the same key exactly when
// their VALUEs are equal. The zero SignerKey is no key.
type SignerKey struct {
	value string
	alg   Algorithm
	pub   crypto.PublicKey
}

// NewSignerKey returns the SignerKey of an ed25519 or P-256 ECDSA public key.
func NewSignerKey(pub crypto.PublicKey) (SignerKey, error) {
	var alg Algorithm
	switch p := pub.(type) {
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return SignerKey{}, fmt.Errorf("ed25519 public key of %d bytes, want %d", len(p), ed25519.PublicKeySize)
		}
		alg = Ed25519
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return SignerKey{}, fmt.Errorf("ECDSA key on %s, want P-256 (KMS key spec ECC_NIST_P256)", p.Curve.Params().Name)
		}
		alg = ECDSAP256
	default:
		return SignerKey{}, fmt.Errorf("a %T public key, want ed25519 or ECDSA P-256", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return SignerKey{}, fmt.Errorf("encode the public key: %w", err)
	}
	return SignerKey{value: string(alg) + ":" + base64.StdEncoding.EncodeToString(der), alg: alg, pub: pub}, nil
}

// ParseSignerKey parses a VALUE (see SignerKey). It accepts exactly the
// text NewSignerKey writes: a key given any other way (another base64
// alphabet, missing padding, a compressed point, a different DER) is
// refused, so one key cannot be pinned under two spellings.
func ParseSignerKey(value string) (SignerKey, error) {
	if len(value) > maxSignerValue {
		return SignerKey{}, fmt.Errorf("keyring signer: %d characters, want at most %d: ed25519:BASE64 or ecdsa-p256:BASE64 as signer keyring signer-key prints it", len(value), maxSignerValue)
	}
	algName, b64, ok := strings.Cut(value, ":")
	alg := Algorithm(algName)
	if !ok || (alg != Ed25519 && alg != ECDSAP256) {
		return SignerKey{}, errors.New("keyring signer: want ed25519:BASE64 or ecdsa-p256:BASE64 (the DER SubjectPublicKeyInfo), as signer keyring signer-key prints it")
	}
	der, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || strings.ContainsAny(b64, "\r\n") {
		return SignerKey{}, fmt.Errorf("keyring signer %s:…: the key is not standard base64 with padding", alg)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return SignerKey{}, fmt.Errorf("keyring signer %s:…: not a DER SubjectPublicKeyInfo: %v", alg, err)
	}
	k, err := NewSignerKey(pub)
	if err != nil {
		return SignerKey{}, fmt.Errorf("keyring signer %s:…: %v", alg, err)
	}
	if k.alg != alg {
		return SignerKey{}, fmt.Errorf("keyring signer: labelled %s but the key is %s", alg, k.alg)
	}
	if k.value != value {
		return SignerKey{}, fmt.Errorf("keyring signer %s:…: not in canonical form (write it as signer keyring signer-key prints it)", alg)
	}
	return k, nil
}

// String returns the VALUE.
func (k SignerKey) String() string { return k.value }

// Algorithm returns the key's algorithm.
func (k SignerKey) Algorithm() Algorithm { return k.alg }

// PublicKey returns the ed25519.PublicKey or *ecdsa.PublicKey.
func (k SignerKey) PublicKey() crypto.PublicKey { return k.pub }

// IsZero reports whether k is the zero SignerKey.
func (k SignerKey) IsZero() bool { return k.value == "" }

// Equal reports whether k and o are the same key.
func (k SignerKey) Equal(o SignerKey) bool { return k.value == o.value }

// Verify reports whether sig is k's signature over message (for
// ecdsa-p256, over SHA-256 of message).
func (k SignerKey) Verify(message, sig []byte) bool {
	switch p := k.pub.(type) {
	case ed25519.PublicKey:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(p, message, sig)
	case *ecdsa.PublicKey:
		h := sha256.Sum256(message)
		return len(sig) <= maxECDSASignature && ecdsa.VerifyASN1(p, h[:], sig)
	}
	return false
}

// checkSignatureShape checks a signature's length for alg before any
// cryptography: 64 bytes for ed25519, 8 to 72 (DER) for ecdsa-p256.
func checkSignatureShape(alg Algorithm, sig []byte) error {
	switch alg {
	case Ed25519:
		if len(sig) != ed25519.SignatureSize {
			return fmt.Errorf("ed25519 signature of %d bytes, want %d", len(sig), ed25519.SignatureSize)
		}
	case ECDSAP256:
		if len(sig) < 8 || len(sig) > maxECDSASignature || sig[0] != 0x30 {
			return fmt.Errorf("ecdsa-p256 signature of %d bytes, want an ASN.1 DER SEQUENCE of 8 to %d bytes", len(sig), maxECDSASignature)
		}
	}
	return nil
}

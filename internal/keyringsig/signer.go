package keyringsig

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Signer makes a keyring signer's signatures: over the message itself for
// ed25519, over its SHA-256 (DER) for ecdsa-p256. A KMS key
// (ECC_NIST_P256 with ECDSA_SHA_256: internal/kms/kmssigner) is one; a private
// key file is another ([ParsePrivateKeyPEM]).
type Signer interface {
	// Public returns an ed25519.PublicKey or a P-256 *ecdsa.PublicKey.
	Public() crypto.PublicKey
	// Sign signs message.
	Sign(ctx context.Context, message []byte) ([]byte, error)
}

// Sign has signer sign the file's statement and adds the signature, after
// checking that it verifies with the signer's public key (a KMS key of
// another spec, or a signer that lies about its key, fails here rather
// than in signerd).
func Sign(ctx context.Context, signer Signer, f *Signed) (SignerKey, error) {
	k, err := NewSignerKey(signer.Public())
	if err != nil {
		return SignerKey{}, fmt.Errorf("keyring signer: %w", err)
	}
	sig, err := signer.Sign(ctx, f.statement)
	if err != nil {
		return SignerKey{}, fmt.Errorf("sign the keyring statement: %w", err)
	}
	if err := f.Add(Signature{Signer: k, Sig: sig}); err != nil {
		return SignerKey{}, err
	}
	return k, nil
}

// fileSigner is a private key from a PKCS#8 file. It formats and logs as
// REDACTED.
type fileSigner struct {
	key crypto.Signer
}

// ParsePrivateKeyPEM reads a keyring signer's private key: one PKCS#8
// "PRIVATE KEY" PEM block, ed25519 or P-256, as openssl genpkey writes it
// (openssl genpkey -algorithm ed25519, or -algorithm EC -pkeyopt
// ec_paramgen_curve:P-256). The caller owns pemBytes and should wipe it.
// Errors never quote the file.
func ParsePrivateKeyPEM(pemBytes []byte) (Signer, error) {
	block, rest := pem.Decode(pemBytes)
	switch {
	case block == nil:
		return nil, errors.New("keyring signer key: no PEM block found, want a PKCS#8 PRIVATE KEY (openssl genpkey -algorithm ed25519)")
	case block.Type == "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("keyring signer key: the key is encrypted, want an unencrypted PKCS#8 PRIVATE KEY (openssl pkcs8 -topk8 -nocrypt converts it; keep the file where only you can read it)")
	case block.Type == "EC PRIVATE KEY":
		clear(block.Bytes)
		return nil, errors.New("keyring signer key: an SEC1 EC PRIVATE KEY, want PKCS#8 PRIVATE KEY (openssl pkcs8 -topk8 -nocrypt -in KEY converts it)")
	case block.Type != "PRIVATE KEY":
		clear(block.Bytes)
		return nil, fmt.Errorf("keyring signer key: a PEM %q block, want PRIVATE KEY (PKCS#8)", block.Type)
	}
	defer clear(block.Bytes)
	if b, _ := pem.Decode(rest); b != nil {
		clear(b.Bytes)
		return nil, errors.New("keyring signer key: more than one PEM block, want exactly one PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("keyring signer key: malformed PKCS#8 PRIVATE KEY")
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return &fileSigner{key: k}, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("keyring signer key: ECDSA on %s, want P-256 (ec_paramgen_curve:P-256)", k.Curve.Params().Name)
		}
		return &fileSigner{key: k}, nil
	default:
		return nil, fmt.Errorf("keyring signer key: a %T, want ed25519 or ECDSA P-256", k)
	}
}

func (s *fileSigner) Public() crypto.PublicKey { return s.key.Public() }

func (s *fileSigner) Sign(_ context.Context, message []byte) ([]byte, error) {
	switch k := s.key.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, message), nil
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(message)
		return ecdsa.SignASN1(rand.Reader, k, h[:])
	}
	return nil, errors.New("keyring signer key: unsupported key")
}

const redacted = "REDACTED"

func (s *fileSigner) String() string             { return redacted }
func (s *fileSigner) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }
func (s *fileSigner) LogValue() slog.Value       { return slog.StringValue(redacted) }

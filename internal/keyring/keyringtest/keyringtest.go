// Package keyringtest checks that a keyring.Key behaves as the signing API
// promises; packages that serve keys run it over the keys they load.
package keyringtest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
)

var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
	ethAddressRE   = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)
)

// TestSigner checks k's public description, its signatures over messages
// and digests (verified independently of the keyring package), the
// digest-length and digest-refusal errors, the crypto.Signer view, and
// concurrent signing. It must run before the key's set is destroyed.
func TestSigner(t testing.TB, k *keyring.Key) {
	t.Helper()
	info := k.Info()
	if info.ID != k.ID() || info.Algorithm != k.Algorithm() || info.PublicKeyPEM != k.PublicKeyPEM() {
		t.Errorf("key %q: Info() = %+v disagrees with the accessors", k.ID(), info)
	}
	pub := checkPublicKey(t, k)
	if t.Failed() {
		return
	}
	v := verifier{t: t, k: k, pub: pub}

	msgs := [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{0xa5}, 1000)}
	for _, msg := range msgs {
		sig, err := k.SignMessage(msg)
		if err != nil {
			t.Fatalf("key %q: SignMessage(%d bytes): %v", k.ID(), len(msg), err)
		}
		v.verifyMessage(msg, sig)
	}
	// A signature doesn't verify for another message: the check can fail.
	sig, err := k.SignMessage([]byte("message A"))
	if err != nil {
		t.Fatalf("key %q: SignMessage: %v", k.ID(), err)
	}
	if v.valid([]byte("message B"), sig.Signature) {
		t.Errorf("key %q: signature over %q also verifies for %q", k.ID(), "message A", "message B")
	}

	switch k.Algorithm() {
	case keyring.Ed25519:
		for _, d := range [][]byte{nil, make([]byte, 32), make([]byte, 64)} {
			if _, err := k.SignDigest(d); !errors.Is(err, keyring.ErrDigestNotAllowed) {
				t.Errorf("key %q: SignDigest(%d bytes) error = %v, want ErrDigestNotAllowed", k.ID(), len(d), err)
			}
		}
		if _, err := k.Sign(nil, make([]byte, 32), crypto.SHA256); !errors.Is(err, keyring.ErrDigestNotAllowed) {
			t.Errorf("key %q: crypto.Signer Sign with SHA-256 error = %v, want ErrDigestNotAllowed", k.ID(), err)
		}
		raw, err := k.Sign(nil, []byte("signer"), crypto.Hash(0))
		if err != nil || !ed25519.Verify(pub.(ed25519.PublicKey), []byte("signer"), raw) {
			t.Errorf("key %q: crypto.Signer Sign: err %v, signature verifies = false", k.ID(), err)
		}
		// RFC 8032 signatures are deterministic.
		a, _ := k.SignMessage([]byte("x"))
		b, _ := k.SignMessage([]byte("x"))
		if !bytes.Equal(a.Signature, b.Signature) {
			t.Errorf("key %q: ed25519 signatures of one message differ", k.ID())
		}
	default:
		digest := sha256.Sum256([]byte("digest input"))
		sig, err := k.SignDigest(digest[:])
		if err != nil {
			t.Fatalf("key %q: SignDigest: %v", k.ID(), err)
		}
		v.verifyDigest(digest[:], sig)
		for _, n := range []int{0, 20, 31, 33, 48, 64} {
			if _, err := k.SignDigest(make([]byte, n)); !errors.Is(err, keyring.ErrInvalidDigest) {
				t.Errorf("key %q: SignDigest(%d bytes) error = %v, want ErrInvalidDigest", k.ID(), n, err)
			}
		}
		raw, err := k.Sign(nil, digest[:], crypto.SHA256)
		if err != nil || !v.validDigest(digest[:], raw) {
			t.Errorf("key %q: crypto.Signer Sign: err %v, or the signature doesn't verify", k.ID(), err)
		}
		if _, err := k.Sign(nil, make([]byte, 48), crypto.SHA384); !errors.Is(err, keyring.ErrInvalidDigest) {
			t.Errorf("key %q: crypto.Signer Sign with SHA-384 error = %v, want ErrInvalidDigest", k.ID(), err)
		}
	}

	// Many goroutines sign at once (run with -race).
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				msg := fmt.Appendf(nil, "goroutine %d message %d", g, i)
				sig, err := k.SignMessage(msg)
				if err != nil {
					errs <- err
					return
				}
				if !v.valid(msg, sig.Signature) {
					errs <- fmt.Errorf("concurrent signature %d/%d doesn't verify", g, i)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("key %q: %v", k.ID(), err)
	}
}

// checkPublicKey parses PublicKeyPEM independently of the keyring package
// and checks it against Public() and EthereumAddress().
func checkPublicKey(t testing.TB, k *keyring.Key) crypto.PublicKey {
	t.Helper()
	block, rest := pem.Decode([]byte(k.PublicKeyPEM()))
	if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Errorf("key %q: PublicKeyPEM is not one PEM PUBLIC KEY block:\n%s", k.ID(), k.PublicKeyPEM())
		return nil
	}
	if !bytes.Equal(block.Bytes, k.PublicKeyDER()) {
		t.Errorf("key %q: PublicKeyPEM and PublicKeyDER differ", k.ID())
	}
	switch k.Algorithm() {
	case keyring.Ed25519, keyring.ECDSAP256:
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			t.Errorf("key %q: x509.ParsePKIXPublicKey: %v", k.ID(), err)
			return nil
		}
		eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !eq.Equal(k.Public()) {
			t.Errorf("key %q: SPKI holds %T, not the key's public key", k.ID(), pub)
		}
		if k.Algorithm() == keyring.ECDSAP256 {
			if p, ok := pub.(*ecdsa.PublicKey); !ok || p.Curve.Params().Name != "P-256" {
				t.Errorf("key %q: SPKI is %T, want a P-256 ECDSA key", k.ID(), pub)
			}
		} else if _, ok := pub.(ed25519.PublicKey); !ok {
			t.Errorf("key %q: SPKI is %T, want ed25519", k.ID(), pub)
		}
		if k.EthereumAddress() != "" {
			t.Errorf("key %q: EthereumAddress = %q, want empty for %s", k.ID(), k.EthereumAddress(), k.Algorithm())
		}
		return pub
	case keyring.ECDSASecp256k1:
		var spki struct {
			Algorithm struct {
				Algorithm  asn1.ObjectIdentifier
				Parameters asn1.ObjectIdentifier
			}
			PublicKey asn1.BitString
		}
		if rest, err := asn1.Unmarshal(block.Bytes, &spki); err != nil || len(rest) != 0 {
			t.Errorf("key %q: SPKI doesn't parse: %v", k.ID(), err)
			return nil
		}
		if !spki.Algorithm.Algorithm.Equal(oidECPublicKey) || !spki.Algorithm.Parameters.Equal(oidSecp256k1) {
			t.Errorf("key %q: SPKI algorithm %v / %v, want id-ecPublicKey / secp256k1", k.ID(), spki.Algorithm.Algorithm, spki.Algorithm.Parameters)
		}
		point := spki.PublicKey.Bytes
		if len(point) != 65 || point[0] != 4 {
			t.Errorf("key %q: SPKI point is %d bytes, want 65 uncompressed", k.ID(), len(point))
			return nil
		}
		pub, err := secp256k1.ParsePubKey(point)
		if err != nil {
			t.Errorf("key %q: SPKI point: %v", k.ID(), err)
			return nil
		}
		want, ok := k.Public().(*secp256k1.PublicKey)
		if !ok || !pub.IsEqual(want) {
			t.Errorf("key %q: SPKI point is not Public()", k.ID())
		}
		if !ethAddressRE.MatchString(k.EthereumAddress()) {
			t.Errorf("key %q: EthereumAddress = %q, want 0x and 40 hex digits", k.ID(), k.EthereumAddress())
		}
		return pub
	}
	t.Errorf("key %q: unknown algorithm %q", k.ID(), k.Algorithm())
	return nil
}

type verifier struct {
	t   testing.TB
	k   *keyring.Key
	pub crypto.PublicKey
}

func (v verifier) valid(msg, sig []byte) bool {
	if v.k.Algorithm() == keyring.Ed25519 {
		return ed25519.Verify(v.pub.(ed25519.PublicKey), msg, sig)
	}
	d := sha256.Sum256(msg)
	return v.validDigest(d[:], sig)
}

func (v verifier) validDigest(digest, sig []byte) bool {
	switch pub := v.pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(pub, digest, sig)
	case *secp256k1.PublicKey:
		s, err := secpecdsa.ParseDERSignature(sig)
		return err == nil && s.Verify(digest, pub)
	}
	return false
}

func (v verifier) verifyMessage(msg []byte, sig keyring.Signature) {
	v.t.Helper()
	if v.k.Algorithm() == keyring.Ed25519 {
		if len(sig.Signature) != ed25519.SignatureSize || !v.valid(msg, sig.Signature) {
			v.t.Errorf("key %q: ed25519 signature (%d bytes) over a %d-byte message doesn't verify", v.k.ID(), len(sig.Signature), len(msg))
		}
		if sig.RSV != nil || sig.RecoveryID != -1 {
			v.t.Errorf("key %q: RSV %x / RecoveryID %d, want nil / -1 for ed25519", v.k.ID(), sig.RSV, sig.RecoveryID)
		}
		return
	}
	d := sha256.Sum256(msg)
	v.verifyDigest(d[:], sig)
}

func (v verifier) verifyDigest(digest []byte, sig keyring.Signature) {
	v.t.Helper()
	if !v.validDigest(digest, sig.Signature) {
		v.t.Errorf("key %q: signature %x doesn't verify over digest %x", v.k.ID(), sig.Signature, digest)
		return
	}
	if v.k.Algorithm() == keyring.ECDSAP256 {
		if sig.RSV != nil || sig.RecoveryID != -1 {
			v.t.Errorf("key %q: RSV %x / RecoveryID %d, want nil / -1 for ecdsa-p256", v.k.ID(), sig.RSV, sig.RecoveryID)
		}
		return
	}
	CheckSecp256k1(v.t, v.pub.(*secp256k1.PublicKey), digest, sig)
	again, err := v.k.SignDigest(digest)
	if err != nil || !bytes.Equal(again.Signature, sig.Signature) || !bytes.Equal(again.RSV, sig.RSV) {
		v.t.Errorf("key %q: secp256k1 signatures aren't deterministic (RFC 6979): err %v", v.k.ID(), err)
	}
}

// CheckSecp256k1 checks an ecdsa-secp256k1 signature over digest: strict
// DER with low S, recovery id 0 or 1, RSV = r‖s‖v matching the DER, and
// public key recovery from RSV giving pub.
func CheckSecp256k1(t testing.TB, pub *secp256k1.PublicKey, digest []byte, sig keyring.Signature) {
	t.Helper()
	s, err := secpecdsa.ParseDERSignature(sig.Signature)
	if err != nil {
		t.Errorf("secp256k1 DER signature %x: %v", sig.Signature, err)
		return
	}
	sv := s.S()
	if sv.IsOverHalfOrder() {
		t.Errorf("secp256k1 signature %x has high S", sig.Signature)
	}
	if sig.RecoveryID != 0 && sig.RecoveryID != 1 {
		t.Errorf("recovery id = %d, want 0 or 1", sig.RecoveryID)
	}
	if len(sig.RSV) != 65 {
		t.Errorf("RSV is %d bytes, want 65", len(sig.RSV))
		return
	}
	r := s.R()
	var rb, sb [32]byte
	r.PutBytes(&rb)
	sv.PutBytes(&sb)
	if !bytes.Equal(sig.RSV[:32], rb[:]) || !bytes.Equal(sig.RSV[32:64], sb[:]) || int(sig.RSV[64]) != sig.RecoveryID {
		t.Errorf("RSV = %s, want r ‖ s ‖ v = %x ‖ %x ‖ %02x", hex.EncodeToString(sig.RSV), rb, sb, sig.RecoveryID)
	}
	compact := append([]byte{27 + sig.RSV[64]}, sig.RSV[:64]...)
	got, _, err := secpecdsa.RecoverCompact(compact, digest)
	if err != nil || !got.IsEqual(pub) {
		t.Errorf("recovering the public key from RSV: err %v, matches = %v", err, err == nil && got.IsEqual(pub))
	}
}

package hd

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"fmt"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"golang.org/x/crypto/ripemd160" //lint:ignore SA1019 BIP32 fingerprints are HASH160 (RIPEMD-160 of SHA-256); no other package offers it.
)

// Curve is one of the three curves SLIP-10 defines derivation for.
type Curve uint8

const (
	// Secp256k1 is BIP32's curve; SLIP-10 derivation on it is BIP32's.
	Secp256k1 Curve = iota + 1
	// P256 is NIST P-256 (SLIP-10's "nist256p1").
	P256
	// Ed25519 is the Edwards curve of RFC 8032, hardened derivation only.
	Ed25519
)

// String is the curve's name as the package's errors and docs/hd.md use it.
func (c Curve) String() string {
	switch c {
	case Secp256k1:
		return "secp256k1"
	case P256:
		return "P-256"
	case Ed25519:
		return "ed25519"
	}
	return fmt.Sprintf("Curve(%d)", uint8(c))
}

func (c Curve) valid() bool { return c == Secp256k1 || c == P256 || c == Ed25519 }

// hmacKey is SLIP-10's "Curve" string, the HMAC key of master key
// generation.
func (c Curve) hmacKey() []byte {
	switch c {
	case Secp256k1:
		return []byte("Bitcoin seed")
	case P256:
		return []byte("Nist256p1 seed")
	}
	return []byte("ed25519 seed")
}

// validScalar reports whether k is a private key of the curve: 0 < k < n
// for the Weierstrass curves, anything for ed25519 (an RFC 8032 seed).
func (c Curve) validScalar(k *[32]byte) bool {
	switch c {
	case Secp256k1:
		return secp256k1ValidScalar(k)
	case P256:
		return p256ValidScalar(k)
	}
	return true
}

// addScalars sets out = il + k mod n, false if the child key is invalid.
func (c Curve) addScalars(il, k, out *[32]byte) bool {
	if c == Secp256k1 {
		return secp256k1AddScalars(il, k, out)
	}
	return p256AddScalars(il, k, out)
}

// pubFromPriv returns ser_P(point(k)): the SEC1 compressed point for the
// Weierstrass curves, 0x00 || the RFC 8032 public key for ed25519 (SLIP-10's
// encoding, which makes every serialized public key 33 bytes).
func (c Curve) pubFromPriv(k *[32]byte) [33]byte {
	var out [33]byte
	switch c {
	case Secp256k1:
		// decred's scalar base multiplication is variable-time ("NonConst");
		// it is the one the project's secp256k1 signing already uses.
		var s secp256k1.ModNScalar
		var p secp256k1.JacobianPoint
		s.SetBytes(k)
		secp256k1.ScalarBaseMultNonConst(&s, &p)
		s.Zero()
		p.ToAffine()
		out[0] = 2 | byte(p.Y.IsOddBit())
		p.X.PutBytesUnchecked(out[1:])
	case P256:
		// crypto/ecdh is the standard library's constant-time, non-deprecated
		// scalar-base multiplication; it keeps its own copy of k, which it
		// does not let us wipe.
		priv, err := ecdh.P256().NewPrivateKey(k[:])
		if err != nil {
			panic("hd: P-256 private key out of range after validation")
		}
		u := priv.PublicKey().Bytes() // 0x04 || X || Y
		out[0] = 2 | u[64]&1
		copy(out[1:], u[1:33])
	case Ed25519:
		priv := ed25519.NewKeyFromSeed(k[:])
		copy(out[1:], priv[32:])
		clear(priv)
	}
	return out
}

// addPoint returns ser_P(point(il) + K), the public child step. valid is
// false if il >= n or the sum is the point at infinity (SLIP-10 CKDpub
// step 5: retry); err is set if K is not a point of the curve, which the
// constructors of ExtendedPublicKey rule out. Only public data flows
// through it.
func (c Curve) addPoint(il *[32]byte, pub *[33]byte) (out [33]byte, valid bool, err error) {
	badKey := errorf(ErrPublicKey, "the parent %v public key is not a point of the curve", c)
	switch c {
	case Secp256k1:
		parent, err := secp256k1.ParsePubKey(pub[:])
		if err != nil {
			return out, false, badKey
		}
		var s secp256k1.ModNScalar
		if s.SetBytes(il) != 0 {
			return out, false, nil
		}
		var p, q, r secp256k1.JacobianPoint
		parent.AsJacobian(&q)
		secp256k1.ScalarBaseMultNonConst(&s, &p)
		secp256k1.AddNonConst(&p, &q, &r)
		if r.Z.IsZero() || (r.X.IsZero() && r.Y.IsZero()) {
			return out, false, nil
		}
		r.ToAffine()
		out[0] = 2 | byte(r.Y.IsOddBit())
		r.X.PutBytesUnchecked(out[1:])
		return out, true, nil
	case P256:
		curve := elliptic.P256()
		px, py := elliptic.UnmarshalCompressed(curve, pub[:])
		if px == nil {
			return out, false, badKey
		}
		if !p256LessThanN(il) {
			return out, false, nil
		}
		// crypto/elliptic's Curve methods are deprecated as a low-level
		// API, and are the standard library's only point addition; since
		// Go 1.19 they run on the same constant-time nistec code as
		// crypto/ecdh. Public data only: I_L here comes from an xpub.
		//lint:ignore SA1019 point addition on P-256; see above.
		ax, ay := curve.ScalarBaseMult(il[:])
		//lint:ignore SA1019 point addition on P-256; see above.
		x, y := curve.Add(ax, ay, px, py)
		if x.Sign() == 0 && y.Sign() == 0 {
			return out, false, nil
		}
		copy(out[:], elliptic.MarshalCompressed(curve, x, y))
		return out, true, nil
	}
	return out, false, errorf(ErrUnsupported, "public derivation on %v", c)
}

// p256LessThanN reports il < n (public data: no need for constant time,
// but the limb code is there).
func p256LessThanN(il *[32]byte) bool {
	l := limbsFromBytes(il)
	_, lt := l.sub(&p256N)
	return lt == 1
}

// validPub reports whether b is the compressed SEC1 encoding of a point
// of a Weierstrass curve (not the point at infinity, which SEC1 writes as
// one byte). ed25519 keys are never parsed from outside: they have no
// public derivation.
func (c Curve) validPub(b []byte) bool {
	if len(b) != 33 || (b[0] != 2 && b[0] != 3) {
		return false
	}
	switch c {
	case Secp256k1:
		_, err := secp256k1.ParsePubKey(b)
		return err == nil
	case P256:
		x, _ := elliptic.UnmarshalCompressed(elliptic.P256(), b)
		return x != nil
	}
	return false
}

// hash160 is RIPEMD-160(SHA-256(b)), BIP32's key identifier.
func hash160(b []byte) [20]byte {
	s := sha256.Sum256(b)
	h := ripemd160.New()
	h.Write(s[:])
	var out [20]byte
	h.Sum(out[:0])
	return out
}

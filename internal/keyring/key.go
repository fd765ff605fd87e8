package keyring

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Algorithm names a signature algorithm as it appears in keyrings and in the
// HTTP API.
type Algorithm string

// The supported algorithms.
const (
	Ed25519        Algorithm = "ed25519"
	ECDSAP256      Algorithm = "ecdsa-p256"
	ECDSASecp256k1 Algorithm = "ecdsa-secp256k1"
)

// The request kinds a key signs: a whole message, or a precomputed digest.
// Policies (and the audit trail) name them.
const (
	KindMessage = "message"
	KindDigest  = "digest"
)

// Algorithms lists the supported algorithms.
func Algorithms() []Algorithm { return []Algorithm{Ed25519, ECDSAP256, ECDSASecp256k1} }

func (a Algorithm) valid() bool {
	switch a {
	case Ed25519, ECDSAP256, ECDSASecp256k1:
		return true
	}
	return false
}

// DigestSize is the digest length the ECDSA algorithms sign (SHA-256 sized).
const DigestSize = 32

// Signature is the result of a signing operation.
type Signature struct {
	// Signature is 64 bytes for ed25519, ASN.1 DER for the ECDSA algorithms
	// (with low S for ecdsa-secp256k1).
	Signature []byte
	// RecoveryID is the public key recovery id of an ecdsa-secp256k1
	// signature, computed after low-S normalisation: 0 or 1 (2 or 3 only if
	// R.x ≥ the group order, which has probability about 2^-127). It is -1
	// for the other algorithms.
	RecoveryID int
	// RSV is r‖s‖v (65 bytes, v = RecoveryID) for ecdsa-secp256k1, as
	// go-ethereum's crypto.Sign returns it; nil for the other algorithms.
	RSV []byte
}

// KeyInfo is the public description of a key, shaped for GET /v1/keys.
type KeyInfo struct {
	ID        string    `json:"id"`
	Algorithm Algorithm `json:"algorithm"`
	// PublicKeyPEM is the PEM "PUBLIC KEY" (SubjectPublicKeyInfo).
	PublicKeyPEM string `json:"public_key_pem"`
	// EthereumAddress is "0x" + 40 hex digits in EIP-55 mixed case, for
	// ecdsa-secp256k1 keys only.
	EthereumAddress string `json:"ethereum_address,omitempty"`
	// Keyring names the keyring the key came from (not part of the API).
	Keyring string `json:"-"`
}

// Key is one private key from a keyring, ready to sign. It is safe for
// concurrent use. It formats (fmt, slog) with its id and algorithm only.
type Key struct {
	info    KeyInfo
	public  crypto.PublicKey
	spkiDER []byte
	priv    privateKey
	guard   guard
	policed bool       // its keyring declares clients
	policy  *KeyPolicy // nil: none (no client may use it when policed)
}

// privateKey is the signing half of a Key.
type privateKey interface {
	// sign signs msg (ed25519) or a 32-byte digest (ECDSA).
	sign(msgOrDigest []byte) (Signature, error)
	wipe()
}

// newKey turns an unpacked private key into a Key. It takes ownership of
// raw.scalar (wiping it on return) and checks that an embedded public key,
// if any, matches the private key.
func newKey(id, keyring string, raw rawKey) (*Key, error) {
	defer raw.wipe()
	k := &Key{info: KeyInfo{ID: id, Algorithm: raw.alg, Keyring: keyring}}
	var uncompressed []byte // EC public point, for the embedded-key check
	switch raw.alg {
	case Ed25519:
		priv := ed25519.NewKeyFromSeed(raw.scalar)
		pub := priv.Public().(ed25519.PublicKey)
		if raw.pub != nil && subtle.ConstantTimeCompare(raw.pub, pub) != 1 {
			clear(priv)
			return nil, errors.New("the public key in the PEM doesn't match the private key")
		}
		k.public = pub
		k.priv = &ed25519Private{k: priv}
	case ECDSAP256:
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw.scalar)
		if err != nil {
			return nil, errors.New("private scalar is out of range for P-256")
		}
		k.public = &priv.PublicKey
		k.priv = &p256Private{k: priv}
		uncompressed, err = priv.PublicKey.Bytes()
		if err != nil {
			return nil, fmt.Errorf("encoding P-256 public key: %v", err)
		}
	case ECDSASecp256k1:
		var s secp256k1.ModNScalar
		overflow := s.SetByteSlice(raw.scalar)
		if overflow || s.IsZero() {
			s.Zero()
			return nil, errors.New("private scalar is out of range for secp256k1 (want 1 ≤ d < n)")
		}
		priv := secp256k1.NewPrivateKey(&s)
		s.Zero()
		pub := priv.PubKey()
		k.public = pub
		k.priv = &secp256k1Private{k: priv}
		uncompressed = pub.SerializeUncompressed()
		k.info.EthereumAddress = ethereumAddress(uncompressed)
	default:
		return nil, fmt.Errorf("unsupported algorithm %q", raw.alg)
	}
	if raw.pub != nil && uncompressed != nil && !ecPointMatches(raw.pub, uncompressed) {
		k.priv.wipe()
		return nil, errors.New("the public key in the PEM doesn't match the private key")
	}
	der, err := marshalSPKI(raw.alg, k.public, uncompressed)
	if err != nil {
		k.priv.wipe()
		return nil, err
	}
	k.spkiDER = der
	k.info.PublicKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	k.guard.init()
	return k, nil
}

// ecPointMatches compares an embedded EC point, uncompressed or compressed,
// with the uncompressed point derived from the private key.
func ecPointMatches(embedded, uncompressed []byte) bool {
	switch {
	case len(embedded) == len(uncompressed):
		return bytes.Equal(embedded, uncompressed)
	case len(embedded) == 1+(len(uncompressed)-1)/2:
		parity := uncompressed[len(uncompressed)-1] & 1
		return embedded[0] == 2|parity && bytes.Equal(embedded[1:], uncompressed[1:len(embedded)])
	}
	return false
}

// marshalSPKI encodes a SubjectPublicKeyInfo. crypto/x509 does ed25519 and
// P-256; secp256k1 is built by hand: id-ecPublicKey with the secp256k1 named
// curve and the uncompressed point, as openssl writes it.
func marshalSPKI(alg Algorithm, pub crypto.PublicKey, uncompressed []byte) ([]byte, error) {
	if alg != ECDSASecp256k1 {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("encoding public key: %v", err)
		}
		return der, nil
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidECPublicKey)
			b.AddASN1ObjectIdentifier(oidSecp256k1)
		})
		b.AddASN1BitString(uncompressed)
	})
	return b.Bytes()
}

// ID returns the key's id.
func (k *Key) ID() string { return k.info.ID }

// Algorithm returns the key's algorithm.
func (k *Key) Algorithm() Algorithm { return k.info.Algorithm }

// Keyring returns the name of the keyring the key came from.
func (k *Key) Keyring() string { return k.info.Keyring }

// Info returns the key's public description.
func (k *Key) Info() KeyInfo { return k.info }

// PublicKeyPEM returns the public key as a PEM "PUBLIC KEY" block.
func (k *Key) PublicKeyPEM() string { return k.info.PublicKeyPEM }

// PublicKeyDER returns the DER SubjectPublicKeyInfo.
func (k *Key) PublicKeyDER() []byte { return bytes.Clone(k.spkiDER) }

// EthereumAddress returns the EIP-55 address of an ecdsa-secp256k1 key, or "".
func (k *Key) EthereumAddress() string { return k.info.EthereumAddress }

// Public returns the public key: ed25519.PublicKey, *ecdsa.PublicKey (P-256)
// or *secp256k1.PublicKey (github.com/decred/dcrd/dcrec/secp256k1/v4).
func (k *Key) Public() crypto.PublicKey { return k.public }

// SignMessage signs a whole message: ed25519 signs it as is (RFC 8032),
// the ECDSA algorithms sign its SHA-256.
func (k *Key) SignMessage(msg []byte) (Signature, error) {
	if k.info.Algorithm == Ed25519 {
		return k.sign(msg)
	}
	h := sha256.Sum256(msg)
	return k.sign(h[:])
}

// SignDigest signs a 32-byte digest computed by the caller (SHA-256, or
// for example Keccak-256 for Ethereum). ed25519 refuses with
// ErrDigestNotAllowed; a digest of another length gives ErrInvalidDigest.
func (k *Key) SignDigest(digest []byte) (Signature, error) {
	if err := k.CheckDigest(digest); err != nil {
		return Signature{}, err
	}
	return k.sign(digest)
}

// CheckDigest reports why SignDigest would refuse digest, without
// signing: ErrDigestNotAllowed for ed25519, ErrInvalidDigest for a
// length other than DigestSize. signerd decides (and records) before it
// signs.
func (k *Key) CheckDigest(digest []byte) error {
	if k.info.Algorithm == Ed25519 {
		return fmt.Errorf("key %q: %w: ed25519 signs whole messages (RFC 8032 pure), send the message", k.info.ID, ErrDigestNotAllowed)
	}
	if len(digest) != DigestSize {
		return fmt.Errorf("key %q: %w: got %d bytes, want %d", k.info.ID, ErrInvalidDigest, len(digest), DigestSize)
	}
	return nil
}

func (k *Key) sign(in []byte) (Signature, error) {
	if !k.guard.acquire() {
		return Signature{}, fmt.Errorf("key %q: %w", k.info.ID, ErrDestroyed)
	}
	defer k.guard.release()
	sig, err := k.priv.sign(in)
	if err != nil {
		return Signature{}, fmt.Errorf("key %q: sign: %w", k.info.ID, err)
	}
	return sig, nil
}

// Sign implements crypto.Signer, so a Key can stand in wherever the
// standard library takes one. For ed25519, opts.HashFunc() must be 0 and
// digest is the whole message; for the ECDSA algorithms it must be
// crypto.SHA256 and digest 32 bytes. It returns only the signature bytes
// (DER for ECDSA). rand is ignored: ed25519 and secp256k1 are deterministic
// and P-256 uses crypto/rand.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := crypto.Hash(0)
	if opts != nil {
		h = opts.HashFunc()
	}
	if k.info.Algorithm == Ed25519 {
		if h != 0 {
			return nil, fmt.Errorf("key %q: %w: got a %v digest", k.info.ID, ErrDigestNotAllowed, h)
		}
		sig, err := k.sign(digest)
		return sig.Signature, err
	}
	if h != crypto.SHA256 {
		return nil, fmt.Errorf("key %q: %w: hash %v, want SHA-256 (32 bytes)", k.info.ID, ErrInvalidDigest, h)
	}
	sig, err := k.SignDigest(digest)
	return sig.Signature, err
}

// destroy waits for signatures in flight, then wipes the private key; later
// signing calls fail with ErrDestroyed. It is idempotent.
func (k *Key) destroy() {
	k.guard.destroy(k.priv.wipe)
}

// String returns the key's id and algorithm; the private key shows as REDACTED.
func (k *Key) String() string {
	if k == nil {
		return "keyring.Key(nil)"
	}
	return fmt.Sprintf("keyring.Key{id: %q, algorithm: %s, private_key: REDACTED}", k.info.ID, k.info.Algorithm)
}

// Format makes every fmt verb (%v, %+v, %#v, %x, %d, …) print String.
func (k *Key) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// LogValue logs the key's id and algorithm only.
func (k *Key) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("key_id", k.info.ID),
		slog.String("algorithm", string(k.info.Algorithm)),
		slog.String("private_key", redacted),
	)
}

// guard lets any number of goroutines sign with a key while one destroy
// waits for them to finish before wiping. The hot path is two atomic adds,
// no lock.
type guard struct {
	// state counts signing calls in flight; destroyedBit is set by destroy.
	state    atomic.Int64
	idle     chan struct{} // closed once destroyed and nothing is in flight
	idleOnce sync.Once
	once     sync.Once
}

const destroyedBit = 1 << 62

func (g *guard) init() { g.idle = make(chan struct{}) }

func (g *guard) acquire() bool {
	if g.state.Add(1)&destroyedBit != 0 {
		g.release()
		return false
	}
	return true
}

func (g *guard) release() {
	if g.state.Add(-1) == destroyedBit {
		g.idleOnce.Do(func() { close(g.idle) })
	}
}

func (g *guard) destroy(wipe func()) {
	g.once.Do(func() {
		if g.state.Or(destroyedBit) == 0 {
			g.idleOnce.Do(func() { close(g.idle) })
		}
		<-g.idle
		wipe()
	})
}

const redacted = "REDACTED"

// ed25519Private is an ed25519 private key (seed ‖ public key).
type ed25519Private struct{ k ed25519.PrivateKey }

func (p *ed25519Private) sign(msg []byte) (Signature, error) {
	return Signature{Signature: ed25519.Sign(p.k, msg), RecoveryID: -1}, nil
}

// wipe clears the whole private key; crypto/ed25519's internal cache of the
// expanded key can't be reached (see the package documentation).
func (p *ed25519Private) wipe() { clear(p.k) }

// p256Private is a P-256 private key.
type p256Private struct{ k *ecdsa.PrivateKey }

func (p *p256Private) sign(digest []byte) (Signature, error) {
	der, err := ecdsa.SignASN1(rand.Reader, p.k, digest)
	if err != nil {
		return Signature{}, err
	}
	return Signature{Signature: der, RecoveryID: -1}, nil
}

// wipe clears the words of the big.Int scalar in place. Copies math/big or
// crypto/ecdsa made (its internal cache of the key) can't be reached.
func (p *p256Private) wipe() {
	//lint:ignore SA1019 D is deprecated for reading and writing key values; this only wipes it.
	clear(p.k.D.Bits())
}

// secp256k1Private is a secp256k1 private key.
type secp256k1Private struct{ k *secp256k1.PrivateKey }

func (p *secp256k1Private) sign(digest []byte) (Signature, error) {
	// SignCompact returns [27 + recovery code] ‖ r ‖ s, with RFC 6979 nonces
	// and s already normalised to low S (the recovery code is flipped to
	// match), exactly the computation go-ethereum's crypto.Sign does.
	compact := secpecdsa.SignCompact(p.k, digest, false)
	v := compact[0] - 27
	var r, s secp256k1.ModNScalar
	r.SetByteSlice(compact[1:33])
	s.SetByteSlice(compact[33:65])
	rsv := make([]byte, 65)
	copy(rsv, compact[1:])
	rsv[64] = v
	return Signature{
		Signature:  secpecdsa.NewSignature(&r, &s).Serialize(),
		RecoveryID: int(v),
		RSV:        rsv,
	}, nil
}

func (p *secp256k1Private) wipe() { p.k.Zero() }

// The private key types never print or log their contents.

func (*ed25519Private) String() string             { return redacted }
func (*ed25519Private) GoString() string           { return redacted }
func (*ed25519Private) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }
func (*ed25519Private) LogValue() slog.Value       { return slog.StringValue(redacted) }

func (*p256Private) String() string             { return redacted }
func (*p256Private) GoString() string           { return redacted }
func (*p256Private) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }
func (*p256Private) LogValue() slog.Value       { return slog.StringValue(redacted) }

func (*secp256k1Private) String() string             { return redacted }
func (*secp256k1Private) GoString() string           { return redacted }
func (*secp256k1Private) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }
func (*secp256k1Private) LogValue() slog.Value       { return slog.StringValue(redacted) }

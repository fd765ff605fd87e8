package hd

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
)

// ExtendedKey is a private extended key of SLIP-10 (BIP32 for secp256k1):
// a private key, its chain code, and where it sits in the tree. Its secret
// half (key and chain code) is wiped by Destroy; after that every method
// that needs it returns ErrDestroyed. An ExtendedKey is not safe for
// concurrent use with Destroy.
type ExtendedKey struct {
	meta
	key       [32]byte // parse256 private scalar; for ed25519 the RFC 8032 seed
	chainCode [32]byte
	destroyed bool
}

// ExtendedPublicKey is the public half of an extended key: the public key,
// the chain code and the position. It derives non-hardened children for
// secp256k1 and P-256; for ed25519 it only carries the public root (for
// RootCommitment). Nothing in it is secret in the BIP32 sense, but note
// BIP32's warning: an extended public key and any non-hardened private
// child of it give away the parent private key.
type ExtendedPublicKey struct {
	meta
	chainCode [32]byte
}

// meta is the public part both kinds share.
type meta struct {
	curve    Curve
	depth    uint8
	index    uint32
	parentFP [4]byte
	pub      [33]byte // ser_P: SEC1 compressed, or 0x00 || RFC 8032 key
}

// NewMasterKey derives the master key of a seed of 16 to 64 bytes (SLIP-10
// "Master key generation"): I = HMAC-SHA512(curve string, seed), I_L the
// key and I_R the chain code, retried with HMAC-SHA512(curve string, I)
// while I_L is not a valid key (0 or >= n; never for ed25519).
func NewMasterKey(c Curve, seed []byte) (*ExtendedKey, error) {
	if !c.valid() {
		return nil, errorf(ErrCurve, "%v; want secp256k1, P-256 or ed25519", c)
	}
	if len(seed) < 16 || len(seed) > 64 {
		return nil, errorf(ErrSeedLength, "the seed is %d bytes; SLIP-10 and BIP32 take 16 to 64 bytes (a BIP39 seed is 64)", len(seed))
	}
	i := hmacSHA512(c.hmacKey(), seed)
	defer clear(i[:])
	k := &ExtendedKey{meta: meta{curve: c}}
	for {
		copy(k.key[:], i[:32])
		if c.validScalar(&k.key) {
			break
		}
		next := hmacSHA512(c.hmacKey(), i[:])
		i = next
		clear(next[:])
	}
	copy(k.chainCode[:], i[32:])
	k.pub = c.pubFromPriv(&k.key)
	return k, nil
}

// hmacSHA512 returns HMAC-SHA512(key, data...). The HMAC's internal pads
// hold a copy of the key the standard library does not let us wipe.
func hmacSHA512(key []byte, data ...[]byte) [64]byte {
	m := hmac.New(sha512.New, key)
	for _, d := range data {
		m.Write(d)
	}
	var out [64]byte
	m.Sum(out[:0])
	return out
}

// Child derives the child at index i (SLIP-10 CKDpriv): hardened for
// i >= HardenedOffset, from the private key; normal otherwise, from the
// public key, which ed25519 refuses (ErrHardenedOnly). An invalid child key
// (I_L >= n, or a zero sum) is retried with HMAC(c, 0x01 || I_R || i), as
// SLIP-10 defines it for every curve; for secp256k1 this is BIP32 except in
// a case of probability below 2^-127, where BIP32 leaves the key undefined.
func (k *ExtendedKey) Child(i uint32) (*ExtendedKey, error) {
	if k.destroyed {
		return nil, errorf(ErrDestroyed, "derive child %d: the parent key was destroyed", i)
	}
	if !k.curve.valid() {
		return nil, errorf(ErrCurve, "derive child %d: the key's curve is %v (a zero ExtendedKey?); make keys with NewMasterKey or ParseXPrv", i, k.curve)
	}
	if k.depth == 255 {
		return nil, errorf(ErrDepth, "derive child %d: the parent is at depth 255, the deepest BIP32 can serialize", i)
	}
	var ser [4]byte
	binary.BigEndian.PutUint32(ser[:], i)
	var data []byte
	if Hardened(i) {
		data = append(append([]byte{0}, k.key[:]...), ser[:]...)
	} else {
		if k.curve == Ed25519 {
			return nil, errorf(ErrHardenedOnly, "derive child %d: ed25519 (SLIP-10) derives hardened children only; write the step as %d'", i, i)
		}
		data = append(k.pub[:], ser[:]...)
	}
	defer clear(data)
	c := &ExtendedKey{meta: meta{curve: k.curve, depth: k.depth + 1, index: i, parentFP: k.fingerprint()}}
	I := hmacSHA512(k.chainCode[:], data)
	defer clear(I[:])
	for {
		var il [32]byte
		copy(il[:], I[:32])
		copy(c.chainCode[:], I[32:])
		ok := true
		if k.curve == Ed25519 {
			c.key = il
		} else {
			ok = k.curve.addScalars(&il, &k.key, &c.key)
		}
		clear(il[:])
		if ok {
			break
		}
		I = hmacSHA512(k.chainCode[:], []byte{1}, I[32:], ser[:])
	}
	c.pub = k.curve.pubFromPriv(&c.key)
	return c, nil
}

// Derive follows path from k (k itself for the empty path) and returns the
// key at its end; the intermediate keys are destroyed on the way. k is
// left as it was. path is relative to k: from a master key, it is the
// full path.
func (k *ExtendedKey) Derive(path Path) (*ExtendedKey, error) {
	if k.destroyed {
		return nil, errorf(ErrDestroyed, "derive %v: the key was destroyed", path)
	}
	if len(path) > MaxPathDepth {
		return nil, errorf(ErrPathTooDeep, "derive: the path has %d steps; at most %d are allowed", len(path), MaxPathDepth)
	}
	cur := k.clone()
	for n, i := range path {
		next, err := cur.Child(i)
		cur.Destroy()
		if err != nil {
			return nil, fmt.Errorf("derive %v, step %d: %w", path, n+1, err)
		}
		cur = next
	}
	return cur, nil
}

func (k *ExtendedKey) clone() *ExtendedKey {
	c := *k
	return &c
}

// Destroy wipes the private key and the chain code. It is idempotent.
func (k *ExtendedKey) Destroy() {
	clear(k.key[:])
	clear(k.chainCode[:])
	k.destroyed = true
}

// PrivateKey returns a copy of the private key: the 32-byte big-endian
// scalar for secp256k1 and P-256, the 32-byte RFC 8032 seed for ed25519
// (ed25519.NewKeyFromSeed takes it). The caller wipes it.
func (k *ExtendedKey) PrivateKey() ([]byte, error) {
	if k.destroyed {
		return nil, errorf(ErrDestroyed, "private key: the key was destroyed")
	}
	return append([]byte(nil), k.key[:]...), nil
}

// Public returns the extended public key of k (BIP32's N()).
func (k *ExtendedKey) Public() (*ExtendedPublicKey, error) {
	if k.destroyed {
		return nil, errorf(ErrDestroyed, "public key: the key was destroyed")
	}
	return &ExtendedPublicKey{meta: k.meta, chainCode: k.chainCode}, nil
}

// NewExtendedPublicKey makes an extended public key from a compressed SEC1
// public key and a chain code, as a host receives them for P-256 (which
// has no standard xpub serialization). Its depth, index and parent
// fingerprint are unknown and set to zero; derivation from it does not
// need them.
func NewExtendedPublicKey(c Curve, publicKey, chainCode []byte) (*ExtendedPublicKey, error) {
	if c != Secp256k1 && c != P256 {
		return nil, errorf(ErrUnsupported, "extended public key on %v: only secp256k1 and P-256 derive public children", c)
	}
	if len(chainCode) != 32 {
		return nil, errorf(ErrChainCode, "the chain code is %d bytes; want 32", len(chainCode))
	}
	if !c.validPub(publicKey) {
		return nil, errorf(ErrPublicKey, "the %v public key (%d bytes) is not a compressed SEC1 point of the curve (33 bytes starting 02 or 03)", c, len(publicKey))
	}
	p := &ExtendedPublicKey{meta: meta{curve: c}}
	copy(p.pub[:], publicKey)
	copy(p.chainCode[:], chainCode)
	return p, nil
}

// Child derives the non-hardened child i (SLIP-10 CKDpub), with the same
// retry as ExtendedKey.Child, so that both give the same public key.
func (p *ExtendedPublicKey) Child(i uint32) (*ExtendedPublicKey, error) {
	if !p.curve.valid() {
		return nil, errorf(ErrCurve, "derive public child %d: the key's curve is %v (a zero ExtendedPublicKey?); make keys with NewMasterKey, ParseXPub or NewExtendedPublicKey", i, p.curve)
	}
	if p.curve == Ed25519 {
		return nil, errorf(ErrHardenedOnly, "derive public child %d: ed25519 (SLIP-10) has no public derivation; derive from the private key with hardened steps", i)
	}
	if Hardened(i) {
		return nil, errorf(ErrHardenedChild, "derive public child %d' (hardened): a hardened child needs the parent's private key", i&^HardenedOffset)
	}
	if p.depth == 255 {
		return nil, errorf(ErrDepth, "derive public child %d: the parent is at depth 255, the deepest BIP32 can serialize", i)
	}
	var ser [4]byte
	binary.BigEndian.PutUint32(ser[:], i)
	c := &ExtendedPublicKey{meta: meta{curve: p.curve, depth: p.depth + 1, index: i, parentFP: p.fingerprint()}}
	I := hmacSHA512(p.chainCode[:], p.pub[:], ser[:])
	for {
		var il [32]byte
		copy(il[:], I[:32])
		copy(c.chainCode[:], I[32:])
		pub, ok, err := p.curve.addPoint(&il, &p.pub)
		if err != nil {
			return nil, fmt.Errorf("derive public child %d: %w", i, err)
		}
		if ok {
			c.pub = pub
			return c, nil
		}
		I = hmacSHA512(p.chainCode[:], []byte{1}, I[32:], ser[:])
	}
}

// Derive follows a path of non-hardened steps from p.
func (p *ExtendedPublicKey) Derive(path Path) (*ExtendedPublicKey, error) {
	if len(path) > MaxPathDepth {
		return nil, errorf(ErrPathTooDeep, "derive: the path has %d steps; at most %d are allowed", len(path), MaxPathDepth)
	}
	cur := p
	for n, i := range path {
		next, err := cur.Child(i)
		if err != nil {
			return nil, fmt.Errorf("derive %v, step %d: %w", path, n+1, err)
		}
		cur = next
	}
	if cur == p {
		c := *p
		cur = &c
	}
	return cur, nil
}

// ChainCode returns a copy of the chain code.
func (p *ExtendedPublicKey) ChainCode() []byte { return append([]byte(nil), p.chainCode[:]...) }

// Curve returns the key's curve.
func (m *meta) Curve() Curve { return m.curve }

// Depth is 0 for the master key, 1 for its children, and so on.
func (m *meta) Depth() uint8 { return m.depth }

// Index is the step that derived the key (with HardenedOffset for a
// hardened one); 0 for the master key.
func (m *meta) Index() uint32 { return m.index }

// ParentFingerprint is the first 4 bytes of HASH160 of the parent's
// serialized public key; zero for the master key.
func (m *meta) ParentFingerprint() [4]byte { return m.parentFP }

// Fingerprint is the first 4 bytes of HASH160 of ser_P of the public key
// (for ed25519, of 0x00 || the key, as SLIP-10's vectors compute it).
func (m *meta) Fingerprint() [4]byte { return m.fingerprint() }

func (m *meta) fingerprint() [4]byte {
	h := hash160(m.pub[:])
	return [4]byte(h[:4])
}

// PublicKey returns the public key: 33 bytes of compressed SEC1 for
// secp256k1 and P-256, the 32-byte RFC 8032 key for ed25519.
func (m *meta) PublicKey() []byte {
	if m.curve == Ed25519 {
		return append([]byte(nil), m.pub[1:]...)
	}
	return append([]byte(nil), m.pub[:]...)
}

// describe is the safe text of String, Format and LogValue: curve,
// position and public key fingerprint, nothing secret.
func (m *meta) describe(kind string) string {
	fp := m.fingerprint()
	return fmt.Sprintf("hd.%s{%v depth %d index %s fingerprint %s}", kind, m.curve, m.depth, indexString(m.index), hex.EncodeToString(fp[:]))
}

func indexString(i uint32) string {
	if Hardened(i) {
		return fmt.Sprintf("%d'", i&^HardenedOffset)
	}
	return fmt.Sprint(i)
}

// String describes the key without its private key or chain code. It and
// the three methods below have value receivers so that a key printed by
// value (fmt.Print(*k)) is described too, not dumped field by field. (A
// key inside another struct's unexported field is out of reach: fmt
// prints those raw.)
func (k ExtendedKey) String() string { return k.describe("ExtendedKey") }

// GoString is String, so that %#v shows no secret either.
func (k ExtendedKey) GoString() string { return k.String() }

// Format prints String for every verb (%v, %x, %s, %#v...).
func (k ExtendedKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// LogValue logs String.
func (k ExtendedKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// String describes the public key's place and fingerprint.
func (p ExtendedPublicKey) String() string { return p.describe("ExtendedPublicKey") }

package hd

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
)

// BIP32 serialization: version (4) || depth (1) || parent fingerprint (4)
// || child index (4) || chain code (32) || key data (33: 0x00 || private
// key, or the compressed public key), then Base58Check (a 4-byte double
// SHA-256 checksum). Only mainnet secp256k1 versions are written and read
// (xpub, xprv): they are what Ethereum and Bitcoin wallets exchange; BIP32
// defines no serialization for P-256 or ed25519.
const (
	versionXPub uint32 = 0x0488B21E
	versionXPrv uint32 = 0x0488ADE4
	xkeyLen            = 78
	// maxXKeyText bounds the Base58 text before decoding (82 bytes are
	// 111 or 112 characters).
	maxXKeyText = 120
)

// XPub is the BIP32 serialization of a secp256k1 extended public key
// ("xpub…").
func (p *ExtendedPublicKey) XPub() (string, error) {
	if p.curve != Secp256k1 {
		return "", errorf(ErrUnsupported, "xpub of a %v key: BIP32 serializes secp256k1 keys only; use the public key and chain code", p.curve)
	}
	raw := p.meta.serialize(versionXPub, &p.chainCode, &p.pub)
	return string(base58CheckEncode(raw[:])), nil
}

// XPrv is the BIP32 serialization of a secp256k1 extended private key
// ("xprv…"), as bytes the caller wipes.
func (k *ExtendedKey) XPrv() ([]byte, error) {
	if k.destroyed {
		return nil, errorf(ErrDestroyed, "xprv: the key was destroyed")
	}
	if k.curve != Secp256k1 {
		return nil, errorf(ErrUnsupported, "xprv of a %v key: BIP32 serializes secp256k1 keys only", k.curve)
	}
	var data [33]byte
	copy(data[1:], k.key[:])
	raw := k.meta.serialize(versionXPrv, &k.chainCode, &data)
	clear(data[:])
	out := base58CheckEncode(raw[:])
	clear(raw[:])
	return out, nil
}

func (m *meta) serialize(version uint32, chainCode *[32]byte, data *[33]byte) [xkeyLen]byte {
	var b [xkeyLen]byte
	binary.BigEndian.PutUint32(b[0:], version)
	b[4] = m.depth
	copy(b[5:9], m.parentFP[:])
	binary.BigEndian.PutUint32(b[9:], m.index)
	copy(b[13:45], chainCode[:])
	copy(b[45:], data[:])
	return b
}

// ParseXPub reads a mainnet secp256k1 extended public key. It refuses,
// each with its own error, what BIP32's test vector 5 lists: a bad
// checksum or length, another version (an xprv included), key data that is
// not a compressed point of the curve (private key data included), and a
// depth-0 key with a parent fingerprint or an index.
func ParseXPub(s string) (*ExtendedPublicKey, error) {
	raw, err := decodeXKey([]byte(s))
	if err != nil {
		return nil, err
	}
	version := binary.BigEndian.Uint32(raw[0:])
	switch {
	case version == versionXPrv:
		return nil, errorf(ErrXKeyVersion, "an xprv (private) was given where an xpub (public) extended key is expected")
	case version != versionXPub:
		return nil, errorf(ErrXKeyVersion, "version %08x is not a mainnet xpub (0488b21e); only BIP32 mainnet secp256k1 keys are accepted", version)
	}
	m, err := parseMeta(&raw)
	if err != nil {
		return nil, err
	}
	data := raw[45:]
	if data[0] == 0 {
		return nil, errorf(ErrXKeyKeyData, "the xpub holds private key data (it starts with 00); an xpub holds a compressed public key starting 02 or 03")
	}
	if !Secp256k1.validPub(data) {
		return nil, errorf(ErrXKeyKeyData, "the xpub's key data (starting %02x) is not a compressed secp256k1 point; want 02 or 03 and an x coordinate on the curve", data[0])
	}
	p := &ExtendedPublicKey{meta: m}
	copy(p.pub[:], data)
	copy(p.chainCode[:], raw[13:45])
	return p, nil
}

// ParseXPrv reads a mainnet secp256k1 extended private key, refusing what
// ParseXPub refuses and private keys outside 1..n-1. Its errors never
// repeat the input. The caller wipes s and Destroys the key.
func ParseXPrv(s []byte) (*ExtendedKey, error) {
	raw, err := decodeXKey(s)
	defer clear(raw[:])
	if err != nil {
		return nil, err
	}
	version := binary.BigEndian.Uint32(raw[0:])
	switch {
	case version == versionXPub:
		return nil, errorf(ErrXKeyVersion, "an xpub (public) was given where an xprv (private) extended key is expected")
	case version != versionXPrv:
		return nil, errorf(ErrXKeyVersion, "version %08x is not a mainnet xprv (0488ade4); only BIP32 mainnet secp256k1 keys are accepted", version)
	}
	m, err := parseMeta(&raw)
	if err != nil {
		return nil, err
	}
	if raw[45] != 0 {
		return nil, errorf(ErrXKeyKeyData, "the xprv's key data starts with %02x; private key data starts with 00 (02 and 03 start a public key: an xpub's data under an xprv version)", raw[45])
	}
	k := &ExtendedKey{meta: m}
	copy(k.key[:], raw[46:])
	copy(k.chainCode[:], raw[13:45])
	if !Secp256k1.validScalar(&k.key) {
		k.Destroy()
		return nil, errorf(ErrXKeyKeyData, "the xprv's private key is 0 or not below the curve order n; a secp256k1 private key is in 1..n-1")
	}
	k.pub = Secp256k1.pubFromPriv(&k.key)
	return k, nil
}

func parseMeta(raw *[xkeyLen]byte) (meta, error) {
	m := meta{curve: Secp256k1, depth: raw[4], parentFP: [4]byte(raw[5:9]), index: binary.BigEndian.Uint32(raw[9:])}
	if m.depth == 0 && m.parentFP != [4]byte{} {
		return m, errorf(ErrXKeyZeroDepth, "depth 0 (a master key) with a non-zero parent fingerprint")
	}
	if m.depth == 0 && m.index != 0 {
		return m, errorf(ErrXKeyZeroDepth, "depth 0 (a master key) with a non-zero child index")
	}
	return m, nil
}

// decodeXKey decodes Base58Check text of 78 bytes and checks its checksum.
func decodeXKey(s []byte) ([xkeyLen]byte, error) {
	var out [xkeyLen]byte
	if len(s) > maxXKeyText {
		return out, errorf(ErrXKeyLength, "the extended key is %d characters; BIP32 extended keys are 111", len(s))
	}
	b, err := base58Decode(s)
	defer clear(b)
	if err != nil {
		return out, err
	}
	if len(b) != xkeyLen+4 {
		return out, errorf(ErrXKeyLength, "the extended key decodes to %d bytes; BIP32 extended keys are 82 (78 and a 4-byte checksum)", len(b))
	}
	sum := doubleSHA256(b[:xkeyLen])
	defer clear(sum[:])
	if subtle.ConstantTimeCompare(sum[:4], b[xkeyLen:]) != 1 {
		return out, errorf(ErrXKeyChecksum, "the extended key's checksum does not match: a character is wrong or missing")
	}
	copy(out[:], b)
	return out, nil
}

func doubleSHA256(b []byte) [32]byte {
	s := sha256.Sum256(b)
	return sha256.Sum256(s[:])
}

func base58CheckEncode(payload []byte) []byte {
	sum := doubleSHA256(payload)
	buf := append(append([]byte(nil), payload...), sum[:4]...)
	out := base58Encode(buf)
	clear(buf)
	return out
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

var base58Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, c := range []byte(base58Alphabet) {
		t[c] = int8(i)
	}
	return t
}()

// base58Encode is Bitcoin's Base58 (leading zero bytes become '1').
// Quadratic in the length, which is bounded by its callers.
func base58Encode(b []byte) []byte {
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	digits := make([]byte, 0, len(b)*138/100+1) // base 58, least significant first
	for _, c := range b[zeros:] {
		carry := int(c)
		for i := range digits {
			carry += int(digits[i]) << 8
			digits[i] = byte(carry % 58)
			carry /= 58
		}
		for carry > 0 {
			digits = append(digits, byte(carry%58))
			carry /= 58
		}
	}
	out := make([]byte, zeros+len(digits))
	for i := range zeros {
		out[i] = '1'
	}
	for i, d := range digits {
		out[len(out)-1-i] = base58Alphabet[d]
	}
	clear(digits)
	return out
}

// base58Decode reverses base58Encode; its error names the position of a
// character outside the alphabet, not the character.
func base58Decode(s []byte) ([]byte, error) {
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	var bytesLE []byte // base 256, least significant first
	for pos, c := range s[zeros:] {
		v := base58Index[c]
		if v < 0 {
			clear(bytesLE)
			return nil, errorf(ErrXKeyEncoding, "character %d of the extended key is not in the Base58 alphabet (digits and letters without 0, O, I and l)", zeros+pos+1)
		}
		carry := int(v)
		for i := range bytesLE {
			carry += int(bytesLE[i]) * 58
			bytesLE[i] = byte(carry)
			carry >>= 8
		}
		for carry > 0 {
			bytesLE = append(bytesLE, byte(carry))
			carry >>= 8
		}
	}
	out := make([]byte, zeros+len(bytesLE))
	for i, d := range bytesLE {
		out[len(out)-1-i] = d
	}
	clear(bytesLE)
	return out, nil
}

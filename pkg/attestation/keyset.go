package attestation

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"slices"
	"strings"
)

// KeySetDigestSize is the size of a key set digest (SHA-384).
const KeySetDigestSize = sha512.Size384

// PublicKey is one key of an enclave's key set, as GET /v1/keys lists it.
type PublicKey struct {
	ID string
	// Algorithm is the name /v1/keys gives: "ed25519", "ecdsa-p256" or
	// "ecdsa-secp256k1" (others are hashed as they are).
	Algorithm string
	// SPKI is the DER SubjectPublicKeyInfo (the bytes inside the PEM).
	SPKI []byte
}

// KeySetDigest returns the digest signerd attests in the "keyset" of its
// user_data map: SHA-384 over the keys in ascending byte order of id, each
// written as
//
//	uint16-BE len(id) ‖ id ‖ uint16-BE len(algorithm) ‖ algorithm ‖ uint16-BE len(spki) ‖ spki
//
// The digest of no keys is SHA-384 of the empty string. Two keys with the
// same id, or a field longer than 65535 bytes, are an error: neither can
// be a loaded key set, and the length prefixes must be exact for the
// encoding to be unambiguous. keys is not modified.
func KeySetDigest(keys []PublicKey) ([]byte, error) {
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, func(a, b PublicKey) int { return strings.Compare(a.ID, b.ID) })
	h := sha512.New384()
	var buf []byte
	for i, k := range sorted {
		if i > 0 && sorted[i-1].ID == k.ID {
			return nil, fmt.Errorf("key set: id %q appears twice", k.ID)
		}
		buf = buf[:0]
		for _, f := range []struct {
			name string
			v    []byte
		}{{"id", []byte(k.ID)}, {"algorithm", []byte(k.Algorithm)}, {"spki", k.SPKI}} {
			if len(f.v) > 0xffff {
				return nil, fmt.Errorf("key set: key %q: %s is %d bytes, more than 65535", k.ID, f.name, len(f.v))
			}
			buf = binary.BigEndian.AppendUint16(buf, uint16(len(f.v)))
			buf = append(buf, f.v...)
		}
		h.Write(buf)
	}
	return h.Sum(nil), nil
}

// KeyList is an enclave's key list as GET /v1/keys returns it, to be
// checked against an attestation document (Expect.Keys).
type KeyList struct {
	Keys []PublicKey
	// ClaimedDigest is the list's own keyset_digest, nil when it has
	// none. It is never trusted: Check recomputes the digest from Keys,
	// and refuses a list whose claim differs from its keys.
	ClaimedDigest []byte
}

// maxKeyListJSON bounds what ParseKeyListJSON reads: 4096 keys (the most
// a wire key_list holds) of a few hundred bytes each.
const maxKeyListJSON = 4 << 20

// ParseKeyListJSON parses the JSON body of GET /v1/keys:
//
//	{"keys": [{"id": …, "algorithm": …, "public_key_pem": …}, …], "keyset_digest": HEX}
//
// Fields it does not know are ignored (ethereum_address, and whatever a
// later version adds); those it knows must have their types. Each
// public_key_pem must be exactly one PEM "PUBLIC KEY" block.
func ParseKeyListJSON(b []byte) (*KeyList, error) {
	if len(b) > maxKeyListJSON {
		return nil, fmt.Errorf("key list: %d bytes, more than the %d-byte limit", len(b), maxKeyListJSON)
	}
	var raw struct {
		Keys *[]struct {
			ID           *string `json:"id"`
			Algorithm    *string `json:"algorithm"`
			PublicKeyPEM *string `json:"public_key_pem"`
		} `json:"keys"`
		KeysetDigest *string `json:"keyset_digest"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("key list: want the JSON of GET /v1/keys: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("key list: unexpected data after the JSON object")
	}
	if raw.Keys == nil {
		return nil, fmt.Errorf(`key list: no "keys" array: want the JSON of GET /v1/keys`)
	}
	kl := &KeyList{Keys: make([]PublicKey, 0, len(*raw.Keys))}
	for i, k := range *raw.Keys {
		if k.ID == nil || k.Algorithm == nil || k.PublicKeyPEM == nil {
			return nil, fmt.Errorf("key list: keys[%d]: want id, algorithm and public_key_pem", i)
		}
		spki, err := decodePublicKeyPEM(*k.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("key list: keys[%d] (%q): public_key_pem: %w", i, *k.ID, err)
		}
		kl.Keys = append(kl.Keys, PublicKey{ID: *k.ID, Algorithm: *k.Algorithm, SPKI: spki})
	}
	if raw.KeysetDigest != nil {
		d, err := hex.DecodeString(*raw.KeysetDigest)
		if err != nil || len(d) != KeySetDigestSize {
			return nil, fmt.Errorf("key list: keyset_digest: want %d hex digits, got %q", 2*KeySetDigestSize, *raw.KeysetDigest)
		}
		kl.ClaimedDigest = d
	}
	if _, err := KeySetDigest(kl.Keys); err != nil {
		return nil, fmt.Errorf("key list: %w", err)
	}
	return kl, nil
}

// decodePublicKeyPEM returns the DER inside one PEM PUBLIC KEY block with
// nothing but white space around it.
func decodePublicKeyPEM(s string) ([]byte, error) {
	block, rest := pem.Decode([]byte(s))
	if block == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	if block.Type != "PUBLIC KEY" || len(block.Headers) > 0 {
		return nil, fmt.Errorf("PEM block %q, want PUBLIC KEY (a SubjectPublicKeyInfo) without headers", block.Type)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("data after the PEM block")
	}
	return block.Bytes, nil
}

// describeKeys names the keys for an error message: "id (algorithm)", the
// first ten of them.
func describeKeys(keys []PublicKey) string {
	names := make([]string, 0, min(len(keys), 10))
	for i, k := range keys {
		if i == 10 {
			names = append(names, fmt.Sprintf("and %d more", len(keys)-10))
			break
		}
		names = append(names, fmt.Sprintf("%s (%s)", k.ID, k.Algorithm))
	}
	if len(names) == 0 {
		return "no keys"
	}
	return strings.Join(names, ", ")
}

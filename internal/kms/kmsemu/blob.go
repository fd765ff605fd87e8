package kmsemu

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Ciphertext blob format, version 1:
//
//	magic    "kEMU"    4 bytes
//	version  0x01      1 byte
//	key id   UUID      16 bytes (binary)
//	nonce              12 bytes
//	sealed             AES-256-GCM(key material, nonce, plaintext, aad) with its 16-byte tag
//
// aad = the 21 header bytes (magic, version, key id) || canonical
// encryption context. The canonical context is a big-endian uint32 count,
// then for each pair, sorted by key: uint32 length, key, uint32 length,
// value. Binding the header makes a blob useless under another key id;
// binding the context makes Decrypt with a different context fail, as in
// KMS.
const (
	blobMagic      = "kEMU"
	blobVersion    = 1
	blobHeaderSize = 4 + 1 + 16
	blobNonceSize  = 12
	blobMinSize    = blobHeaderSize + blobNonceSize + 16
)

// errBadBlob is every blob parsing or authentication failure; Decrypt
// answers it as InvalidCiphertextException.
var errBadBlob = errors.New("invalid ciphertext")

// canonicalContext encodes an encryption context for use as AAD.
func canonicalContext(ec map[string]string) []byte {
	keys := make([]string, 0, len(ec))
	for k := range ec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := binary.BigEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		b = binary.BigEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(ec[k])))
		b = append(b, ec[k]...)
	}
	return b
}

func uuidBytes(id string) ([16]byte, error) {
	var out [16]byte
	if !isUUID(id) {
		return out, fmt.Errorf("key id %q is not a UUID", id)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(id, "-", ""))
	if err != nil {
		return out, err
	}
	copy(out[:], b)
	return out, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealBlob encrypts plaintext under k bound to ec.
func sealBlob(rand io.Reader, k *keyRecord, plaintext []byte, ec map[string]string) ([]byte, error) {
	id, err := uuidBytes(k.ID)
	if err != nil {
		return nil, err
	}
	aead, err := gcm(k.Material)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	b := make([]byte, 0, blobMinSize+len(plaintext))
	b = append(b, blobMagic...)
	b = append(b, blobVersion)
	b = append(b, id[:]...)
	nonce := make([]byte, blobNonceSize)
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, fmt.Errorf("reading nonce: %w", err)
	}
	aad := append(b[:blobHeaderSize:blobHeaderSize], canonicalContext(ec)...)
	b = append(b, nonce...)
	return aead.Seal(b, nonce, plaintext, aad), nil
}

// blobKeyID returns the key id a blob names, without authenticating it.
func blobKeyID(blob []byte) (string, error) {
	if len(blob) < blobMinSize {
		return "", fmt.Errorf("%w: %d bytes, shorter than the %d-byte minimum", errBadBlob, len(blob), blobMinSize)
	}
	if string(blob[:4]) != blobMagic {
		return "", fmt.Errorf("%w: not a kmsemu ciphertext (bad magic)", errBadBlob)
	}
	if blob[4] != blobVersion {
		return "", fmt.Errorf("%w: version %d, want %d", errBadBlob, blob[4], blobVersion)
	}
	var id [16]byte
	copy(id[:], blob[5:blobHeaderSize])
	return formatUUID(id), nil
}

// openBlob authenticates and decrypts blob under k with ec.
func openBlob(k *keyRecord, blob []byte, ec map[string]string) ([]byte, error) {
	id, err := blobKeyID(blob)
	if err != nil {
		return nil, err
	}
	if id != k.ID {
		return nil, fmt.Errorf("%w: blob is for key %s, not %s", errBadBlob, id, k.ID)
	}
	aead, err := gcm(k.Material)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	aad := append(blob[:blobHeaderSize:blobHeaderSize], canonicalContext(ec)...)
	nonce := blob[blobHeaderSize : blobHeaderSize+blobNonceSize]
	pt, err := aead.Open(nil, nonce, blob[blobHeaderSize+blobNonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (tampered blob or different encryption context)", errBadBlob)
	}
	return pt, nil
}

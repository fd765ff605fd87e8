package cms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
)

// Open parses envelope, checks that it is addressed to key (its
// subjectKeyIdentifier is SHA-256 of key's SubjectPublicKeyInfo DER) and
// decrypts it. On error the plaintext is nil.
func Open(envelope []byte, key *rsa.PrivateKey) ([]byte, error) {
	env, err := Parse(envelope)
	if err != nil {
		return nil, err
	}
	return env.Decrypt(key)
}

// SubjectKeyIdentifier returns the recipient identifier KMS puts in the
// envelope for a recipient whose attestation document carries spkiDER as its
// public_key: SHA-256 of those exact bytes (not RFC 5280's SHA-1 method).
func SubjectKeyIdentifier(spkiDER []byte) []byte {
	h := sha256.Sum256(spkiDER)
	return h[:]
}

// CheckRecipient reports, without any RSA work, whether the envelope is
// addressed to the public key whose SubjectPublicKeyInfo DER is spkiDER.
// It returns nil or an error of class ErrKeyMismatch.
func (env *Envelope) CheckRecipient(spkiDER []byte) error {
	want := SubjectKeyIdentifier(spkiDER)
	if !bytes.Equal(env.SubjectKeyID, want) {
		return errorf(ErrKeyMismatch, "KeyTransRecipientInfo.rid", env.skiOff,
			"envelope subjectKeyIdentifier %s, key's is %s", hex.EncodeToString(env.SubjectKeyID), hex.EncodeToString(want))
	}
	return nil
}

// Decrypt checks that env is addressed to key, unwraps the content-encryption
// key with RSAES-OAEP(SHA-256, MGF1-SHA-256) and decrypts the content with
// AES-256-CBC, checking and removing the PKCS#7 padding. On error the
// plaintext is nil. The content-encryption key is wiped before returning.
//
// There is no integrity check in EnvelopedData: a changed IV or ciphertext
// block other than the last two can decrypt without error to a different
// plaintext. KMS responses get their integrity from the TLS connection that
// terminates inside the enclave.
func (env *Envelope) Decrypt(key *rsa.PrivateKey) ([]byte, error) {
	if key == nil {
		return nil, errorf(ErrUnsupportedKey, "key", -1, "nil RSA private key")
	}
	if err := checkKeySize(key.N.BitLen()); err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, &Error{Class: ErrUnsupportedKey, Field: "key", Offset: -1, Detail: "cannot encode the public key", Err: err}
	}
	if err := env.CheckRecipient(spki); err != nil {
		return nil, err
	}
	// Parse guarantees these; an Envelope built by hand might not.
	if len(env.IV) != ivSize || len(env.Ciphertext) == 0 || len(env.Ciphertext)%aes.BlockSize != 0 {
		return nil, errorf(ErrMalformed, "Envelope", -1, "IV of %d bytes and ciphertext of %d bytes, want %d and a positive multiple of %d", len(env.IV), len(env.Ciphertext), ivSize, aes.BlockSize)
	}
	if len(env.EncryptedKey) != key.Size() {
		return nil, errorf(ErrKeyDecrypt, "KeyTransRecipientInfo.encryptedKey", env.keyOff, "%d bytes, want %d for an RSA-%d key", len(env.EncryptedKey), key.Size(), key.N.BitLen())
	}
	cek, err := rsa.DecryptOAEP(sha256.New(), nil, key, env.EncryptedKey, nil)
	if err != nil {
		// rsa.ErrDecryption says nothing about the key; keep it for errors.Is.
		return nil, &Error{Class: ErrKeyDecrypt, Field: "KeyTransRecipientInfo.encryptedKey", Offset: env.keyOff, Detail: "RSAES-OAEP(SHA-256, MGF1-SHA-256) failed", Err: err}
	}
	defer clear(cek)
	if len(cek) != cekSize {
		return nil, errorf(ErrKeyDecrypt, "KeyTransRecipientInfo.encryptedKey", env.keyOff, "content-encryption key is %d bytes, want %d for AES-256", len(cek), cekSize)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("cms: AES-256: %w", err) // unreachable: the key is 32 bytes
	}
	out := make([]byte, len(env.Ciphertext))
	cipher.NewCBCDecrypter(block, env.IV).CryptBlocks(out, env.Ciphertext)
	n, ok := unpad(out)
	if !ok {
		clear(out)
		return nil, errorf(ErrPadding, "EncryptedContentInfo.encryptedContent", -1, "decrypted content does not end in valid PKCS#7 padding (wrong key material or corrupted last blocks)")
	}
	clear(out[n:])
	return out[:n:n], nil
}

// unpad returns the length of b without its PKCS#7 padding, in time that
// does not depend on the padding's value. len(b) is a positive multiple of
// the AES block size.
func unpad(b []byte) (int, bool) {
	last := b[len(b)-aes.BlockSize:]
	p := int(last[aes.BlockSize-1])
	good := subtle.ConstantTimeLessOrEq(1, p) & subtle.ConstantTimeLessOrEq(p, aes.BlockSize)
	for i := 0; i < aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i+1, p) // byte aes.BlockSize-1-i is padding
		eq := subtle.ConstantTimeByteEq(last[aes.BlockSize-1-i], byte(p))
		good &= (1 ^ inPad) | eq
	}
	if good != 1 {
		return 0, false
	}
	return len(b) - p, true
}

// checkKeySize accepts the RSA sizes the Nitro tooling knows (AWS's SDK
// enumerates 2048, 3072 and 4096; KMS is only documented for 2048).
func checkKeySize(bits int) error {
	switch bits {
	case 2048, 3072, 4096:
		return nil
	}
	return errorf(ErrUnsupportedKey, "key", -1, "RSA-%d, want RSA-2048, RSA-3072 or RSA-4096", bits)
}

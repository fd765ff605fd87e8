package cms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
)

// MaxSealPlaintext bounds Seal's plaintext so that everything Seal produces
// is under MaxEnvelopeSize and so opens with Open.
const MaxSealPlaintext = 32 << 10

// chunkSize is the size of the OCTET STRING chunks of the constructed
// encryptedContent. KMS's own chunk size is not public (every sample has one
// chunk); 1000 is the segment size of CER (X.690 §9.2) used by streaming
// BER encoders such as BouncyCastle's.
const chunkSize = 1000

// Seal encrypts plaintext for the RSA public key whose SubjectPublicKeyInfo
// DER is recipientSPKI, producing the exact BER shape of KMS's
// CiphertextForRecipient: ContentInfo, EnvelopedData and EncryptedContentInfo
// with indefinite lengths, one KeyTransRecipientInfo v2 identified by
// SHA-256(recipientSPKI) with definite lengths, RSAES-OAEP(SHA-256,
// MGF1-SHA-256) with explicit NULL hash parameters, AES-256-CBC with a
// random IV and a random key, and the content as a constructed [0] of OCTET
// STRING chunks. The recipient key must be RSA-2048, -3072 or -4096.
//
// rand supplies the content-encryption key and IV (use crypto/rand.Reader);
// it is also passed to rsa.EncryptOAEP.
func Seal(rand io.Reader, plaintext []byte, recipientSPKI []byte) ([]byte, error) {
	f, err := sealFields(rand, plaintext, recipientSPKI)
	if err != nil {
		return nil, err
	}
	return f.marshal(), nil
}

// envelopeFields are the parts Seal assembles, each a complete encoding
// except where noted. Tests vary them to build negative cases.
type envelopeFields struct {
	contentInfoType  []byte   // OID contents
	version          int      // EnvelopedData.version
	recipientInfos   [][]byte // RecipientInfo elements
	contentType      []byte   // OID contents
	contentAlgorithm []byte   // AlgorithmIdentifier element
	encryptedContent []byte   // [0] element
}

func sealFields(rand io.Reader, plaintext, recipientSPKI []byte) (*envelopeFields, error) {
	if len(plaintext) > MaxSealPlaintext {
		return nil, errorf(ErrTooLarge, "plaintext", -1, "%d bytes, the limit is %d", len(plaintext), MaxSealPlaintext)
	}
	pubAny, err := x509.ParsePKIXPublicKey(recipientSPKI)
	if err != nil {
		return nil, &Error{Class: ErrUnsupportedKey, Field: "recipient SubjectPublicKeyInfo", Offset: -1, Err: err}
	}
	pub, ok := pubAny.(*rsa.PublicKey)
	if !ok {
		return nil, errorf(ErrUnsupportedKey, "recipient SubjectPublicKeyInfo", -1, "%T, want an RSA public key", pubAny)
	}
	if err := checkKeySize(pub.N.BitLen()); err != nil {
		return nil, err
	}

	cek := make([]byte, cekSize)
	defer clear(cek)
	iv := make([]byte, ivSize)
	if _, err := io.ReadFull(rand, cek); err != nil {
		return nil, fmt.Errorf("cms: reading random content-encryption key: %w", err)
	}
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, fmt.Errorf("cms: reading random IV: %w", err)
	}
	encKey, err := rsa.EncryptOAEP(sha256.New(), rand, pub, cek, nil)
	if err != nil {
		return nil, fmt.Errorf("cms: RSAES-OAEP encrypting the content-encryption key: %w", err)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("cms: AES-256: %w", err) // unreachable: the key is 32 bytes
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	ct := make([]byte, len(plaintext)+pad)
	copy(ct, plaintext)
	for i := len(plaintext); i < len(ct); i++ {
		ct[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, ct)

	var chunks []byte
	for rest := ct; len(rest) > 0; {
		n := min(len(rest), chunkSize)
		chunks = appendDefinite(chunks, tagOctetString, rest[:n])
		rest = rest[n:]
	}
	return &envelopeFields{
		contentInfoType: oidEnvelopedData,
		version:         2,
		recipientInfos: [][]byte{
			marshalKTRI(2, definite(tagContext0, SubjectKeyIdentifier(recipientSPKI)), kmsKeyEncryptionAlgorithm(), encKey),
		},
		contentType:      oidData,
		contentAlgorithm: definite(tagSequence, definite(tagOID, oidAES256CBC), definite(tagOctetString, iv)),
		encryptedContent: indefinite(tagContext0C, chunks),
	}, nil
}

// kmsKeyEncryptionAlgorithm is RSAES-OAEP with SHA-256 and MGF1-SHA-256, the
// SHA-256 AlgorithmIdentifiers carrying explicit NULL parameters as KMS
// writes them (OpenSSL omits the NULL).
func kmsKeyEncryptionAlgorithm() []byte {
	sha256Alg := definite(tagSequence, definite(tagOID, oidSHA256), definite(tagNull))
	return definite(tagSequence,
		definite(tagOID, oidRSAESOAEP),
		definite(tagSequence,
			definite(tagContext0C, sha256Alg),
			definite(tagContext1C, definite(tagSequence, definite(tagOID, oidMGF1), sha256Alg)),
		),
	)
}

// marshalKTRI encodes a KeyTransRecipientInfo; rid and alg are complete
// elements.
func marshalKTRI(version int, rid, alg, encryptedKey []byte) []byte {
	return definite(tagSequence,
		definite(tagInteger, []byte{byte(version)}),
		rid,
		alg,
		definite(tagOctetString, encryptedKey),
	)
}

func (f *envelopeFields) marshal() []byte {
	return indefinite(tagSequence,
		definite(tagOID, f.contentInfoType),
		indefinite(tagContext0C,
			indefinite(tagSequence,
				definite(tagInteger, []byte{byte(f.version)}),
				definite(tagSet, f.recipientInfos...),
				indefinite(tagSequence,
					definite(tagOID, f.contentType),
					f.contentAlgorithm,
					f.encryptedContent,
				),
			),
		),
	)
}

// Package cms opens and builds the CMS EnvelopedData (RFC 5652) that AWS KMS
// returns as CiphertextForRecipient when a request carries a Nitro Enclaves
// attestation document.
//
// Open (the enclave side) parses an envelope, checks it is addressed to the
// caller's RSA key and decrypts it; Parse alone exposes the parts so the
// recipient can be checked before any RSA work. Seal (the KMS emulator side)
// produces the same bytes KMS does.
//
// # The KMS profile
//
// The envelope is a ContentInfo(envelopedData) holding an EnvelopedData v2
// with exactly one KeyTransRecipientInfo v2. The recipient is identified by a
// 32-byte subjectKeyIdentifier: SHA-256 of the SubjectPublicKeyInfo DER put in
// the attestation document's public_key (not RFC 5280's SHA-1 method). The
// content-encryption key is wrapped with RSAES-OAEP, SHA-256 and MGF1-SHA-256,
// empty label; KMS writes the SHA-256 AlgorithmIdentifiers with NULL
// parameters, OpenSSL without, and both are accepted. Absent OAEP parameters
// would mean the SHA-1 defaults and are refused. The content is id-data,
// encrypted with AES-256-CBC, 16-byte IV, PKCS#7 padding. encryptedContent
// comes in two forms, both seen from real KMS: a constructed
// indefinite-length [0] of OCTET STRING chunks, which are concatenated, or a
// primitive [0] IMPLICIT OCTET STRING. Everything else (other algorithms,
// versions, recipient kinds, originatorInfo, unprotectedAttrs, detached
// content) is refused with an error naming the field.
//
// # Why a BER walker of its own
//
// KMS's envelope is BER, not DER: the ContentInfo, its [0], the EnvelopedData,
// the EncryptedContentInfo and the chunked encryptedContent have indefinite
// lengths. encoding/asn1 and golang.org/x/crypto/cryptobyte read DER only, and
// the Go pkcs7 libraries reject the subjectKeyIdentifier recipient form (or,
// converting BER to DER first, lose the chunked form). So the package walks
// BER itself, in cryptobyte's style: bounded input (MaxEnvelopeSize), every
// length checked before slicing, bounded nesting, exact tags, and an error
// for any missing, extra or trailing element.
//
// # Errors
//
// Every error is an *Error whose class (ErrTruncated, ErrVersion,
// ErrAlgorithm, ErrKeyMismatch, ErrPadding, …) can be tested with errors.Is.
// Errors never contain plaintext or key material. The content-encryption key
// is wiped after use.
//
// EnvelopedData has no integrity protection: a changed IV or early
// ciphertext block may decrypt to a different plaintext without error. KMS
// responses get integrity from the TLS session that ends inside the enclave.
package cms

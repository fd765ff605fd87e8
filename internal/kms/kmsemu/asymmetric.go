package kmsemu

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Asymmetric keys: the elliptic-curve signing keys KMS offers on the NIST
// curves (KeySpec ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521 with KeyUsage
// SIGN_VERIFY), each with the one ECDSA algorithm KMS allows for its curve.
// RSA, secp256k1, Ed25519, SM2, ML-DSA and HMAC keys, and ECC keys for
// KEY_AGREEMENT, are refused as not modelled.

const (
	usageEncryptDecrypt = "ENCRYPT_DECRYPT"
	usageSignVerify     = "SIGN_VERIFY"

	messageRaw    = "RAW"
	messageDigest = "DIGEST"
)

// eccSpec is an elliptic-curve key spec the emulator models.
type eccSpec struct {
	curve elliptic.Curve
	// alg is the signing algorithm KMS allows for the curve, hash its hash.
	alg  string
	hash crypto.Hash
}

var eccSpecs = map[string]eccSpec{
	"ECC_NIST_P256": {elliptic.P256(), "ECDSA_SHA_256", crypto.SHA256},
	"ECC_NIST_P384": {elliptic.P384(), "ECDSA_SHA_384", crypto.SHA384},
	"ECC_NIST_P521": {elliptic.P521(), "ECDSA_SHA_512", crypto.SHA512},
}

// The enum value sets of KMS's API model, for the ValidationException AWS
// sends when a request names a value outside them.
var (
	keySpecEnum = []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
		"ECC_SECG_P256K1", "SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2",
		"ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ECC_NIST_EDWARDS25519"}
	keyUsageEnum         = []string{"SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT"}
	signingAlgorithmEnum = []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
		"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
		"ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512", "SM2DSA", "ML_DSA_SHAKE_256",
		"ED25519_SHA_512", "ED25519_PH_SHA_512"}
	messageTypeEnum = []string{"RAW", "DIGEST", "EXTERNAL_MU"}
)

func enumError(value, member string, set []string) *APIError {
	return validationError("Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: [%s]", value, member, strings.Join(set, ", "))
}

// keyType validates CreateKey's KeySpec, CustomerMasterKeySpec (its
// deprecated synonym) and KeyUsage, and returns the key's spec and usage.
func keyType(keySpec, cmkSpec, usage string) (string, string, error) {
	switch {
	case keySpec != "" && cmkSpec != "":
		return "", "", apiErr(CodeValidation, "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec parameter is deprecated. Use KeySpec instead.")
	case keySpec == "":
		keySpec = cmkSpec
	}
	if keySpec == "" {
		keySpec = symmetricDefault
	}
	if usage == "" {
		usage = usageEncryptDecrypt // KMS's default, whatever the spec
	}
	if !slices.Contains(keySpecEnum, keySpec) {
		return "", "", enumError(keySpec, "keySpec", keySpecEnum)
	}
	if !slices.Contains(keyUsageEnum, usage) {
		return "", "", enumError(usage, "keyUsage", keyUsageEnum)
	}
	_, ecc := eccSpecs[keySpec]
	switch {
	case keySpec == symmetricDefault && usage == usageEncryptDecrypt,
		ecc && usage == usageSignVerify:
		return keySpec, usage, nil
	case keySpec == symmetricDefault, ecc && usage == usageEncryptDecrypt:
		return "", "", apiErr(CodeValidation, "KeyUsage %s is not compatible with KeySpec %s", usage, keySpec)
	case ecc:
		return "", "", notModelled("KeyUsage " + usage + " (ECC keys are modelled for SIGN_VERIFY only)")
	}
	return "", "", notModelled("KeySpec " + keySpec + " (only SYMMETRIC_DEFAULT, and ECC_NIST_P256, ECC_NIST_P384 and ECC_NIST_P521 for SIGN_VERIFY)")
}

// spec and usage are the key's KeySpec and KeyUsage. State files written
// before asymmetric keys existed leave both empty: symmetric keys.
func (k *keyRecord) spec() string {
	if k.KeySpec == "" {
		return symmetricDefault
	}
	return k.KeySpec
}

func (k *keyRecord) usage() string {
	if k.KeyUsage == "" {
		return usageEncryptDecrypt
	}
	return k.KeyUsage
}

// newMaterial makes the key material of a new key: 32 random bytes for a
// symmetric key; for an ECC key a private key in PKCS#8 DER. (Go's
// crypto/ecdsa draws from crypto/rand whatever reader it is given, so
// Server.Rand does not make ECC keys or signatures reproducible.)
func (k *keyRecord) newMaterial(rnd io.Reader) error {
	if k.spec() == symmetricDefault {
		k.Material = make(material, 32)
		if _, err := io.ReadFull(rnd, k.Material); err != nil {
			return fmt.Errorf("reading key material: %w", err)
		}
		return nil
	}
	es, ok := eccSpecs[k.spec()]
	if !ok {
		return fmt.Errorf("key spec %s has no key generator", k.spec())
	}
	priv, err := ecdsa.GenerateKey(es.curve, rand.Reader)
	if err != nil {
		return fmt.Errorf("generating %s key: %w", k.spec(), err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encoding %s key: %w", k.spec(), err)
	}
	k.Material, k.private = der, priv
	return nil
}

// loadMaterial checks a key read from the state file, spec, usage and
// material together, and parses an ECC key's private key. Its errors
// never quote the material.
func (k *keyRecord) loadMaterial() error {
	switch es, ecc := eccSpecs[k.spec()]; {
	case k.spec() == symmetricDefault:
		if k.usage() != usageEncryptDecrypt {
			return fmt.Errorf("key usage %q does not go with key spec %s (want ENCRYPT_DECRYPT)", k.usage(), symmetricDefault)
		}
		if len(k.Material) != 32 {
			return fmt.Errorf("material is %d bytes, want 32", len(k.Material))
		}
		return nil
	case ecc:
		if k.usage() != usageSignVerify {
			return fmt.Errorf("key usage %q does not go with key spec %s (want SIGN_VERIFY)", k.usage(), k.spec())
		}
		key, err := x509.ParsePKCS8PrivateKey(k.Material)
		if err != nil {
			return errors.New("material is not a PKCS#8 private key")
		}
		priv, ok := key.(*ecdsa.PrivateKey)
		if !ok || priv.Curve != es.curve {
			return fmt.Errorf("material is not an ECDSA private key on the curve of %s", k.spec())
		}
		k.private = priv
		return nil
	default:
		return fmt.Errorf("key spec %q is not one kmsemu models", k.KeySpec)
	}
}

// algorithms are the key's EncryptionAlgorithms and SigningAlgorithms, as
// DescribeKey and GetPublicKey list them.
func (k *keyRecord) algorithms() (encryption, signing []string) {
	if es, ok := eccSpecs[k.spec()]; ok {
		return nil, []string{es.alg}
	}
	return []string{symmetricDefault}, nil
}

// requireUsage refuses an operation on a key whose KeyUsage is not want,
// with KMS's InvalidKeyUsageException.
func requireUsage(c *call, k *keyRecord, want string) error {
	if k.usage() == want {
		return nil
	}
	c.log.Info("key usage does not allow the operation", "key_id", k.ID, "key_usage", k.usage())
	return apiErr(CodeInvalidKeyUsage, "%s key usage is %s which is not valid for %s.", k.arn(), k.usage(), c.op)
}

// CodeInvalidSignature is Verify's answer to a signature that does not
// verify.
const CodeInvalidSignature = "KMSInvalidSignatureException"

// signRequest is the request of Sign, and the part of Verify's beside
// Signature.
type signRequest struct {
	KeyId            string
	Message          []byte
	MessageType      string
	GrantTokens      []string
	SigningAlgorithm string
	DryRun           *bool
}

// signingKey validates a Sign or Verify request, resolves and authorizes
// its key (action kms:Sign or kms:Verify), and returns the key, its spec
// and the digest to sign or verify. s.mu must be held.
func (s *Server) signingKey(c *call, action string, req *signRequest) (*keyRecord, eccSpec, []byte, error) {
	if err := checkBlob("message", req.Message, 4096); err != nil {
		return nil, eccSpec{}, nil, err
	}
	switch {
	case req.SigningAlgorithm == "":
		return nil, eccSpec{}, nil, required("signingAlgorithm")
	case !slices.Contains(signingAlgorithmEnum, req.SigningAlgorithm):
		return nil, eccSpec{}, nil, enumError(req.SigningAlgorithm, "signingAlgorithm", signingAlgorithmEnum)
	}
	msgType := req.MessageType
	if msgType == "" {
		msgType = messageRaw
	}
	if !slices.Contains(messageTypeEnum, msgType) {
		return nil, eccSpec{}, nil, enumError(msgType, "messageType", messageTypeEnum)
	}
	if err := checkUnmodelled(req.GrantTokens, req.DryRun, ""); err != nil {
		return nil, eccSpec{}, nil, err
	}
	r, err := s.resolveKey(c, "keyId", req.KeyId, true)
	if err != nil {
		return nil, eccSpec{}, nil, err
	}
	extra := map[string][]string{
		"kms:SigningAlgorithm": {req.SigningAlgorithm},
		"kms:MessageType":      {msgType},
	}
	if err := s.authorize(c, action, r, nil, extra); err != nil {
		return nil, eccSpec{}, nil, err
	}
	k := r.key
	if err := requireUsage(c, k, usageSignVerify); err != nil {
		return nil, eccSpec{}, nil, err
	}
	es := eccSpecs[k.spec()]
	if req.SigningAlgorithm != es.alg {
		return nil, eccSpec{}, nil, apiErr(CodeInvalidKeyUsage, "Algorithm %s is incompatible with key spec %s.", req.SigningAlgorithm, k.spec())
	}
	switch msgType {
	case messageRaw:
		h := es.hash.New()
		h.Write(req.Message)
		return k, es, h.Sum(nil), nil
	case messageDigest:
		if len(req.Message) != es.hash.Size() {
			return nil, eccSpec{}, nil, apiErr(CodeValidation, "Digest is invalid length for algorithm %s.", req.SigningAlgorithm)
		}
		return k, es, req.Message, nil
	}
	return nil, eccSpec{}, nil, apiErr(CodeValidation, "Message type %s is incompatible with key spec %s.", msgType, k.spec())
}

func (s *Server) sign(c *call) (any, error) {
	var req signRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, es, digest, err := s.signingKey(c, "kms:Sign", &req)
	if err != nil {
		return nil, err
	}
	sig, err := ecdsa.SignASN1(rand.Reader, k.private, digest)
	if err != nil {
		return nil, fmt.Errorf("signing with key %s: %w", k.ID, err)
	}
	c.log.Info("message signed", "key_id", k.ID, "signing_algorithm", es.alg)
	return map[string]any{"KeyId": k.arn(), "Signature": sig, "SigningAlgorithm": es.alg}, nil
}

func (s *Server) verify(c *call) (any, error) {
	var req struct {
		signRequest
		Signature []byte
	}
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if err := checkBlob("signature", req.Signature, 6144); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, es, digest, err := s.signingKey(c, "kms:Verify", &req.signRequest)
	if err != nil {
		return nil, err
	}
	if !ecdsa.VerifyASN1(&k.private.PublicKey, digest, req.Signature) {
		c.log.Info("signature does not verify", "key_id", k.ID, "signing_algorithm", es.alg)
		return nil, apiErr(CodeInvalidSignature, "The signature does not verify: it was not made with key %s and %s over this message", k.arn(), es.alg)
	}
	return map[string]any{"KeyId": k.arn(), "SignatureValid": true, "SigningAlgorithm": es.alg}, nil
}

func (s *Server) getPublicKey(c *call) (any, error) {
	var req keyIDRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if err := checkUnmodelled(req.GrantTokens, nil, ""); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resolveKey(c, "keyId", req.KeyId, true)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(c, "kms:GetPublicKey", r, nil, nil); err != nil {
		return nil, err
	}
	k := r.key
	if k.private == nil {
		return nil, apiErr(CodeUnsupportedOperation, "%s is a symmetric key: GetPublicKey is not supported for symmetric keys", k.arn())
	}
	spki, err := x509.MarshalPKIXPublicKey(&k.private.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encoding the public key of %s: %w", k.ID, err)
	}
	_, signing := k.algorithms()
	return map[string]any{
		"KeyId":                 k.arn(),
		"PublicKey":             spki,
		"CustomerMasterKeySpec": k.spec(),
		"KeySpec":               k.spec(),
		"KeyUsage":              k.usage(),
		"SigningAlgorithms":     signing,
	}, nil
}

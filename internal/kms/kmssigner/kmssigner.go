// Package kmssigner signs messages with an asymmetric AWS KMS key: a
// keyring signer (`kms:KEY`) whose private key never leaves KMS, each use
// logged there.
//
// The key must be ECC_NIST_P256 with KeyUsage SIGN_VERIFY; signatures are
// ECDSA_SHA_256, ASN.1 DER, over SHA-256 of the message, as crypto/ecdsa's
// VerifyASN1, openssl dgst -sha256 -verify and aws kms verify --message-type
// RAW check them. [New] reads the public key once (GetPublicKey) and pins
// the key ARN KMS answered with; [Signer.Sign] sends the SHA-256 digest
// (MessageType DIGEST, so messages of any length can be signed), names the
// pinned ARN, and verifies the answer against the pinned public key before
// returning it, so a Signer never hands out a signature its Public key
// does not verify.
package kmssigner

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// API is the part of a KMS client a Signer calls; the aws-sdk-go-v2
// *kms.Client satisfies it.
type API interface {
	GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, optFns ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
	Sign(ctx context.Context, in *kms.SignInput, optFns ...func(*kms.Options)) (*kms.SignOutput, error)
}

// DefaultTimeout bounds each KMS call, the client's retries included, when
// the caller's context has no deadline.
const DefaultTimeout = 30 * time.Second

// The one key type and algorithm a Signer accepts.
const (
	KeySpec          = types.KeySpecEccNistP256
	KeyUsage         = types.KeyUsageTypeSignVerify
	SigningAlgorithm = types.SigningAlgorithmSpecEcdsaSha256
)

// createKeyHint is how to make a key a Signer accepts.
const createKeyHint = "create one with: aws kms create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY"

// Signer signs with one KMS key. It is safe for concurrent use.
type Signer struct {
	api    API
	keyID  string
	keyARN string
	pub    *ecdsa.PublicKey
}

// New returns a Signer for the key keyID names: a key id, key ARN, alias
// name (alias/NAME) or alias ARN, as KMS resolves them. It calls
// GetPublicKey (the caller needs kms:GetPublicKey) and refuses any key but
// an ECC_NIST_P256 SIGN_VERIFY key that offers ECDSA_SHA_256. The Signer
// then uses the key ARN KMS answered with, so an alias moved to another
// key later does not change what it signs with.
func New(ctx context.Context, api API, keyID string) (*Signer, error) {
	if keyID == "" {
		return nil, errors.New("kms signer: no key named: want a key id, key ARN, alias/NAME or alias ARN")
	}
	if strings.ContainsAny(keyID, " \t\r\n") {
		return nil, fmt.Errorf("kms signer: key %q contains white space: want a key id, key ARN, alias/NAME or alias ARN", keyID)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	out, err := api.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && (ae.ErrorCode() == "UnsupportedOperationException" || ae.ErrorCode() == "InvalidKeyUsageException") {
			return nil, fmt.Errorf("kms signer: %s is not an asymmetric signing key (%w); a keyring signer needs an %s key with %s: %s", keyID, err, KeySpec, KeyUsage, createKeyHint)
		}
		return nil, fmt.Errorf("kms signer: GetPublicKey %s: %w", keyID, err)
	}
	arn := aws.ToString(out.KeyId)
	if !isKeyARN(arn) {
		return nil, fmt.Errorf("kms signer: GetPublicKey %s answered KeyId %q, not a key ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/ID)", keyID, arn)
	}
	if out.KeySpec != KeySpec || out.KeyUsage != KeyUsage {
		return nil, fmt.Errorf("kms signer: %s (%s) has KeySpec %s and KeyUsage %s; a keyring signer needs %s with %s: %s",
			keyID, arn, out.KeySpec, out.KeyUsage, KeySpec, KeyUsage, createKeyHint)
	}
	if !slices.Contains(out.SigningAlgorithms, SigningAlgorithm) {
		return nil, fmt.Errorf("kms signer: %s (%s) offers signing algorithms %v, not %s", keyID, arn, out.SigningAlgorithms, SigningAlgorithm)
	}
	pk, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("kms signer: the public key GetPublicKey answered for %s is not a DER SubjectPublicKeyInfo: %v", arn, err)
	}
	pub, ok := pk.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("kms signer: the public key GetPublicKey answered for %s is a %T, not a P-256 ECDSA key, though KMS said %s", arn, pk, out.KeySpec)
	}
	return &Signer{api: api, keyID: keyID, keyARN: arn, pub: pub}, nil
}

// Public returns the key's public key, an *ecdsa.PublicKey on P-256.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// KeyID is the key as New was given it (an id, ARN or alias).
func (s *Signer) KeyID() string { return s.keyID }

// KeyARN is the ARN of the key the Signer signs with.
func (s *Signer) KeyARN() string { return s.keyARN }

// String names the key for messages: kms:KEY, with its ARN when KEY was
// not the ARN.
func (s *Signer) String() string {
	if s.keyID == s.keyARN {
		return "kms:" + s.keyARN
	}
	return "kms:" + s.keyID + " (" + s.keyARN + ")"
}

// Sign returns an ECDSA_SHA_256 signature of message, ASN.1 DER, made by
// KMS (the caller needs kms:Sign on the key). The signature is checked
// against Public before it is returned.
func (s *Signer) Sign(ctx context.Context, message []byte) ([]byte, error) {
	digest := sha256.Sum256(message)
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	out, err := s.api.Sign(ctx, &kms.SignInput{
		KeyId:            aws.String(s.keyARN),
		Message:          digest[:],
		MessageType:      types.MessageTypeDigest,
		SigningAlgorithm: SigningAlgorithm,
	})
	if err != nil {
		return nil, fmt.Errorf("kms signer: Sign with %s: %w", s, err)
	}
	switch {
	case aws.ToString(out.KeyId) != s.keyARN:
		return nil, fmt.Errorf("kms signer: Sign with %s: KMS answered for key %q, not %s", s, aws.ToString(out.KeyId), s.keyARN)
	case out.SigningAlgorithm != SigningAlgorithm:
		return nil, fmt.Errorf("kms signer: Sign with %s: KMS answered with signing algorithm %s, not %s", s, out.SigningAlgorithm, SigningAlgorithm)
	case !ecdsa.VerifyASN1(s.pub, digest[:], out.Signature):
		return nil, fmt.Errorf("kms signer: Sign with %s: the signature KMS answered does not verify under the key's public key", s)
	}
	return out.Signature, nil
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// isKeyARN reports whether s has the form of a KMS key ARN.
func isKeyARN(s string) bool {
	parts := strings.SplitN(s, ":", 6)
	return len(parts) == 6 && parts[0] == "arn" && parts[1] != "" && parts[2] == "kms" && parts[3] != "" && parts[4] != "" &&
		strings.HasPrefix(parts[5], "key/") && len(parts[5]) > len("key/")
}

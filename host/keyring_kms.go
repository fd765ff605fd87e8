package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/enclave-signer/enclave-signer/pkg/keyringsig"
)

// kmsSigner is a keyring signer whose private key stays in KMS: an
// ECC_NIST_P256 SIGN_VERIFY key, used with ECDSA_SHA_256 on the
// statement's bytes (MessageType RAW: KMS hashes them, and CloudTrail logs
// each use).
type kmsSigner struct {
	e    *env
	conn *kmsConn
	arn  string
	pub  crypto.PublicKey
}

// openKMSSigner looks the key up (GetPublicKey) and checks it can sign
// keyring statements.
func openKMSSigner(e *env, cmd, key string, awsf *awsFlags) (keyringsig.Signer, error) {
	conn, err := newKMSConn(e, awsf)
	if err != nil {
		return nil, fmt.Errorf("%s: kms:%s: %w", cmd, key, err)
	}
	out, err := kmsCall(e, conn, "get-public-key", func(ctx context.Context, c *kms.Client) (*kms.GetPublicKeyOutput, error) {
		return c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(key)})
	})
	if err != nil {
		return nil, fmt.Errorf("%s: kms:%s: %w", cmd, key, err)
	}
	switch {
	case out.KeySpec != types.KeySpecEccNistP256:
		return nil, fmt.Errorf("%s: kms:%s is a %s key; a keyring signer is an ECC_NIST_P256 key (aws kms create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY)", cmd, key, out.KeySpec)
	case out.KeyUsage != types.KeyUsageTypeSignVerify:
		return nil, fmt.Errorf("%s: kms:%s has key usage %s, want SIGN_VERIFY", cmd, key, out.KeyUsage)
	case !slices.Contains(out.SigningAlgorithms, types.SigningAlgorithmSpecEcdsaSha256):
		return nil, fmt.Errorf("%s: kms:%s does not offer ECDSA_SHA_256", cmd, key)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%s: kms:%s: GetPublicKey returned no DER SubjectPublicKeyInfo: %v", cmd, key, err)
	}
	return &kmsSigner{e: e, conn: conn, arn: aws.ToString(out.KeyId), pub: pub}, nil
}

func (s *kmsSigner) Public() crypto.PublicKey { return s.pub }

func (s *kmsSigner) Sign(_ context.Context, message []byte) ([]byte, error) {
	out, err := kmsCall(s.e, s.conn, "sign", func(ctx context.Context, c *kms.Client) (*kms.SignOutput, error) {
		return c.Sign(ctx, &kms.SignInput{
			KeyId: aws.String(s.arn), Message: message,
			MessageType: types.MessageTypeRaw, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256,
		})
	})
	if err != nil {
		return nil, err
	}
	return out.Signature, nil
}

package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/enclave-signer/enclave-signer/internal/keyringsig"
	"github.com/enclave-signer/enclave-signer/internal/kms/kmssigner"
)

// kmsKeyringSigner is a kms:KEY keyring signer: internal/kms/kmssigner (the
// private key stays in KMS, each use logged there), with KMS's refusals
// explained as every KMS-calling command explains them.
type kmsKeyringSigner struct {
	e    *env
	conn *kmsConn
	s    *kmssigner.Signer
}

// openKMSSigner looks the key up (GetPublicKey) and checks it can sign
// keyring statements: ECC_NIST_P256, SIGN_VERIFY, ECDSA_SHA_256.
func openKMSSigner(e *env, cmd, key string, awsf *awsFlags) (keyringsig.Signer, error) {
	conn, err := newKMSConn(e, awsf)
	if err != nil {
		return nil, fmt.Errorf("%s: kms:%s: %w", cmd, key, err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, kmsCallTimeout)
	defer cancel()
	s, err := kmssigner.New(ctx, conn.client, key)
	if err != nil {
		return nil, fmt.Errorf("%s: kms:%s: %w", cmd, key, explainKMS("get-public-key", conn, err))
	}
	return &kmsKeyringSigner{e: e, conn: conn, s: s}, nil
}

func (k *kmsKeyringSigner) Public() crypto.PublicKey { return k.s.Public() }

func (k *kmsKeyringSigner) Sign(ctx context.Context, message []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, kmsCallTimeout)
	defer cancel()
	sig, err := k.s.Sign(ctx, message)
	if err != nil {
		return nil, explainKMS("sign", k.conn, err)
	}
	return sig, nil
}

// explainKMS turns KMS's refusals (AccessDenied, NotFound, credentials)
// and unreachable endpoints into kmsError's messages and hints;
// kmssigner's own errors (a key of the wrong spec, an answer that does
// not verify) stay as they are.
func explainKMS(op string, conn *kmsConn, err error) error {
	var api smithy.APIError
	var oe *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &api):
		if c := api.ErrorCode(); c == "UnsupportedOperationException" || c == "InvalidKeyUsageException" {
			return err
		}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &oe), errors.As(err, &dnsErr),
		strings.Contains(err.Error(), "get credentials"), strings.Contains(err.Error(), "failed to refresh cached credentials"):
	default:
		return err
	}
	return kmsError(op, conn, err)
}

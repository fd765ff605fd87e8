package kms

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/enclave-signer/enclave-signer/internal/cms"
	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// RecipientKeyBits is the RSA key size KMS documents for the attestation
// document's public key.
const RecipientKeyBits = 2048

// KeySource keeps one fresh RSA-2048 key generated ahead, since generating
// one takes tens of milliseconds (hundreds at the tail) and should not sit
// on the unseal path. Every key is handed out once and never reused.
type KeySource struct {
	ready chan *rsa.PrivateKey
	errs  chan error
}

// NewKeySource starts generating keys in the background until ctx ends.
func NewKeySource(ctx context.Context) *KeySource {
	s := &KeySource{ready: make(chan *rsa.PrivateKey), errs: make(chan error, 1)}
	go func() {
		for {
			k, err := rsa.GenerateKey(rand.Reader, RecipientKeyBits)
			if err != nil {
				select {
				case s.errs <- err:
				default:
				}
				return
			}
			select {
			case s.ready <- k:
			case <-ctx.Done():
				return
			}
		}
	}()
	return s
}

// Take returns a key no one else has had.
func (s *KeySource) Take(ctx context.Context) (*rsa.PrivateKey, error) {
	select {
	case k := <-s.ready:
		return k, nil
	case err := <-s.errs:
		return nil, fmt.Errorf("generate recipient key: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Recipient is an attested key: the private key only this enclave holds,
// and the attestation document carrying its public key, which KMS checks
// against the key policy before encrypting its answer to that key.
type Recipient struct {
	key      *rsa.PrivateKey
	document []byte
	// PCR0, PCRs (every PCR in the document, by index) and DebugMode come
	// from the document, for error messages.
	PCR0      []byte
	PCRs      map[int][]byte
	DebugMode bool
	// Timestamp is the document's timestamp: the NSM's clock when it
	// attested, which the host cannot set (signerd checks keyrings'
	// validity windows against it).
	Timestamp time.Time
}

// NewRecipient attests key's public key with the NSM.
func NewRecipient(mod nsm.Module, key *rsa.PrivateKey) (*Recipient, error) {
	if key.N.BitLen() != RecipientKeyBits {
		return nil, fmt.Errorf("recipient key is RSA-%d, KMS takes RSA-%d", key.N.BitLen(), RecipientKeyBits)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	doc, err := nsm.Attest(mod, nsm.AttestRequest{PublicKey: spki})
	if err != nil {
		return nil, err
	}
	parsed, err := attestation.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("own attestation document: %w", err)
	}
	return &Recipient{key: key, document: doc, PCR0: parsed.PCRs[0], PCRs: parsed.PCRs, DebugMode: parsed.DebugMode(), Timestamp: parsed.Timestamp}, nil
}

// Document returns the attestation document sent to KMS.
func (r *Recipient) Document() []byte { return r.document }

func (r *Recipient) info() *types.RecipientInfo {
	return &types.RecipientInfo{AttestationDocument: r.document, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}
}

// open takes the plaintext out of a CiphertextForRecipient envelope.
func (r *Recipient) open(op string, envelope, plaintext []byte) ([]byte, error) {
	if len(plaintext) > 0 {
		clear(plaintext)
		return nil, fmt.Errorf("kms %s: the response carries Plaintext although a Recipient was sent: refusing it (is the endpoint really KMS?)", op)
	}
	if len(envelope) == 0 {
		return nil, fmt.Errorf("kms %s: the response has no CiphertextForRecipient", op)
	}
	pt, err := cms.Open(envelope, r.key)
	if err != nil {
		return nil, fmt.Errorf("kms %s: open CiphertextForRecipient: %w", op, err)
	}
	return pt, nil
}

// DecryptInput is what Decrypt needs besides the recipient.
type DecryptInput struct {
	CiphertextBlob    []byte
	EncryptionContext map[string]string
	// KeyID is optional for symmetric ciphertext, which names its key.
	// When it is set, KMS decrypts only a ciphertext made under that key
	// and answers any other with IncorrectKeyException.
	KeyID string
}

// DecryptOutput is what Decrypt returns.
type DecryptOutput struct {
	// Plaintext is the decrypted bytes. The caller owns it and must clear
	// it.
	Plaintext []byte
	// KeyARN is the ARN of the key KMS decrypted with, from its answer
	// (Decrypt's KeyId). The answer comes over TLS that ends in the
	// enclave, so whoever relays it cannot change it.
	KeyARN string
}

// Decrypt decrypts in.CiphertextBlob with KMS, which encrypts the plaintext
// to r.
func (c *Client) Decrypt(ctx context.Context, in DecryptInput, r *Recipient) (*DecryptOutput, error) {
	out, err := c.decrypt(ctx, in, r)
	if err != nil {
		return nil, err
	}
	pt, err := r.open("decrypt", out.CiphertextForRecipient, out.Plaintext)
	if err != nil {
		return nil, err
	}
	return &DecryptOutput{Plaintext: pt, KeyARN: deref(out.KeyId)}, nil
}

// CiphertextKey asks KMS which key in.CiphertextBlob is under: a Decrypt
// without KeyId (in.KeyID is ignored), whose answer names the key. The
// plaintext, which KMS encrypts to r, is dropped unopened: the caller
// learns the key's ARN, nothing of what the ciphertext holds. It is for
// explaining a ciphertext that the keys the caller accepts refused.
func (c *Client) CiphertextKey(ctx context.Context, in DecryptInput, r *Recipient) (string, error) {
	in.KeyID = ""
	out, err := c.decrypt(ctx, in, r)
	if err != nil {
		return "", err
	}
	clear(out.Plaintext) // never set with a Recipient; cleared if a non-KMS did
	if deref(out.KeyId) == "" {
		return "", errors.New("kms decrypt: the answer names no key (KeyId)")
	}
	return deref(out.KeyId), nil
}

// decrypt makes the Decrypt call.
func (c *Client) decrypt(ctx context.Context, in DecryptInput, r *Recipient) (*awskms.DecryptOutput, error) {
	if err := c.checkCredentials(); err != nil {
		return nil, fmt.Errorf("kms decrypt: %w", err)
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	req := &awskms.DecryptInput{CiphertextBlob: in.CiphertextBlob, EncryptionContext: in.EncryptionContext, Recipient: r.info()}
	if in.KeyID != "" {
		req.KeyId = &in.KeyID
	}
	start := time.Now()
	out, err := c.api.Decrypt(ctx, req)
	if err != nil {
		c.log.Warn("kms call failed", "op", "Decrypt", "key_id", in.KeyID, "duration", time.Since(start), "error", err)
		return nil, c.wrap("decrypt", err, r)
	}
	c.log.Info("kms call", "op", "Decrypt", "key_id", in.KeyID, "key_arn", deref(out.KeyId), "duration", time.Since(start))
	return out, nil
}

// GenerateDataKey returns a new data key encrypted under keyID
// (CiphertextBlob) and, in the clear only to r, its plaintext.
func (c *Client) GenerateDataKey(ctx context.Context, keyID string, encryptionContext map[string]string, r *Recipient) (plaintext, ciphertextBlob []byte, err error) {
	if err := c.checkCredentials(); err != nil {
		return nil, nil, fmt.Errorf("kms generate data key: %w", err)
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	out, err := c.api.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{
		KeyId: &keyID, KeySpec: types.DataKeySpecAes256, EncryptionContext: encryptionContext, Recipient: r.info(),
	})
	if err != nil {
		return nil, nil, c.wrap("generate data key", err, r)
	}
	pt, err := r.open("generate data key", out.CiphertextForRecipient, out.Plaintext)
	if err != nil {
		return nil, nil, err
	}
	return pt, out.CiphertextBlob, nil
}

// GenerateRandom returns n random bytes from KMS, encrypted to r in transit.
func (c *Client) GenerateRandom(ctx context.Context, n int32, r *Recipient) ([]byte, error) {
	if err := c.checkCredentials(); err != nil {
		return nil, fmt.Errorf("kms generate random: %w", err)
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	out, err := c.api.GenerateRandom(ctx, &awskms.GenerateRandomInput{NumberOfBytes: &n, Recipient: r.info()})
	if err != nil {
		return nil, c.wrap("generate random", err, r)
	}
	return r.open("generate random", out.CiphertextForRecipient, out.Plaintext)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// pcr0Hex formats the PCR0 a recipient presented.
func (r *Recipient) pcr0Hex() string {
	if r == nil || r.PCR0 == nil {
		return "unknown"
	}
	return hex.EncodeToString(r.PCR0)
}

package kmsemu

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/cms"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// AttestationVerifier checks a Recipient's attestation document as KMS
// does and seals answers to its public key. Its Open method is what
// Server.OpenRecipient takes.
type AttestationVerifier struct {
	// Roots are the trusted attestation roots; nil means the AWS Nitro
	// Enclaves root only. signer kms-emulator trusts the AWS root plus each
	// --trust-root (the simulator's root under signer dev).
	Roots *x509.CertPool
	// MaxAge bounds how old a document may be. AWS documents no limit; the
	// leaf certificate's three hours are the hard bound, and 5 minutes
	// (the zero value's meaning) is what clients are commonly told.
	MaxAge time.Duration
	// AllowedKeyBits are the RSA sizes accepted in public_key; nil means
	// 2048 only, the one size KMS documents.
	AllowedKeyBits []int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives why a document was refused; nil discards.
	Log *slog.Logger
}

// RootsWithAWS returns a pool of the AWS Nitro Enclaves root and extra.
func RootsWithAWS(extra ...*x509.Certificate) *x509.CertPool {
	p := attestation.AWSRoots()
	for _, c := range extra {
		p.AddCert(c)
	}
	return p
}

// Open verifies r's attestation document. A document that does not parse,
// or lacks an RSA public key, is a ValidationException; one whose
// signature, chain or age is wrong is an AccessDeniedException, as a
// request without a valid document never meets a RecipientAttestation
// condition. The reason is logged.
func (v *AttestationVerifier) Open(ctx context.Context, r RecipientInfo) (*AttestedRecipient, error) {
	log := v.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	maxAge := v.MaxAge
	if maxAge == 0 {
		maxAge = 5 * time.Minute
	}
	doc, err := attestation.Parse(r.AttestationDocument)
	if err != nil {
		log.Warn("recipient attestation document refused", "why", err.Error())
		return nil, validationError("Recipient.AttestationDocument is not a valid Nitro attestation document: %v", err)
	}
	if _, err := v.recipientKey(doc); err != nil {
		log.Warn("recipient attestation document refused", "module_id", doc.ModuleID, "why", err.Error())
		return nil, validationError("Recipient.AttestationDocument: %v", err)
	}
	if err := doc.Verify(attestation.VerifyOptions{Roots: v.Roots, CurrentTime: now, MaxAge: maxAge}); err != nil {
		log.Warn("recipient attestation document refused", "module_id", doc.ModuleID, "why", err.Error())
		class := "invalid"
		switch {
		case errors.Is(err, attestation.ErrBadSignature):
			class = "bad signature"
		case errors.Is(err, attestation.ErrUntrustedRoot):
			class = "untrusted root"
		case errors.Is(err, attestation.ErrCertificateExpired):
			class = "expired certificate"
		case errors.Is(err, attestation.ErrTooOld):
			class = "too old"
		}
		return nil, apiErr(CodeAccessDenied, "The attestation document in the request is not valid (%s)", class)
	}
	keys := map[string][]string{}
	for _, i := range doc.PCRIndexes() {
		keys["kms:RecipientAttestation:PCR"+strconv.Itoa(i)] = []string{hex.EncodeToString(doc.PCRs[i])}
	}
	if p0, ok := doc.PCRs[0]; ok {
		keys["kms:RecipientAttestation:ImageSha384"] = []string{hex.EncodeToString(p0)}
	}
	log.Info("recipient attestation document verified", "module_id", doc.ModuleID, "pcr0", doc.PCRHex(0), "debug_mode", doc.DebugMode())
	spki := doc.PublicKey
	return &AttestedRecipient{
		ConditionKeys: keys,
		Seal: func(plaintext []byte) ([]byte, error) {
			return cms.Seal(rand.Reader, plaintext, spki)
		},
	}, nil
}

func (v *AttestationVerifier) recipientKey(doc *attestation.Document) (*rsa.PublicKey, error) {
	if doc.PublicKey == nil {
		return nil, errors.New("public_key is null: KMS needs the enclave's RSA public key there")
	}
	k, err := x509.ParsePKIXPublicKey(doc.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("public_key is not a DER SubjectPublicKeyInfo: %v", err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public_key is a %T, KMS needs RSA", k)
	}
	allowed := v.AllowedKeyBits
	if allowed == nil {
		allowed = []int{2048}
	}
	for _, b := range allowed {
		if pub.N.BitLen() == b {
			return pub, nil
		}
	}
	return nil, fmt.Errorf("public_key is RSA-%d, want RSA-%v", pub.N.BitLen(), allowed)
}

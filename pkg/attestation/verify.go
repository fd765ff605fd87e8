package attestation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// VerifyOptions configures Verify. The zero value verifies against the AWS
// Nitro Enclaves root at the current time with no age limit.
type VerifyOptions struct {
	// Roots are the trusted roots; nil means the AWS Nitro Enclaves root only.
	Roots *x509.CertPool
	// CurrentTime is when every certificate must be valid; zero means now.
	// To re-verify a stored document, pass its own Timestamp.
	CurrentTime time.Time
	// MaxAge, when positive, rejects a document whose timestamp is more than
	// MaxAge before CurrentTime, or more than MaxAge after it.
	MaxAge time.Duration
}

// Verify parses b and verifies it: the certificate chain from the leaf
// through cabundle to a trusted root, valid at the verification time, and
// the ES384 signature over the COSE Sig_structure.
func Verify(b []byte, opts VerifyOptions) (*Document, error) {
	d, err := Parse(b)
	if err != nil {
		return nil, err
	}
	if err := d.Verify(opts); err != nil {
		return nil, err
	}
	return d, nil
}

// Verify verifies a parsed document; see the package function Verify.
func (d *Document) Verify(opts VerifyOptions) error {
	now := opts.CurrentTime
	if now.IsZero() {
		now = time.Now()
	}
	roots := opts.Roots
	if roots == nil {
		roots = AWSRoots()
	}
	if opts.MaxAge > 0 {
		if age := now.Sub(d.Timestamp); age > opts.MaxAge {
			return &Error{Class: ErrTooOld, Field: "timestamp", Detail: fmt.Sprintf("document is %s old, the limit is %s", age.Round(time.Second), opts.MaxAge)}
		} else if -age > opts.MaxAge {
			return &Error{Class: ErrTooOld, Field: "timestamp", Detail: fmt.Sprintf("document is dated %s in the future", (-age).Round(time.Second))}
		}
	}

	leaf, err := x509.ParseCertificate(d.Certificate)
	if err != nil {
		return &Error{Class: ErrMalformed, Field: "certificate", Err: err}
	}
	inter := x509.NewCertPool()
	for i, der := range d.CABundle {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return &Error{Class: ErrMalformed, Field: fmt.Sprintf("cabundle[%d]", i), Err: err}
		}
		// cabundle[0] is the root; a trust anchor must come from Roots, so
		// the document's copy is only ever an intermediate candidate, and a
		// self-signed root there leads nowhere unless Roots holds it.
		if err := checkCA(c); err != nil {
			return &Error{Class: ErrInvalidChain, Field: fmt.Sprintf("cabundle[%d]", i), Detail: c.Subject.String(), Err: err}
		}
		inter.AddCert(c)
	}
	if err := checkLeaf(leaf); err != nil {
		return &Error{Class: ErrInvalidChain, Field: "certificate", Detail: leaf.Subject.String(), Err: err}
	}

	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		var invalid x509.CertificateInvalidError
		var unknown x509.UnknownAuthorityError
		switch {
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			return &Error{Class: ErrCertificateExpired, Field: "certificate chain", Detail: "at " + now.UTC().Format(time.RFC3339), Err: err}
		case errors.As(err, &unknown):
			return &Error{Class: ErrUntrustedRoot, Field: "cabundle", Err: err}
		default:
			return &Error{Class: ErrInvalidChain, Field: "certificate chain", Err: err}
		}
	}
	for _, chain := range chains {
		for _, c := range chain[1:] {
			if err := checkCA(c); err != nil {
				return &Error{Class: ErrInvalidChain, Field: "certificate chain", Detail: c.Subject.String(), Err: err}
			}
		}
	}

	if err := d.checkSignature(leaf.PublicKey.(*ecdsa.PublicKey)); err != nil {
		return err
	}
	return nil
}

// checkLeaf enforces the leaf profile every real document has: an end-entity
// P-384 key allowed to sign.
func checkLeaf(c *x509.Certificate) error {
	if c.BasicConstraintsValid && c.IsCA {
		return errors.New("the signing certificate is a CA")
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("the signing certificate lacks the digitalSignature key usage")
	}
	return checkP384(c)
}

// checkCA enforces what an issuing certificate must be. Go's x509 checks
// basic constraints for intermediates too; checking here as well keeps the
// rule independent of library defaults (the class of CVE-2025-64186).
func checkCA(c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return errors.New("an issuing certificate is not a CA (basicConstraints CA:FALSE or absent)")
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("an issuing certificate lacks the keyCertSign key usage")
	}
	return checkP384(c)
}

func checkP384(c *x509.Certificate) error {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("key is %T, want ECDSA P-384", c.PublicKey)
	}
	if pub.Curve != elliptic.P384() {
		return fmt.Errorf("key is on %s, want P-384", pub.Curve.Params().Name)
	}
	return nil
}

// sigStructure returns the COSE Sig_structure that ES384 signs:
// ["Signature1", protected, external_aad = h”, payload].
func sigStructure(protected, payload []byte) []byte {
	b, err := cbor.Marshal([]any{"Signature1", protected, []byte{}, payload})
	if err != nil {
		panic(err) // only byte and text strings: cannot fail
	}
	return b
}

func (d *Document) checkSignature(pub *ecdsa.PublicKey) error {
	digest := sha512.Sum384(sigStructure(d.protected, d.payload))
	r := new(big.Int).SetBytes(d.signature[:48])
	s := new(big.Int).SetBytes(d.signature[48:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return &Error{Class: ErrBadSignature, Field: "signature", Detail: "ES384 over the COSE Sig_structure with the leaf certificate's key"}
	}
	return nil
}

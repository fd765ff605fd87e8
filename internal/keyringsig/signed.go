package keyringsig

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Header is the first line of a signature file.
const Header = "enclave-signer keyring signature v1"

// Bounds of a signature file.
const (
	// MaxSignatures is the most signatures one file carries.
	MaxSignatures = 16
	// MaxSignedSize bounds a signature file.
	MaxSignedSize = 16 << 10
)

// Signature is one signer's signature over a statement's bytes.
type Signature struct {
	Signer SignerKey
	// Sig is 64 bytes for ed25519, ASN.1 DER for ecdsa-p256.
	Sig []byte
}

// Signed is a signature file: a statement and the signatures over its
// bytes. It travels next to the keyring (KEYRING.sig), as text:
//
//	enclave-signer keyring signature v1
//	statement BASE64
//	signature VALUE BASE64
//	…
//
// Every line ends with a line feed (no carriage returns, no blank lines,
// no spaces other than the single separators); BASE64 is standard base64
// with padding (statement: the statement's bytes; signature: the
// signature's bytes); VALUE is the signer's key as signerd pins it. There
// are 0 to 16 signature lines; one with none is a statement prepared for
// signing elsewhere (for example with aws kms sign), which no one accepts
// yet. A signature line can be appended to the file with a shell's echo.
type Signed struct {
	Statement  *Statement
	statement  []byte
	Signatures []Signature
}

// FormatError is a signature file that does not parse: the line (1-based;
// 0 for the whole file) and what was wrong. It never quotes the file.
type FormatError struct {
	Line int
	Err  error
}

func (e *FormatError) Error() string {
	if e.Line == 0 {
		return "keyring signature file: " + e.Err.Error()
	}
	return fmt.Sprintf("keyring signature file: line %d: %v", e.Line, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

// NewSigned returns a signature file for s with no signatures yet.
func NewSigned(s *Statement) (*Signed, error) {
	b, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	return &Signed{Statement: s, statement: b}, nil
}

// StatementBytes returns the statement's bytes: the message every signer
// signs. The caller must not modify them.
func (f *Signed) StatementBytes() []byte { return f.statement }

// Add appends a signature after checking it: its shape, that it verifies
// over the statement, and that the file has no signature of that signer
// yet.
func (f *Signed) Add(sig Signature) error {
	if sig.Signer.IsZero() {
		return errors.New("add signature: no signer key")
	}
	if err := checkSignatureShape(sig.Signer.Algorithm(), sig.Sig); err != nil {
		return fmt.Errorf("add signature of %s: %v", sig.Signer, err)
	}
	if !sig.Signer.Verify(f.statement, sig.Sig) {
		return fmt.Errorf("add signature: it does not verify over the statement with %s", sig.Signer)
	}
	for _, s := range f.Signatures {
		if s.Signer.Equal(sig.Signer) {
			return fmt.Errorf("add signature: the file already carries a signature of %s", sig.Signer)
		}
	}
	if len(f.Signatures) >= MaxSignatures {
		return fmt.Errorf("add signature: the file already carries %d signatures, the most it may", MaxSignatures)
	}
	f.Signatures = append(f.Signatures, Signature{Signer: sig.Signer, Sig: bytes.Clone(sig.Sig)})
	return nil
}

// Marshal returns the file's text.
func (f *Signed) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(Header + "\n")
	b.WriteString("statement " + base64.StdEncoding.EncodeToString(f.statement) + "\n")
	for _, s := range f.Signatures {
		b.WriteString("signature " + s.Signer.String() + " " + base64.StdEncoding.EncodeToString(s.Sig) + "\n")
	}
	return b.Bytes()
}

// ParseSigned parses a signature file strictly (see Signed): Marshal of
// the result gives b back. It checks the statement and the shape of each
// signature, not whether the signatures verify (Policy.Verify does). The
// same signer may appear twice; Policy.Verify counts it once. On error
// the result is nil and the error a *FormatError or *StatementError.
func ParseSigned(b []byte) (*Signed, error) {
	if len(b) > MaxSignedSize {
		return nil, &FormatError{Err: fmt.Errorf("%d bytes, want at most %d", len(b), MaxSignedSize)}
	}
	if len(b) == 0 {
		return nil, &FormatError{Err: errors.New("empty")}
	}
	if b[len(b)-1] != '\n' {
		return nil, &FormatError{Err: errors.New("does not end with a line feed")}
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if lines[0] != Header {
		return nil, &FormatError{Line: 1, Err: fmt.Errorf("want %q", Header)}
	}
	if len(lines) < 2 {
		return nil, &FormatError{Line: 2, Err: errors.New("missing, want statement BASE64")}
	}
	rest, ok := strings.CutPrefix(lines[1], "statement ")
	if !ok {
		return nil, &FormatError{Line: 2, Err: errors.New("want statement BASE64")}
	}
	stmt, err := decodeBase64(rest)
	if err != nil {
		return nil, &FormatError{Line: 2, Err: fmt.Errorf("statement: %v", err)}
	}
	s, err := ParseStatement(stmt)
	if err != nil {
		return nil, err
	}
	f := &Signed{Statement: s, statement: stmt}
	if n := len(lines) - 2; n > MaxSignatures {
		return nil, &FormatError{Err: fmt.Errorf("%d signatures, want at most %d", n, MaxSignatures)}
	}
	for i, line := range lines[2:] {
		n := i + 3
		rest, ok := strings.CutPrefix(line, "signature ")
		if !ok {
			return nil, &FormatError{Line: n, Err: errors.New("want signature VALUE BASE64")}
		}
		value, sigB64, ok := strings.Cut(rest, " ")
		if !ok {
			return nil, &FormatError{Line: n, Err: errors.New("want signature VALUE BASE64: two fields after signature, one space apart")}
		}
		k, err := ParseSignerKey(value)
		if err != nil {
			return nil, &FormatError{Line: n, Err: err}
		}
		sig, err := decodeBase64(sigB64)
		if err != nil {
			return nil, &FormatError{Line: n, Err: fmt.Errorf("signature: %v", err)}
		}
		if err := checkSignatureShape(k.Algorithm(), sig); err != nil {
			return nil, &FormatError{Line: n, Err: err}
		}
		f.Signatures = append(f.Signatures, Signature{Signer: k, Sig: sig})
	}
	return f, nil
}

// decodeBase64 decodes standard base64 with padding and nothing else:
// encoding/base64 skips CR and LF even in strict mode, so they are
// refused first (one encoding per value, for Marshal to give the input
// back).
func decodeBase64(s string) ([]byte, error) {
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("want standard base64 with padding")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("want standard base64 with padding")
	}
	return b, nil
}

package signreq

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// Signer signs requests as one client: what internal/wireclient (and through it pkg/client) and the signer
// commands hold. It keeps a copy of the secret, which Destroy zeroes; it
// never prints it.
type Signer struct {
	audience string
	client   string
	secret   []byte
	// now is the clock (tests); rand the nonces' source.
	now  func() time.Time
	rand io.Reader
}

// NewSigner returns a Signer for client under audience. It copies secret,
// which must be SecretSize bytes.
func NewSigner(audience, client string, secret []byte) (*Signer, error) {
	if len(secret) != SecretSize {
		return nil, fmt.Errorf("client secret is %d bytes, want %d (64 hex digits in the secret file)", len(secret), SecretSize)
	}
	if err := checkClient(client); err != nil {
		return nil, err
	}
	p := Params{Audience: audience, Client: client, Method: "POST", Path: "/"}
	if err := p.check(); err != nil {
		return nil, err
	}
	return &Signer{audience: audience, client: client, secret: append([]byte(nil), secret...), now: time.Now, rand: rand.Reader}, nil
}

// Client returns the client id.
func (s *Signer) Client() string { return s.client }

// Audience returns the audience the Signer signs for.
func (s *Signer) Audience() string { return s.audience }

// Authorization returns the Authorization header value for a request
// made now with a fresh random nonce.
func (s *Signer) Authorization(method, path string, body []byte) (string, error) {
	p := Params{Audience: s.audience, Client: s.client, Timestamp: s.now().Unix(), Method: method, Path: path, Body: body}
	if _, err := io.ReadFull(s.rand, p.Nonce[:]); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return Authorization(s.secret, &p)
}

// Destroy zeroes the Signer's copy of the secret; it signs nothing after.
func (s *Signer) Destroy() {
	clear(s.secret)
	s.secret = nil
}

// String names the client, never the secret.
func (s *Signer) String() string {
	return fmt.Sprintf("signreq.Signer{client=%s audience=%s secret=REDACTED}", s.client, s.audience)
}

// GoString is String, so %#v redacts too.
func (s *Signer) GoString() string { return s.String() }

// Format makes every verb print String.
func (s *Signer) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// LogValue renders the Signer without its secret.
func (s *Signer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("client", s.client), slog.String("audience", s.audience))
}

// ParseSecret reads a client secret file's contents: 64 hex digits (either
// case), optionally followed by one newline. The error never quotes the
// contents.
func ParseSecret(data []byte) ([]byte, error) {
	n := len(data)
	if n > 0 && data[n-1] == '\n' {
		n--
		if n > 0 && data[n-1] == '\r' {
			n--
		}
	}
	if n != 2*SecretSize {
		return nil, fmt.Errorf("want %d hex digits (a %d-byte secret) and a newline, got %d bytes", 2*SecretSize, SecretSize, len(data))
	}
	out := make([]byte, SecretSize)
	for i := range out {
		hi, ok1 := fromHexAnyCase(data[2*i])
		lo, ok2 := fromHexAnyCase(data[2*i+1])
		if !ok1 || !ok2 {
			clear(out)
			bad := 2 * i
			if ok1 {
				bad++
			}
			return nil, fmt.Errorf("want hex digits only (0-9, a-f), found another character at position %d", bad+1)
		}
		out[i] = hi<<4 | lo
	}
	return out, nil
}

func fromHexAnyCase(c byte) (byte, bool) {
	if 'A' <= c && c <= 'F' {
		c += 'a' - 'A'
	}
	return fromHex(c)
}

// ReadSecretFile reads a client secret file (ParseSecret). The caller
// zeroes the secret when done with it.
func ReadSecretFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("client secret file: %w", err)
	}
	defer clear(data)
	s, err := ParseSecret(data)
	if err != nil {
		return nil, fmt.Errorf("client secret file %s: %w", path, err)
	}
	return s, nil
}

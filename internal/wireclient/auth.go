package wireclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// Credentials authenticate sign requests as one client of a keyring that
// declares clients (docs/keyring.md): each request then carries the
// ES-HMAC-SHA256 Authorization (docs/protocol.md, Authenticated sign
// requests), and signerd checks it before anything is signed.
type Credentials struct {
	// Client is the client id.
	Client string
	// Secret is the client's 32-byte secret (a secret file holds it as 64
	// hex digits: ReadSecretFile). It is copied; zero yours when done.
	Secret []byte
	// Audience is the audience of the client's keyring. Empty: the
	// enclave's status is asked once, and its audience used if the loaded
	// keyrings have exactly one.
	Audience string
}

// ReadSecretFile reads a client secret file: 64 hex digits and a newline,
// as signer keyring new writes it. Zero the secret when done with it.
func ReadSecretFile(path string) ([]byte, error) { return signreq.ReadSecretFile(path) }

// RequestSigner signs HTTP sign requests to the shim as one client. It
// holds a copy of the secret, which Destroy zeroes; it never prints it.
type RequestSigner struct{ s *signreq.Signer }

// NewRequestSigner returns a RequestSigner for c, whose Audience must be
// set (AudienceFromStatus reads it from the shim's GET /v1/status).
func NewRequestSigner(c Credentials) (*RequestSigner, error) {
	if c.Audience == "" {
		return nil, errors.New("credentials: audience is empty: want the audience of the client's keyring (GET /v1/status lists them under auth.audiences)")
	}
	s, err := signreq.NewSigner(c.Audience, c.Client, c.Secret)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	return &RequestSigner{s: s}, nil
}

// Authorize sets req's Authorization header for body, which must be the
// exact bytes req sends. It signs req.Method and the request target as
// Go's HTTP client sends it (req.URL.RequestURI()).
func (r *RequestSigner) Authorize(req *http.Request, body []byte) error {
	h, err := r.s.Authorization(req.Method, req.URL.RequestURI(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", h)
	return nil
}

// Authorization returns the header value for a request of method to path
// (the request target as sent) with body.
func (r *RequestSigner) Authorization(method, path string, body []byte) (string, error) {
	return r.s.Authorization(method, path, body)
}

// Destroy zeroes the secret.
func (r *RequestSigner) Destroy() { r.s.Destroy() }

// String names the client, never the secret.
func (r *RequestSigner) String() string { return r.s.String() }

// SignBody returns the JSON body of a sign request: {"message": BASE64}
// or {"digest": BASE64}.
func SignBody(data []byte, isDigest bool) []byte {
	field := `{"message":"`
	if isDigest {
		field = `{"digest":"`
	}
	out := make([]byte, 0, len(field)+base64.StdEncoding.EncodedLen(len(data))+2)
	out = append(out, field...)
	out = base64.StdEncoding.AppendEncode(out, data)
	return append(out, `"}`...)
}

// authState is a Client's credentials: the signer, made once the audience
// is known.
type authState struct {
	creds Credentials

	mu     sync.Mutex
	signer *signreq.Signer
}

// signer returns the Signer, asking the enclave for the audience the
// first time if Credentials.Audience is empty.
func (c *Client) signer(ctx context.Context) (*signreq.Signer, error) {
	a := c.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.signer != nil {
		return a.signer, nil
	}
	aud := a.creds.Audience
	if aud == "" {
		st, err := c.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("sign: learning the audience from the enclave's status: %w", err)
		}
		if st.Auth == nil || len(st.Auth.Audiences) != 1 {
			var auds []string
			if st.Auth != nil {
				auds = st.Auth.Audiences
			}
			return nil, fmt.Errorf("sign: the enclave reports audiences [%s]: set Credentials.Audience to the one of client %q's keyring", strings.Join(auds, ", "), a.creds.Client)
		}
		aud = st.Auth.Audiences[0]
	}
	s, err := signreq.NewSigner(aud, a.creds.Client, a.creds.Secret)
	if err != nil {
		return nil, fmt.Errorf("sign: credentials: %w", err)
	}
	clear(a.creds.Secret) // the Signer holds its own copy now
	a.creds.Secret = nil
	a.signer = s
	return s, nil
}

// authSign signs req as the client: the same request the shim would
// forward for POST /v1/keys/{id}/sign.
func (c *Client) authSign(ctx context.Context, req *wire.SignRequest) (*wire.SignResponse, error) {
	s, err := c.signer(ctx)
	if err != nil {
		return nil, err
	}
	body := SignBody(req.Data, req.IsDigest)
	path := signreq.SignPath(req.KeyID)
	h, err := s.Authorization("POST", path, body)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return c.AuthSign(ctx, &wire.AuthSignRequest{Method: "POST", Path: path, Body: body, Authorization: h})
}

// destroy zeroes the credentials.
func (a *authState) destroy() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.creds.Secret)
	a.creds.Secret = nil
	if a.signer != nil {
		a.signer.Destroy()
	}
}

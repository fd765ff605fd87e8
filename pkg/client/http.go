package client

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// RequestSigner signs HTTP sign requests to the shim (POST
// /v1/keys/{id}/sign) as one client, for applications that reach the
// enclave through the shim's HTTP API rather than the wire protocol. It
// holds a copy of the secret, which Destroy zeroes; it never prints it.
type RequestSigner struct{ s *signreq.Signer }

// NewRequestSigner returns a RequestSigner for c, whose Audience must be
// set (the shim's GET /v1/status lists the audiences under
// auth.audiences).
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

// SignBody returns the JSON body of an HTTP sign request:
// {"message": BASE64} or, with isDigest, {"digest": BASE64}.
func SignBody(data []byte, isDigest bool) []byte { return wireclient.SignBody(data, isDigest) }

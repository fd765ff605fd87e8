// Package client signs with the keys of an enclave-signer enclave
// (signerd), talking to it directly over its wire protocol: from the
// parent instance over vsock, or over a unix socket or loopback TCP to a
// development enclave.
//
//	c, err := client.New("vsock://16:5005", nil)
//	...
//	sig, err := c.SignMessage(ctx, "payments", msg)
//
// Everything it returns is its own: results ([Status], [KeyInfo],
// [KeySet], [Signature]) and errors ([Error] and the Err* values,
// [UnavailableError]), so an application imports this one package. To
// check what the enclave runs, verify the attestation document
// [Client.Attest] returns, and compare the key-set digest it attests with
// [KeySet.Digest].
//
// # Connections
//
// A [Client] keeps [Options.Conns] connections (2 by default), each
// carrying many requests at once, and spreads calls over them. Nothing is
// dialed until the first call. A lost connection (the enclave restarted,
// the socket broke) is redialed by the next call that needs it, with
// exponential backoff between failed dials; while a dial is in backoff,
// calls fail at once rather than wait. Calls in flight when their
// connection drops fail promptly with an [*UnavailableError]; no call
// ever waits beyond its context.
//
// # Errors
//
// The enclave's refusals come back as an [*Error] matching one of the
// Err* values: errors.Is(err, client.ErrUnknownKey),
// errors.Is(err, client.ErrRateLimited) (errors.As gives the *Error and
// its RetryAfter), and so on. An enclave that cannot be reached gives an
// [*UnavailableError] (errors.Is(err, ErrUnavailable)); a call whose
// context ended gives an error wrapping ctx.Err().
//
// # Source ports
//
// signerd counts, and past its limit refuses (ErrTooManyConnections),
// connections from source ports of 1024 and up, which any local user can
// open. With [Options.PrivilegedSourcePort] the Client dials from a port
// below 1024 (root or CAP_NET_BIND_SERVICE), and falls back to an
// ephemeral one, with one warning, when the process may not bind it.
//
// # Authenticated requests
//
// The keys of a keyring that declares clients sign only requests that
// carry a client's credential. With [Options.Credentials] (the client id,
// its secret, as [ReadSecretFile] reads it, and the keyring's audience,
// or none to ask the enclave) every sign request is signed in this
// process with a fresh nonce; the secret never leaves it and is never
// printed.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// Defaults for the zero fields of Options.
const (
	DefaultConns       = 2
	DefaultDialTimeout = 5 * time.Second
	DefaultMinBackoff  = 50 * time.Millisecond
	DefaultMaxBackoff  = 2 * time.Second
)

// Options configure a Client. The zero value (or nil) is ready for use.
type Options struct {
	// Conns is the number of connections in the pool. 0 means DefaultConns.
	Conns int
	// DialTimeout bounds one dial and handshake. 0 means DefaultDialTimeout.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed dial before
	// a connection is dialed again; the wait doubles with each failure in
	// a row. 0 means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// PrivilegedSourcePort dials vsock and TCP addresses from a source
	// port below 1024, which signerd never counts against its connection
	// limit. Without root or CAP_NET_BIND_SERVICE the Client logs one
	// warning and dials from an ephemeral port.
	PrivilegedSourcePort bool
	// Log receives connection events (dials, losses). nil discards them.
	Log *slog.Logger
	// Credentials, when set, authenticate every sign request as this
	// client. nil: plain requests, which the keys of a keyring that
	// declares clients refuse (ErrUnauthenticated).
	Credentials *Credentials
}

// Credentials authenticate sign requests as one client of a keyring that
// declares clients.
type Credentials struct {
	// Client is the client id.
	Client string
	// Secret is the client's 32-byte secret (ReadSecretFile reads a
	// secret file). It is copied; zero yours when done.
	Secret []byte
	// Audience is the audience of the client's keyring. Empty: the
	// enclave's status is asked once, and its audience used if its
	// keyrings have exactly one.
	Audience string
}

// ReadSecretFile reads a client secret file: 64 hex digits and a newline,
// as `signer keyring new` writes it. Zero the secret when done with it.
func ReadSecretFile(path string) ([]byte, error) { return signreq.ReadSecretFile(path) }

// Client talks to one enclave. Its methods may be called concurrently.
type Client struct {
	c    *wireclient.Client
	addr string
}

// New returns a Client for the enclave at address: "vsock://CID:PORT"
// (on the parent instance, e.g. "vsock://16:5005"), "unix:///PATH" or
// "tcp://HOST:PORT" (a development enclave). It dials nothing yet; a
// malformed address is the only error.
func New(address string, opts *Options) (*Client, error) {
	addr, err := transport.ParseAddr(address)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	wo := &wireclient.Options{
		Conns:                o.Conns,
		DialTimeout:          o.DialTimeout,
		MinBackoff:           o.MinBackoff,
		MaxBackoff:           o.MaxBackoff,
		PrivilegedSourcePort: o.PrivilegedSourcePort,
		Log:                  o.Log,
	}
	if o.Credentials != nil {
		// wireclient copies the secret.
		wo.Credentials = &wireclient.Credentials{Client: o.Credentials.Client, Secret: o.Credentials.Secret, Audience: o.Credentials.Audience}
	}
	return &Client{c: wireclient.New(addr, wo), addr: addr.String()}, nil
}

// Addr returns the enclave's address, as New parsed it.
func (c *Client) Addr() string { return c.addr }

// Close closes every connection and zeroes the credentials; calls in
// flight fail. Later calls return an error matching ErrClosed.
func (c *Client) Close() error { return c.c.Close() }

// Ping makes sure at least one connection is open, dialing if needed.
func (c *Client) Ping(ctx context.Context) error { return convert(c.c.Ping(ctx)) }

// Status returns the enclave's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	st, err := c.c.Status(ctx)
	if err != nil {
		return nil, convert(err)
	}
	return statusFromWire(st), nil
}

// Keys returns the loaded keys.
func (c *Client) Keys(ctx context.Context) ([]KeyInfo, error) {
	ks, err := c.KeySet(ctx)
	if err != nil {
		return nil, err
	}
	return ks.Keys, nil
}

// KeySet returns the loaded keys with the digest the enclave attests for
// them.
func (c *Client) KeySet(ctx context.Context) (*KeySet, error) {
	kl, err := c.c.KeyList(ctx)
	if err != nil {
		return nil, convert(err)
	}
	ks := &KeySet{Keys: make([]KeyInfo, len(kl.Keys)), Digest: kl.KeySetDigest}
	for i, k := range kl.Keys {
		ks.Keys[i] = KeyInfo{ID: k.ID, Algorithm: k.Algorithm, PublicKeyPEM: k.PublicKeyPEM, EthereumAddress: k.EthereumAddress}
	}
	return ks, nil
}

// SignMessage asks key keyID to sign msg (an empty message is valid). msg
// may be reused once SignMessage returns.
func (c *Client) SignMessage(ctx context.Context, keyID string, msg []byte) (*Signature, error) {
	return signature(c.c.SignMessage(ctx, keyID, msg))
}

// SignDigest asks key keyID to sign a precomputed digest (32 bytes for
// the ECDSA algorithms; ed25519 keys refuse digests with
// ErrDigestNotAllowed).
func (c *Client) SignDigest(ctx context.Context, keyID string, digest []byte) (*Signature, error) {
	return signature(c.c.SignDigest(ctx, keyID, digest))
}

// Attest asks for a fresh attestation document carrying nonce and
// userData (both optional, at most 1024 bytes each; the enclave adds its
// own fields to user_data and may have less room) and returns it: raw
// COSE_Sign1 bytes, to verify before trusting anything in it.
func (c *Client) Attest(ctx context.Context, nonce, userData []byte) ([]byte, error) {
	doc, err := c.c.Attest(ctx, nonce, userData)
	return doc, convert(err)
}

func signature(r *wire.SignResponse, err error) (*Signature, error) {
	if err != nil {
		return nil, convert(err)
	}
	return &Signature{KeyID: r.KeyID, Algorithm: r.Algorithm, Signature: r.Signature, RecoveryID: r.RecoveryID, RSV: r.SignatureRSV}, nil
}

func statusFromWire(st *wire.Status) *Status {
	out := &Status{
		State:       State(st.State),
		Attestation: st.Attestation,
		DebugMode:   st.DebugMode,
		Keys:        st.Keys,
		Version:     st.Version,
		Pinned:      st.Pinned,
	}
	if len(st.PCRs) > 0 {
		out.PCRs = make(map[int][]byte, len(st.PCRs))
		for i, v := range st.PCRs {
			out.PCRs[int(i)] = v
		}
	}
	if e := st.Error; e != nil {
		out.Error = &ProvisioningError{Step: e.Step, Message: e.Message, KMSCode: e.KMSCode, KMSMessage: e.KMSMessage}
	}
	if a := st.Auth; a != nil {
		out.Auth = &AuthStatus{RequireAuth: a.RequireAuth, Policed: a.Policed, Clients: a.Clients, Audiences: a.Audiences, ClockOK: a.ClockOK}
	}
	return out
}

// convert gives an error of the layer below this package's own types,
// keeping its message: a refusal becomes an *Error, a lost or unreachable
// enclave an *UnavailableError, a closed client one matching ErrClosed.
// Context errors stay in the chain (errors.Is(err,
// context.DeadlineExceeded) holds as before).
func convert(err error) error {
	if err == nil {
		return nil
	}
	if ue, ok := errors.AsType[*wireclient.UnavailableError](err); ok {
		return &UnavailableError{Addr: ue.Addr, Op: ue.Op, Err: convertCause(ue.Err)}
	}
	return convertCause(err)
}

// convertCause converts what is not an UnavailableError.
func convertCause(err error) error {
	if we, ok := errors.AsType[*wire.Error](err); ok {
		return &converted{msg: err.Error(), errs: []error{fromWire(we)}}
	}
	if errors.Is(err, wireclient.ErrClosed) {
		return &converted{msg: err.Error(), errs: []error{ErrClosed}}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &converted{msg: err.Error(), errs: []error{contextErr(err)}}
	}
	return &converted{msg: err.Error()}
}

// contextErr returns which context error err wraps.
func contextErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return context.Canceled
}

func fromWire(we *wire.Error) *Error {
	return &Error{Code: we.Code.String(), Message: we.Message, RetryAfter: retryAfter(we.RetryAfterMillis)}
}

// converted carries an error's message and this package's errors in its
// stead.
type converted struct {
	msg  string
	errs []error
}

func (c *converted) Error() string   { return c.msg }
func (c *converted) Unwrap() []error { return c.errs }

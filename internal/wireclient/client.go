// Package wireclient is the one typed-call layer over the wire protocol:
// a small pool of multiplexed connections to the enclave (signerd) that
// redials by itself when the enclave goes away, with a method per request
// and typed errors. The shim, signer's commands, bench and host-side
// tests use it with the protocol's own types (wire.Status,
// wire.ProvisionRequest, *wire.Error); pkg/client is the public facade
// over it, with types of its own.
//
// # Connections
//
// A [Client] keeps [Options.Conns] connections (2 by default), each a
// *wire.Conn carrying many requests at once, and spreads calls over them
// round-robin. Nothing is dialed until the first call. A connection that is
// lost (the enclave restarted, the socket broke) is redialed lazily by the
// next call that needs it, in the background, with exponential backoff
// between failed dials; while a dial is in backoff, calls fail at once
// rather than wait. Calls in flight when their connection drops fail
// promptly with an error matching [ErrUnavailable] and wire.ErrConnClosed;
// no call ever waits beyond its context.
//
// # Errors
//
// The enclave's error answers come back as *wire.Error, so
// errors.Is(err, wire.ErrUnknownKey), errors.Is(err, wire.ErrNotReady) and
// the like work. An enclave that cannot be reached gives an
// [*UnavailableError] (errors.Is(err, ErrUnavailable)); a call whose
// context ended gives an error wrapping ctx.Err(). An enclave that refused
// the connection because it serves its maximum of connections from
// unprivileged source ports gives an *UnavailableError that also matches
// wire.ErrTooManyConnections, whose message says the limit: dial from a
// privileged port ([Options.PrivilegedSourcePort]) to be exempt.
//
// # Source ports
//
// signerd counts, and past its limit refuses, connections from source
// ports of 1024 and up, which any local user can open; connections from
// ports below 1024, which only root or CAP_NET_BIND_SERVICE can bind, are
// never refused. With [Options.PrivilegedSourcePort] the Client dials from
// such a port, and falls back to an ephemeral one, with one warning, when
// the process may not bind it.
//
// # Authenticated requests
//
// The keys of a keyring that declares clients sign only requests that
// carry a client's credential (docs/protocol.md, Authenticated sign
// requests). With [Options.Credentials] (the client id, its secret, as
// [ReadSecretFile] reads it, and the keyring's audience, or none to ask the
// enclave) every Sign is sent as an auth_sign_request signed in this
// process with a fresh nonce. [RequestSigner] signs HTTP requests to the
// shim the same way. Neither ever prints the secret.
package wireclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// Defaults for the zero fields of Options.
const (
	DefaultConns       = 2
	DefaultDialTimeout = 5 * time.Second
	DefaultMinBackoff  = 50 * time.Millisecond
	DefaultMaxBackoff  = 2 * time.Second
)

// Options configure a Client. The zero value is ready for use.
type Options struct {
	// Conns is the number of connections in the pool. 0 means DefaultConns.
	Conns int
	// DialTimeout bounds one dial and handshake. 0 means DefaultDialTimeout.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed dial before a
	// connection is dialed again; the wait doubles with each failure in a
	// row. 0 means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Dial opens a connection to the enclave. nil means transport.Dial to
	// the Client's address, or transport.DialPrivileged with
	// PrivilegedSourcePort.
	Dial wire.DialFunc
	// PrivilegedSourcePort dials vsock and TCP addresses from a source
	// port below 1024 (transport.DialPrivileged), so that signerd never
	// counts the connections against its limit nor refuses them. If the
	// process may not bind such a port (it needs root or
	// CAP_NET_BIND_SERVICE), or none is free, the Client logs one warning
	// and dials from an ephemeral port. Ignored when Dial is set.
	PrivilegedSourcePort bool
	// Log receives connection events (dials, losses). nil discards them.
	Log *slog.Logger
	// Credentials, when set, authenticate every sign request as this
	// client (auth_sign_request; docs/protocol.md). nil: plain
	// sign_requests, which a keyring that declares clients refuses.
	Credentials *Credentials
}

// ErrUnavailable is matched (errors.Is) by every error that says the
// enclave could not be reached or its connection was lost: see
// UnavailableError.
var ErrUnavailable = errors.New("enclave unavailable")

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("client: closed")

// UnavailableError says the enclave could not be reached, or the
// connection a call was using was lost before the answer came.
type UnavailableError struct {
	Addr string // the enclave's address, e.g. "vsock://16:5005"
	Op   string // the request, e.g. "sign"
	Err  error  // the dial error, or one wrapping wire.ErrConnClosed
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%s: enclave at %s unavailable: %v", e.Op, e.Addr, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable) hold.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Client talks to one enclave. Its methods may be called concurrently.
type Client struct {
	addr     transport.Addr
	addrStr  string
	dial     wire.DialFunc
	dialTO   time.Duration
	minBO    time.Duration
	maxBO    time.Duration
	log      *slog.Logger
	slots    []slot
	next     atomic.Uint32
	closed   atomic.Bool
	ctx      context.Context // cancelled by Close; parent of every dial
	cancel   context.CancelFunc
	dialsWG  sync.WaitGroup
	connects atomic.Uint64

	privDenied atomic.Bool // binding a privileged port was refused
	privWarn   sync.Once   // the warning about it

	auth *authState // nil without Credentials
}

// slot is one connection of the pool.
type slot struct {
	conn atomic.Pointer[wire.Conn]

	mu       sync.Mutex
	dialing  chan struct{} // non-nil while a dial runs; closed when it ends
	lastErr  error         // the last dial's error, nil after a success
	retryAt  time.Time     // no new dial before this, after a failure
	failures int           // failed dials in a row
}

// New returns a Client for the enclave at addr. It dials nothing yet.
func New(addr transport.Addr, opts *Options) *Client {
	var o Options
	if opts != nil {
		o = *opts
	}
	c := &Client{
		addr:    addr,
		addrStr: addr.String(),
		dial:    o.Dial,
		dialTO:  o.DialTimeout,
		minBO:   o.MinBackoff,
		maxBO:   o.MaxBackoff,
		log:     o.Log,
	}
	if c.dial == nil {
		c.dial = func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, addr) }
		if o.PrivilegedSourcePort {
			c.dial = c.dialPrivileged
		}
	}
	if c.dialTO <= 0 {
		c.dialTO = DefaultDialTimeout
	}
	if c.minBO <= 0 {
		c.minBO = DefaultMinBackoff
	}
	if c.maxBO <= 0 {
		c.maxBO = DefaultMaxBackoff
	}
	c.maxBO = max(c.maxBO, c.minBO)
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	n := o.Conns
	if n <= 0 {
		n = DefaultConns
	}
	c.slots = make([]slot, n)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if o.Credentials != nil {
		cr := *o.Credentials
		cr.Secret = append([]byte(nil), cr.Secret...)
		c.auth = &authState{creds: cr}
	}
	return c
}

// dialPrivilegedPort is transport.DialPrivileged; tests replace it.
var dialPrivilegedPort = transport.DialPrivileged

// dialPrivileged dials from a privileged source port, or from an ephemeral
// one (with a warning, once) if that is not possible.
func (c *Client) dialPrivileged(ctx context.Context) (net.Conn, error) {
	if !c.privDenied.Load() {
		nc, err := dialPrivilegedPort(ctx, c.addr)
		switch {
		case err == nil:
			return nc, nil
		case errors.Is(err, transport.ErrPrivilegedPortDenied):
			// The process's privileges will not change: stop trying.
			c.privDenied.Store(true)
		case !errors.Is(err, transport.ErrNoPrivilegedPort):
			return nil, err
		}
		c.privWarn.Do(func() {
			c.log.Warn("cannot dial the enclave from a privileged source port; dialing from an ephemeral port instead, "+
				"from which signerd refuses provisioning (forbidden), and which it counts against its --max-conns and refuses when other local processes hold them all: "+
				"run the shim as root or grant it CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE)",
				"enclave", c.addrStr, "err", err)
		})
	}
	return transport.Dial(ctx, c.addr)
}

// Addr returns the enclave's address.
func (c *Client) Addr() transport.Addr { return c.addr }

// Connects returns how many connections the Client has opened so far (a
// number that grows by one each time the enclave is redialed).
func (c *Client) Connects() uint64 { return c.connects.Load() }

// Close closes every connection; calls in flight fail. Later calls return
// ErrClosed.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.cancel()
	for i := range c.slots {
		s := &c.slots[i]
		s.mu.Lock()
		cn := s.conn.Swap(nil)
		s.mu.Unlock()
		if cn != nil {
			cn.Close()
		}
	}
	c.dialsWG.Wait()
	if c.auth != nil {
		c.auth.destroy()
	}
	return nil
}

func alive(cn *wire.Conn) bool {
	if cn == nil {
		return false
	}
	select {
	case <-cn.Done():
		return false
	default:
		return true
	}
}

// conn returns a live connection, dialing one if none is. The slot picked
// round-robin is preferred; if its connection is gone, another live one
// serves this call while the picked slot redials in the background.
func (c *Client) conn(ctx context.Context, op string) (*wire.Conn, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	n := uint32(len(c.slots))
	i := c.next.Add(1) % n
	s := &c.slots[i]
	if cn := s.conn.Load(); alive(cn) {
		return cn, nil
	}
	// The picked connection is missing or dead: start its redial, and use
	// any other live one meanwhile.
	ch, err := c.redial(s)
	for j := uint32(1); j < n; j++ {
		if cn := c.slots[(i+j)%n].conn.Load(); alive(cn) {
			return cn, nil
		}
	}
	if err != nil {
		return nil, &UnavailableError{Addr: c.addrStr, Op: op, Err: err}
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: enclave at %s: waiting for a connection: %w", op, c.addrStr, ctx.Err())
	}
	if cn := s.conn.Load(); alive(cn) {
		return cn, nil
	}
	s.mu.Lock()
	err = s.lastErr
	s.mu.Unlock()
	if err == nil {
		if c.closed.Load() {
			return nil, fmt.Errorf("%s: %w", op, ErrClosed)
		}
		err = fmt.Errorf("%w: lost right after it was opened", wire.ErrConnClosed)
	}
	return nil, &UnavailableError{Addr: c.addrStr, Op: op, Err: err}
}

// redial starts a dial for s unless one is running or s is in backoff. It
// returns a channel closed when the dial ends, or the last dial's error if
// s is in backoff.
func (c *Client) redial(s *slot) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dialing != nil {
		return s.dialing, nil
	}
	if alive(s.conn.Load()) {
		ch := make(chan struct{})
		close(ch)
		return ch, nil
	}
	if s.lastErr != nil {
		if wait := time.Until(s.retryAt); wait > 0 {
			return nil, fmt.Errorf("%w (next dial in %s)", s.lastErr, wait.Round(time.Millisecond))
		}
	}
	if c.closed.Load() {
		return nil, ErrClosed
	}
	ch := make(chan struct{})
	s.dialing = ch
	c.dialsWG.Add(1)
	go c.dialSlot(s, ch)
	return ch, nil
}

func (c *Client) dialSlot(s *slot, ch chan struct{}) {
	defer c.dialsWG.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.dialTO)
	cn, err := wire.Dial(ctx, c.dial)
	cancel()
	s.mu.Lock()
	if err == nil && c.closed.Load() {
		s.dialing = nil
		s.mu.Unlock()
		cn.Close()
		close(ch)
		return
	}
	if err != nil {
		s.failures++
		backoff := c.minBO << min(s.failures-1, 20)
		if backoff <= 0 || backoff > c.maxBO {
			backoff = c.maxBO
		}
		s.lastErr = err
		s.retryAt = time.Now().Add(backoff)
		if s.failures == 1 {
			c.log.Warn("enclave dial failed", "enclave", c.addrStr, "err", err, "retry_in", backoff)
		} else {
			c.log.Debug("enclave dial failed", "enclave", c.addrStr, "err", err, "failures", s.failures, "retry_in", backoff)
		}
	} else {
		s.failures, s.lastErr = 0, nil
		c.connects.Add(1)
		s.conn.Store(cn)
		c.log.Debug("enclave connected", "enclave", c.addrStr, "server", cn.ServerSoftware())
	}
	s.dialing = nil
	s.mu.Unlock()
	close(ch)
}

// Ping makes sure at least one connection is open, dialing if needed.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.conn(ctx, "ping")
	return err
}

// wrap gives a failed call's error its context.
func (c *Client) wrap(op string, err error) error {
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		return fmt.Errorf("%s: %w", op, err)
	case errors.Is(err, wire.ErrConnClosed):
		return &UnavailableError{Addr: c.addrStr, Op: op, Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: enclave at %s: %w", op, c.addrStr, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// callAs sends req on a live connection and checks the answer's type.
func callAs[T wire.Message](ctx context.Context, c *Client, op string, req wire.Message) (T, error) {
	var zero T
	cn, err := c.conn(ctx, op)
	if err != nil {
		return zero, err
	}
	resp, err := cn.Call(ctx, req)
	if err != nil {
		return zero, c.wrap(op, err)
	}
	r, ok := resp.(T)
	if !ok {
		return zero, fmt.Errorf("%s: enclave answered %s, want %s", op, resp.MessageType(), zero.MessageType())
	}
	return r, nil
}

// Status returns the enclave's status.
func (c *Client) Status(ctx context.Context) (*wire.Status, error) {
	return callAs[*wire.Status](ctx, c, "status", &wire.StatusRequest{})
}

// Provision sends req and returns the enclave's status after provisioning.
// A failed provisioning gives an error matching wire.ErrProvisioningFailed
// (Status then has the detail) unless the enclave answers a Status in
// state failed, which is returned as it is.
func (c *Client) Provision(ctx context.Context, req *wire.ProvisionRequest) (*wire.Status, error) {
	return callAs[*wire.Status](ctx, c, "provision", req)
}

// Keys returns the loaded keys.
func (c *Client) Keys(ctx context.Context) ([]wire.KeyInfo, error) {
	kl, err := c.KeyList(ctx)
	if err != nil {
		return nil, err
	}
	return kl.Keys, nil
}

// KeyList returns the loaded keys with the digest the enclave attests for
// them (KeySetDigest, nil from an enclave that sends none).
func (c *Client) KeyList(ctx context.Context) (*wire.KeyList, error) {
	return callAs[*wire.KeyList](ctx, c, "list keys", &wire.ListKeysRequest{})
}

// Sign asks for a signature. req.Data may be reused once Sign returns.
// With Options.Credentials it sends an authenticated request.
func (c *Client) Sign(ctx context.Context, req *wire.SignRequest) (*wire.SignResponse, error) {
	if c.auth != nil {
		return c.authSign(ctx, req)
	}
	return callAs[*wire.SignResponse](ctx, c, "sign", req)
}

// AuthSign sends an authenticated sign request as it is: the HTTP
// request's method, path, body and Authorization header (the shim's
// forwarding). req.Body may be reused once AuthSign returns.
func (c *Client) AuthSign(ctx context.Context, req *wire.AuthSignRequest) (*wire.SignResponse, error) {
	return callAs[*wire.SignResponse](ctx, c, "sign", req)
}

// SignMessage asks key keyID to sign msg.
func (c *Client) SignMessage(ctx context.Context, keyID string, msg []byte) (*wire.SignResponse, error) {
	if msg == nil {
		msg = []byte{}
	}
	return c.Sign(ctx, &wire.SignRequest{KeyID: keyID, Data: msg})
}

// SignDigest asks key keyID to sign a precomputed digest.
func (c *Client) SignDigest(ctx context.Context, keyID string, digest []byte) (*wire.SignResponse, error) {
	return c.Sign(ctx, &wire.SignRequest{KeyID: keyID, Data: digest, IsDigest: true})
}

// AuditRead drains the enclave's audit trail: the records after the
// cursor of the boot with audit key key (docs/protocol.md
// AuditReadRequest). Only a privileged peer may: from any other the
// answer matches wire.ErrForbidden.
func (c *Client) AuditRead(ctx context.Context, key []byte, cursor uint64, max uint32) (*wire.AuditBatch, error) {
	return callAs[*wire.AuditBatch](ctx, c, "audit read", &wire.AuditReadRequest{AuditKey: key, Cursor: cursor, Max: max})
}

// AuditHead asks for the audit chain's end signed with nonce.
func (c *Client) AuditHead(ctx context.Context, nonce []byte) (*wire.AuditHead, error) {
	return callAs[*wire.AuditHead](ctx, c, "audit head", &wire.AuditHeadRequest{Nonce: nonce})
}

// Attest asks for a fresh attestation document carrying nonce and userData
// (both optional) and returns it (raw COSE_Sign1 bytes).
func (c *Client) Attest(ctx context.Context, nonce, userData []byte) ([]byte, error) {
	r, err := callAs[*wire.AttestResponse](ctx, c, "attest", &wire.AttestRequest{Nonce: nonce, UserData: userData})
	if err != nil {
		return nil, err
	}
	return r.Document, nil
}

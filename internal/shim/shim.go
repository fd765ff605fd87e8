// Package shim is the host shim's logic: it keeps the enclave provisioned
// (sealed identity and keyrings from files or S3, AWS credentials from the
// SDK's default chain, pushed again before they expire) and serves the
// HTTP API that forwards signing requests to the enclave over the wire
// protocol. `signer serve` wires it up; docs/shim.md is the HTTP API and
// configuration reference.
//
// # Provisioning
//
// The shim provisions the enclave when it starts and whenever the enclave
// reports waiting (it restarted), checking its status every
// Config.StatusInterval and at once when a request finds it unavailable.
// While the enclave is failed it retries with exponential backoff
// (Config.RetryMin to Config.RetryMax), unless the failure would repeat
// with the same inputs (ProvisionError.Permanent): then it waits for a
// manual provisioning or an enclave restart. Credentials that expire are
// replaced Config.CredentialRefresh before they do, by provisioning again.
//
// # Requests from web pages
//
// The shim authenticates nobody itself: a sign request with an
// Authorization header goes to the enclave unchanged (auth_sign_request),
// and signerd checks it (docs/shim.md, Authenticated requests). guard.go
// keeps browsers out: Host must name the listener, cross-site requests are
// refused, and POST bodies must be application/json (docs/shim.md,
// Requests from web pages).
//
// # Secrets
//
// The shim handles AWS credentials (never logged: wire.Credentials redacts
// itself, and only the access key id and expiry are kept after use) and
// ciphertext (the sealed identity and keyrings). It never sees a private
// key. Request bodies are never logged.
package shim

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// Options are what a Shim needs besides its Config.
type Options struct {
	// AWS supplies the credentials pushed to the enclave (AWS.Credentials,
	// required) and the settings of the S3 client (HTTP client, retries).
	// `signer serve` loads it with the SDK's default chain: on EC2, the
	// instance role through IMDS.
	AWS aws.Config
	// Log receives the shim's logs. nil discards them.
	Log *slog.Logger
	// Version names the shim's build in its logs.
	Version string
	// Dial overrides how the enclave is reached; nil dials
	// Config.Enclave. For tests.
	Dial wire.DialFunc
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AuditPaused, when set and true, stops draining the audit trail
	// until it is false again: a test hook (signer serve sets it only
	// from SIGNER_TEST_AUDIT_PAUSE_FILE), to watch signerd fail closed.
	AuditPaused func() bool
}

// Shim is the host shim. Handler serves the HTTP API; Run keeps the
// enclave provisioned.
type Shim struct {
	cfg    *Config
	client *wireclient.Client
	prov   *provisioner
	api    *api
	log    *slog.Logger
	audit  *auditDrain // nil without audit_log
}

// New builds a Shim from a validated Config. It dials nothing yet.
func New(cfg *Config, opts Options) (*Shim, error) {
	if cfg.EnclaveAddr().Scheme == "" {
		return nil, errors.New("shim: config not validated (call ParseConfig or Config.Validate)")
	}
	if opts.AWS.Credentials == nil {
		return nil, errors.New("shim: no AWS credentials provider")
	}
	lg := opts.Log
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	c := wireclient.New(cfg.EnclaveAddr(), &wireclient.Options{
		Conns: cfg.EnclaveConnections,
		Dial:  opts.Dial,
		// signerd never refuses a privileged peer: no other local user
		// can crowd the shim out (docs/protocol.md#limits).
		PrivilegedSourcePort: true,
		Log:                  lg.With("component", "client"),
	})
	m := &metrics{}
	p := &provisioner{
		cfg:     cfg,
		client:  c,
		creds:   opts.AWS.Credentials,
		fetch:   newFetcher(cfg, opts.AWS),
		log:     lg.With("component", "provisioner"),
		metrics: m,
		now:     now,
		kick:    make(chan struct{}, 1),
	}
	s := &Shim{cfg: cfg, client: c, prov: p, log: lg}
	if cfg.AuditLog != "" {
		s.audit = newAuditDrain(cfg.AuditLog, c, lg.With("component", "audit"), opts.AuditPaused, now)
	} else {
		lg.Warn("no audit_log: the enclave's audit trail is not drained, and signerd stops signing once its audit buffer is full (docs/audit.md)")
	}
	if opts.AuditPaused != nil {
		lg.Warn("TEST HOOK: the audit drain can be paused (SIGNER_TEST_AUDIT_PAUSE_FILE); never in production")
	}
	s.api = newAPI(c, p, cfg, m, opts.Version)
	s.api.audit = s.audit
	return s, nil
}

// Handler returns the HTTP API.
func (s *Shim) Handler() http.Handler { return s.api }

// Client returns the shim's connection pool to the enclave.
func (s *Shim) Client() *wireclient.Client { return s.client }

// Run keeps the enclave provisioned, and drains its audit trail into
// audit_log, until ctx ends.
func (s *Shim) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if s.audit != nil {
		wg.Go(func() { s.audit.run(ctx) })
	}
	s.prov.run(ctx)
	wg.Wait()
}

// Provision provisions the enclave now and returns its status after. A
// failure is a *ProvisionError.
func (s *Shim) Provision(ctx context.Context) (*wire.Status, error) {
	return s.prov.provision(ctx)
}

// Close closes the connections to the enclave.
func (s *Shim) Close() error { return s.client.Close() }

// Serve serves the HTTP API on ln and keeps the enclave provisioned until
// ctx ends, then shuts down gracefully (requests in flight get up to 10 s
// to finish). It returns nil after a graceful shutdown.
func (s *Shim) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.cfg.ProvisionTimeout.D() + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(&slogWriter{s.log}, "", 0),
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	provDone := make(chan struct{})
	go func() {
		s.Run(runCtx)
		close(provDone)
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving the HTTP API", "listen", ln.Addr().String(), "enclave", s.cfg.EnclaveAddr().String())
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("http: %w", err)
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if serr := srv.Shutdown(shutCtx); serr != nil {
			srv.Close()
		}
		cancel()
		<-errc
	}
	stop()
	<-provDone
	return err
}

// slogWriter sends net/http's own log lines (TLS and accept errors) to slog.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.log.Warn("http server", "msg", string(p))
	return len(p), nil
}

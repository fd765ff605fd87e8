package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// runTLSFront is `signer tls-front --listen ADDR --backend URL --ca-dir DIR
// [--name HOST]`: TLS for HOST (kms.us-east-1.amazonaws.com by default)
// under the development CA, relaying requests to the KMS emulator's plain
// HTTP. Under signer dev it listens on the unix socket that stands where
// vsock-proxy would, so signerd reaches the emulator through its production
// proxy dialer and TLS code, with the dev root as its one extra CA. The Host
// header is passed through unchanged: requests are SigV4-signed for it.
func runTLSFront(e *env) error {
	fs := newFlagSet(e, "tls-front")
	listen := fs.String("listen", "", "where to serve TLS: unix:///PATH, HOST:PORT or tcp://HOST:PORT (required)")
	backend := fs.String("backend", "", "the KMS emulator: http://HOST:PORT or unix:///PATH (required)")
	caDir := fs.String("ca-dir", ".signer-dev/ca", "the development CA directory (as signer attestation simulate keeps it)")
	name := fs.String("name", "kms.us-east-1.amazonaws.com", "the host name the certificate is for")
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return unexpectedArg("tls-front", pos[0], "")
	}
	if *listen == "" || *backend == "" {
		return usageErrorf("tls-front: --listen and --backend are required")
	}
	addr, err := transport.ParseHTTPAddr(*listen)
	if err != nil {
		return usageErrorf("tls-front: --listen: %v", err)
	}
	proxy, err := backendProxy(*backend)
	if err != nil {
		return usageErrorf("tls-front: --backend: %v", err)
	}
	ca, err := nsmsim.LoadOrCreateCA(*caDir, time.Now())
	if err != nil {
		return fmt.Errorf("tls-front: %w", err)
	}
	cert, err := ca.IssueTLSCertificate([]string{*name}, time.Now())
	if err != nil {
		return fmt.Errorf("tls-front: %w", err)
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil)).With("component", "tls-front")
	if addr.Scheme == transport.Unix {
		// A stale socket from a previous run would make Listen fail.
		if fi, err := os.Lstat(addr.Path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(addr.Path)
		}
	}
	ln, err := transport.Listen(e.ctx, addr)
	if err != nil {
		return fmt.Errorf("tls-front: listen on %s: %w", addr, err)
	}
	proxy.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	hs := &http.Server{
		Handler:           proxy,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving TLS for "+*name, "listen", addr.String(), "backend", *backend, "ca", *caDir+"/"+nsmsim.RootCertFile)
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("tls-front: %w", err)
	case <-e.ctx.Done():
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("tls-front: shutdown: %w", err)
	}
	return nil
}

// backendProxy relays to an http:// URL or a unix:// socket, keeping the
// client's Host header.
func backendProxy(backend string) (*httputil.ReverseProxy, error) {
	target := &url.URL{Scheme: "http", Host: "kms-emulator"}
	tr := &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}
	if a, err := transport.ParseAddr(backend); err == nil && a.Scheme == transport.Unix {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return transport.Dial(ctx, a) }
	} else {
		u, err := url.Parse(backend)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return nil, fmt.Errorf("want http://HOST:PORT or unix:///PATH, got %q", backend)
		}
		target = u
	}
	return &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
	}, nil
}

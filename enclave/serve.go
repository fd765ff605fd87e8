package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// shutdownGrace bounds how long requests in flight may run once signerd is
// told to stop.
const shutdownGrace = 5 * time.Second

// serve serves the wire protocol on ln until ctx ends (or the listener
// fails): then it stops accepting, lets requests in flight finish for up to
// shutdownGrace, and closes the daemon, which destroys the key set.
func serve(ctx context.Context, ln net.Listener, d *daemon, cfg Config, log *slog.Logger) error {
	srv := &wire.Server{
		Handler:     d,
		Log:         log.With("component", "wire"),
		Software:    "signerd/" + d.cfg.Version,
		MaxConns:    cfg.MaxConns,
		FrameMemory: cfg.FrameMemory,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", "listen", ln.Addr().String(), "state", d.status().State)

	var err error
	select {
	case err = <-errc:
		log.Error("listener failed; shutting down", "err", err)
	case <-ctx.Done():
		log.Info("shutting down", "grace", shutdownGrace)
		// The final checkpoint, drained while the host can still read.
		if d.audit != nil {
			d.audit.stop(auditDrainWait)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	if serr := srv.Shutdown(sctx); serr != nil {
		log.Warn("requests still running at the end of the grace period were cut off", "err", serr)
	}
	cancel()
	if err == nil {
		if serr := <-errc; !errors.Is(serr, wire.ErrServerClosed) {
			err = serr
		}
	}
	d.close()
	log.Info("stopped")
	return err
}

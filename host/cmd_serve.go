package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/enclave-signer/enclave-signer/pkg/shim"
	"github.com/enclave-signer/enclave-signer/pkg/transport"
)

// runServe is `signer serve --config FILE`: the production host shim. The
// configuration is documented in docs/shim.md (shim.Config); credentials
// come from the AWS SDK's default chain (on EC2, the instance role through
// IMDS), so the usual AWS environment applies.
func runServe(e *env) error {
	fs := newFlagSet(e, "serve")
	configPath := fs.String("config", "", "the shim's JSON configuration `FILE` (see docs/shim.md)")
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("signer serve: unexpected argument %q", pos[0])
	}
	if *configPath == "" {
		return usageErrorf("signer serve: --config FILE is required (example: docs/examples/shim-config.json)")
	}
	f, err := os.Open(*configPath)
	if err != nil {
		return err
	}
	cfg, err := shim.ParseConfig(f)
	f.Close()
	if err != nil {
		return &hintError{err: fmt.Errorf("%s: %w", *configPath, err), hints: []string{"docs/shim.md describes every field; docs/examples/shim-config.json is a complete example"}}
	}
	log := newServeLogger(e.stderr, cfg)

	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(cfg.Region))
	cancel()
	if err != nil {
		return &hintError{
			err:   fmt.Errorf("loading the AWS configuration: %v", err),
			hints: []string{"check AWS_PROFILE, AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE; on EC2 the instance role needs no configuration"},
		}
	}

	ln, err := listenHTTP(e.ctx, cfg.ListenAddr())
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	s, err := shim.New(cfg, shim.Options{AWS: awsCfg, Log: log, Version: buildVersion()})
	if err != nil {
		ln.Close()
		return err
	}
	defer s.Close()
	return s.Serve(e.ctx, ln)
}

func newServeLogger(w io.Writer, cfg *shim.Config) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel)) // validated by ParseConfig
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// listenHTTP listens on a tcp:// or unix:// address. A unix socket file
// left behind by a shim that is gone is replaced; one that still answers
// is an error.
func listenHTTP(ctx context.Context, a transport.Addr) (net.Listener, error) {
	if a.Scheme == transport.Unix {
		if fi, err := os.Lstat(a.Path); err == nil && fi.Mode()&fs.ModeSocket != 0 {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			c, err := transport.Dial(dctx, a)
			cancel()
			if err == nil {
				c.Close()
				return nil, errors.New("another process is listening on this socket")
			}
			os.Remove(a.Path)
		}
	}
	return transport.Listen(ctx, a)
}

// buildVersion is the module version the binary was built from, for logs.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

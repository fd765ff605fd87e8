package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/enclave-signer/enclave-signer/internal/shim"
	"github.com/enclave-signer/enclave-signer/internal/transport"
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
		return unexpectedArg("serve", pos[0], "give the configuration as --config FILE")
	}
	if *configPath == "" {
		return usageErrorf("serve: --config FILE is required (example: docs/examples/shim-config.json)")
	}
	f, err := inputFile{cmd: "serve", arg: "--config", path: *configPath,
		want: "the shim's JSON configuration: docs/shim.md describes every field; docs/examples/shim-config.json is a complete example"}.open()
	if err != nil {
		return err
	}
	cfg, err := shim.ParseConfig(f)
	f.Close()
	if err != nil {
		return &hintError{err: fmt.Errorf("serve: --config %s: %w", *configPath, err), hints: []string{"docs/shim.md describes every field; docs/examples/shim-config.json is a complete example"}}
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

	ln, err := listenHTTP(e.ctx, cfg)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	s, err := shim.New(cfg, shim.Options{AWS: awsCfg, Log: log, Version: buildVersion(), AuditPaused: auditPauseHook(e.getenv)})
	if err != nil {
		ln.Close()
		return err
	}
	defer s.Close()
	return s.Serve(e.ctx, ln)
}

// testAuditPauseEnv names a file whose existence pauses the shim's audit
// drain: a TEST HOOK, for the end-to-end test of signerd failing closed
// (docs/shim.md calls it test-only). It is an environment variable, not
// an endpoint: only who starts the shim can set it, and they can stop the
// shim anyway.
const testAuditPauseEnv = "SIGNER_TEST_AUDIT_PAUSE_FILE"

// auditPauseHook returns the test hook's check, or nil when it is off.
func auditPauseHook(getenv func(string) string) func() bool {
	path := getenv(testAuditPauseEnv)
	if path == "" {
		return nil
	}
	return func() bool {
		_, err := os.Stat(path)
		return err == nil
	}
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

// listenHTTP opens the API's listener: a unix socket with the configured
// mode from its first moment (transport.ListenUnix: a stale socket file is
// replaced, a live one refused), or a TCP port.
func listenHTTP(ctx context.Context, cfg *shim.Config) (net.Listener, error) {
	if a := cfg.ListenAddr(); a.Scheme == transport.Unix {
		return transport.ListenUnix(ctx, a.Path, cfg.ListenSocketMode())
	}
	return transport.Listen(ctx, cfg.ListenAddr())
}

// buildVersion is the module version the binary was built from, for logs.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

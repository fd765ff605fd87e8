// Command signerd is enclave-signer's daemon inside the Nitro Enclave. It
// attests with the Nitro Security Module, asks KMS (through the parent's
// vsock-proxy, with TLS ending here) to decrypt the sealed age identity to
// its own attested key, unlocks the age-encrypted keyrings in memory and
// serves signing requests to the host over vsock.
//
// It serves from the start, in state waiting; the host provisions it over
// the wire protocol (docs/protocol.md). docs/signerd.md describes the
// states, the unseal sequence, the logs and what to do about each failure.
//
// See [Config] for the flags.
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/kms"
	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

func main() {
	meminfo, _ := os.ReadFile("/proc/meminfo") // absent off Linux: no limit
	tuneGC(os.Getenv, meminfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go retuneGC(ctx, os.Getenv)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "signerd: %v\n", err)
		os.Exit(1)
	}
}

// run is signerd: flags (and the image's pins from getenv), logger, the
// boundary objects (NSM, KMS settings, listener), then serve until ctx
// ends.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ver := version()
	// Ends the key source's generator and the daemon's context however run
	// returns.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	nsm, closeNSM, err := openNSM(cfg, log)
	if err != nil {
		return err
	}
	defer closeNSM()

	var roots *x509.CertPool // nil: the roots compiled into the binary
	if cfg.KMSCA != "" {
		if roots, err = loadKMSRoots(cfg.KMSCA); err != nil {
			return err
		}
		log.Warn("KMS TLS trusts an extra root (simulated attestation only)", "kms_ca", cfg.KMSCA)
	}

	keys := kms.NewKeySource(ctx)
	d, err := newDaemon(ctx, daemonConfig{
		NSM:           nsm,
		Attestation:   cfg.Attestation,
		Keys:          keys,
		KMSProxy:      cfg.KMSProxy,
		KMSEndpoint:   cfg.KMSEndpoint,
		KMSRoots:      roots,
		Pins:          cfg.Pins,
		Version:       ver,
		Log:           log,
		AuditBuffer:   cfg.AuditBuffer,
		NonceCapacity: cfg.NonceCapacity,
	})
	if err != nil {
		return err
	}
	testOnlyMu.Lock()
	if testOnlyDaemon != nil {
		testOnlyDaemon(d)
	}
	testOnlyMu.Unlock()

	ln, err := listen(ctx, cfg.Listen)
	if err != nil {
		d.close()
		return err
	}
	attrs := []any{"version", ver, "listen", cfg.Listen.String(), "attestation", cfg.Attestation, "pcr0", d.pcr0Hex(), "debug_mode", d.debugMode, "kms_proxy", cfg.KMSProxy.String(),
		"max_conns", cfg.MaxConns, "frame_memory", formatSize(cfg.FrameMemory)}
	if cfg.KMSEndpoint != "" {
		attrs = append(attrs, "kms_endpoint", cfg.KMSEndpoint)
	}
	attrs = append(attrs, "pinned", cfg.Pins.Pinned())
	if cfg.Pins.Pinned() {
		attrs = append(attrs, "kms_keys", cfg.Pins.KMSKeyStrings())
	}
	if p := cfg.Pins.KeyringPolicy(); p.Pinned() {
		attrs = append(attrs, "keyring_signers", p.SignerStrings(), "keyring_threshold", p.M())
	}
	attrs = append(attrs, "require_auth", cfg.Pins.RequireAuth, "nonce_cache", cfg.NonceCapacity)
	attrs = append(attrs, "audit_buffer", cfg.AuditBuffer, "audit_overflow", (*auditOverflowFlag)(&cfg.Pins.AuditOverflow).String())
	log.Info("signerd started", attrs...)
	if !cfg.Pins.Pinned() {
		log.Warn("no KMS key is pinned (--kms-key, or make image KMS_KEYS=ARN): signerd accepts an identity sealed under any KMS key, so whoever can provision it (root on the parent) can load keys of its own choosing; pin the key the identity is sealed under (docs/signerd.md)")
	}
	if !cfg.Pins.KeyringPolicy().Pinned() {
		log.Warn("no keyring signer is pinned (--keyring-signer, or make image KEYRING_SIGNERS=VALUE): keyrings are loaded without checking who made them, so whoever can provision this signerd can load any keyring encrypted to the identity's recipient (docs/keyring.md)")
	}
	return serve(ctx, ln, d, cfg, log)
}

// gcPercent is signerd's GOGC. Signing allocates (an ECDSA P-256
// signature is about 60 small objects, 6 KB) while the live heap stays a
// few megabytes, so at Go's default of 100 the collector runs dozens of
// times a second under load. On an enclave with one vCPU each cycle's
// marking takes 2 to 3.5 ms of wall time (a quarter of the CPU, plus
// assists), and every request in flight meanwhile waits longer: with
// cycles a few times a second, that is the p99 of signing latency. At
// 1000 the heap goal is eleven times the live heap (some 40 MB), cycles
// are ten times rarer than at 100, and the tail they cause falls below
// the 99th percentile (docs/performance.md). It is the ceiling: retuneGC
// lowers it while more is live (gctune.go).
const gcPercent = 1000

// memoryLimitShare is the share of the machine's memory (the enclave's,
// inside one) given to the Go runtime as its soft memory limit when
// GOMEMLIMIT is not set: the high GOGC must not let a larger live heap
// grow its goal past what the enclave has, where exceeding it kills the
// enclave (there is no swap). Near the limit the collector simply runs
// more often.
const memoryLimitShare = 2 // one half

// tuneGC sets gcPercent unless GOGC is set in the environment, and a soft
// memory limit of half of meminfo's MemTotal unless GOMEMLIMIT is set: the
// operator's choice wins. meminfo is /proc/meminfo's content, or nil.
func tuneGC(getenv func(string) string, meminfo []byte) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		if total, ok := memTotal(meminfo); ok {
			debug.SetMemoryLimit(int64(total / memoryLimitShare))
		}
	}
}

// memTotal returns MemTotal from /proc/meminfo's content, in bytes.
func memTotal(meminfo []byte) (uint64, bool) {
	for line := range strings.Lines(string(meminfo)) {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		num, ok := strings.CutSuffix(strings.TrimSpace(rest), " kB")
		if !ok {
			return 0, false
		}
		kb, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
		if err != nil || kb == 0 || kb > math.MaxInt64/1024 {
			return 0, false
		}
		return kb * 1024, true
	}
	return 0, false
}

// testOnlyDaemon, when set by a test, is handed the daemon run builds.
// testOnlyMu guards it: a test sets it while an earlier run may read it.
var (
	testOnlyMu     sync.Mutex
	testOnlyDaemon func(*daemon)
)

// testOnlySimNow, when set by a test, is the simulated NSM's clock.
var testOnlySimNow func() time.Time

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	level, _ := cfg.logLevel() // Validate checked it
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// openNSM opens /dev/nsm, or builds the simulator for --attestation
// simulated. The returned function closes it.
func openNSM(cfg Config, log *slog.Logger) (nsm.Module, func(), error) {
	if cfg.Attestation != wire.AttestationSimulated {
		dev, err := nsm.Open()
		if err != nil {
			return nil, nil, err
		}
		return dev, func() { dev.Close() }, nil
	}
	log.Warn("attestation is SIMULATED: documents are signed by a development CA that no production key policy or verifier trusts; this signerd must never hold production keys")
	var ca *nsmsim.CA
	var err error
	if cfg.SimCADir != "" {
		ca, err = nsmsim.LoadOrCreateCA(cfg.SimCADir, time.Now())
		if err != nil {
			return nil, nil, fmt.Errorf("--sim-ca-dir: %w", err)
		}
		log.Info("simulator CA loaded", "sim_ca_dir", cfg.SimCADir)
	} else {
		ca, err = nsmsim.NewCA(time.Now())
		if err != nil {
			return nil, nil, fmt.Errorf("simulator CA: %w", err)
		}
		log.Warn("simulator CA created in memory and not saved: its documents verify only against the root in their own cabundle; pass --sim-ca-dir to keep one")
	}
	pcrs, err := cfg.simPCRs()
	if err != nil {
		return nil, nil, err
	}
	sim, err := nsmsim.New(nsmsim.Options{CA: ca, PCRs: pcrs, DebugMode: cfg.SimDebugMode, Now: testOnlySimNow})
	if err != nil {
		return nil, nil, err
	}
	return sim, func() {}, nil
}

// loadKMSRoots returns the compiled-in roots plus every certificate in the
// PEM file at path.
func loadKMSRoots(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--kms-ca: %w", err)
	}
	pool := kms.DefaultRoots()
	n := 0
	for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("--kms-ca %s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("--kms-ca %s: no PEM CERTIFICATE block found", path)
	}
	return pool, nil
}

// version is the main module's version from the build info, or "devel".
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

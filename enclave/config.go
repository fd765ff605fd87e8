package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/imagepins"
	"github.com/enclave-signer/enclave-signer/internal/keyringsig"
	"github.com/enclave-signer/enclave-signer/internal/kms"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

// Config is signerd's whole configuration, from its flags. Nothing the host
// sends at run time can change it: in particular the route to KMS is fixed
// here, so a compromised host cannot point the enclave elsewhere.
type Config struct {
	// Listen is where the host connects (--listen, default vsock://any:5005).
	Listen transport.Addr
	// KMSProxy is the vsock-proxy in front of KMS (--kms-proxy, default
	// vsock://3:8000, AWS's convention).
	KMSProxy transport.Addr
	// Attestation is "nsm" (/dev/nsm, the default) or "simulated".
	Attestation string
	// SimCADir, SimPCRs and SimDebugMode configure the simulator; they are
	// accepted only with Attestation "simulated".
	SimCADir     string
	SimPCRs      []string
	SimDebugMode bool
	// KMSEndpoint and KMSCA override the KMS host name and add a TLS root;
	// accepted only with Attestation "simulated", so a production enclave
	// always talks TLS to kms.<region>.amazonaws.com under compiled-in roots.
	KMSEndpoint string
	KMSCA       string
	// LogFormat is "json" (--log-format, the default) or "text".
	LogFormat string
	// LogLevel is debug, info (the default), warn or error (--log-level).
	LogLevel string
	// MaxConns bounds the connections from unprivileged peers served at
	// once (--max-conns, default wire.DefaultMaxConns): source ports of 1024
	// and up, which any local user on the parent can open. Privileged peers
	// (the shim, from a port below 1024) are not counted.
	MaxConns int
	// FrameMemory bounds the bytes held by frames in flight on all
	// connections together (--frame-memory, default wire.DefaultFrameMemory).
	FrameMemory int64
	// Pins are what signerd takes keys from (--kms-key, --keyring-signer,
	// --keyring-threshold and the image's SIGNERD_* variables).
	Pins Pins
	// NonceCapacity bounds the nonces of authenticated requests remembered
	// (--nonce-cache, default defaultNonceCapacity).
	NonceCapacity int
	// AuditBuffer is how many audit records (entries and checkpoints)
	// wait for the host to drain them (--audit-buffer, default
	// defaultAuditBuffer); when it is full, signing stops (or, with
	// --audit-overflow drop, goes on with a gap entry).
	AuditBuffer int
}

// Pins are what signerd takes keys from, fixed when signerd starts: from
// its command line and from the environment variables of imageEnv, both
// of which the image sets (CMD and ENV of Dockerfile.enclave, from make
// image KMS_KEYS=…) and PCR0 measures, so that the host cannot change
// them (docs/image.md). This is the one place that holds them: status
// reports them, and attestation documents may carry them.
type Pins struct {
	// KMSKeys are the KMS keys whose Decrypt answers signerd accepts an
	// identity from (--kms-key, repeatable; SIGNERD_KMS_KEYS), tried in
	// this order. Empty means unpinned: an identity sealed under any key
	// is accepted, as before pinning existed.
	KMSKeys []kms.KeyARN
	// KeyringSigners are the keyring signers whose signatures a keyring
	// needs (--keyring-signer VALUE, repeatable; SIGNERD_KEYRING_SIGNERS):
	// each keyring must come with a statement signed by KeyringThreshold
	// of them, checked before it is decrypted (docs/keyring.md). Empty
	// means keyrings are loaded unchecked, as before signed keyrings
	// existed.
	KeyringSigners []keyringsig.SignerKey
	// KeyringThreshold is M of M-of-N (--keyring-threshold,
	// SIGNERD_KEYRING_THRESHOLD; 0 means 1).
	KeyringThreshold int
	// RequireAuth refuses, at provisioning, a keyring that declares no
	// clients, whose keys anyone reaching signerd could use
	// (--require-auth; SIGNERD_REQUIRE_AUTH=true).
	RequireAuth bool
	// AuditOverflow is what a full audit buffer does (--audit-overflow,
	// SIGNERD_AUDIT_OVERFLOW): "" refuses to sign until it is drained
	// (fail closed, the default, given as "refuse"), "drop" records a gap
	// entry and signs on. A pin because it decides whether anything can
	// be signed unrecorded: the image fixes it, PCR0 measures it, and every
	// document attests it.
	AuditOverflow string
}

// Pinned reports whether an identity must be sealed under a pinned key.
func (p Pins) Pinned() bool { return len(p.KMSKeys) > 0 }

// KeyringPolicy returns who must sign keyrings.
func (p Pins) KeyringPolicy() keyringsig.Policy {
	return keyringsig.Policy{Signers: p.KeyringSigners, Threshold: p.KeyringThreshold}
}

// KMSKeyStrings returns the pinned key ARNs.
func (p Pins) KMSKeyStrings() []string {
	out := make([]string, len(p.KMSKeys))
	for i, k := range p.KMSKeys {
		out[i] = k.String()
	}
	return out
}

// imageEnv are the environment variables through which an image pins
// signerd: Dockerfile.enclave sets each (ENV) from make image's variable
// of the same name without the prefix (KMS_KEYS=ARN,…), and nitro-cli
// writes the image's environment into the enclave's measured root file
// system. Each holds comma-separated values, given to its flag before the
// command line is parsed: a repeatable flag gets the values of both. A
// variable whose flag this signerd lacks stops it from starting, so a pin
// never goes unenforced.
var imageEnv = []struct{ name, flag string }{
	{imagepins.EnvKMSKeys, "kms-key"},
	{imagepins.EnvKeyringSigners, "keyring-signer"},
	{imagepins.EnvKeyringThreshold, "keyring-threshold"},
	{imagepins.EnvRequireAuth, "require-auth"},
	{imagepins.EnvAuditOverflow, "audit-overflow"},
}

// kmsKeyFlags is --kms-key: repeatable, each value a key ARN.
type kmsKeyFlags []kms.KeyARN

func (k *kmsKeyFlags) String() string { return fmt.Sprint(*k) }
func (k *kmsKeyFlags) Set(s string) error {
	a, err := kms.ParseKeyARN(s)
	if err != nil {
		return err
	}
	if slices.Contains(*k, a) {
		return fmt.Errorf("%s is pinned twice", a)
	}
	*k = append(*k, a)
	return nil
}

// keyringSignerFlags is --keyring-signer: repeatable, each value a
// SignerKey's VALUE.
type keyringSignerFlags []keyringsig.SignerKey

func (k *keyringSignerFlags) String() string { return fmt.Sprint(*k) }
func (k *keyringSignerFlags) Set(s string) error {
	v, err := keyringsig.ParseSignerKey(strings.TrimSpace(s))
	if err != nil {
		return err
	}
	for _, o := range *k {
		if o.Equal(v) {
			return fmt.Errorf("%s is pinned twice", v)
		}
	}
	*k = append(*k, v)
	return nil
}

// auditOverflowFlag is --audit-overflow: refuse (stored as "") or drop.
type auditOverflowFlag string

func (a *auditOverflowFlag) String() string {
	if *a == "" {
		return overflowRefuse
	}
	return string(*a)
}

func (a *auditOverflowFlag) Set(s string) error {
	switch s {
	case overflowRefuse:
		*a = ""
	case overflowDrop:
		*a = overflowDrop
	default:
		return fmt.Errorf("want %s (a full audit buffer stops signing until it is drained) or %s (it records a gap entry and signing goes on), got %q", overflowRefuse, overflowDrop, s)
	}
	return nil
}

type pcrFlags []string

func (p *pcrFlags) String() string     { return fmt.Sprint(*p) }
func (p *pcrFlags) Set(s string) error { *p = append(*p, s); return nil }

// parseConfig parses signerd's command line and the pins of imageEnv
// from getenv (nil: none).
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("signerd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "vsock://any:5005", "where the host connects: vsock://CID:PORT, unix:///PATH or tcp://HOST:PORT")
	proxy := fs.String("kms-proxy", "vsock://3:8000", "the vsock-proxy in front of KMS")
	var cfg Config
	fs.StringVar(&cfg.Attestation, "attestation", "nsm", "nsm (/dev/nsm) or simulated")
	fs.StringVar(&cfg.SimCADir, "sim-ca-dir", "", "the simulator's CA directory (only with --attestation simulated)")
	fs.Var((*pcrFlags)(&cfg.SimPCRs), "sim-pcr", "N=HEX, a simulated PCR value (repeatable; only with --attestation simulated)")
	fs.BoolVar(&cfg.SimDebugMode, "sim-debug-mode", false, "simulate a debug-mode enclave (only with --attestation simulated)")
	fs.StringVar(&cfg.KMSEndpoint, "kms-endpoint", "", "a different KMS URL (only with --attestation simulated)")
	fs.StringVar(&cfg.KMSCA, "kms-ca", "", "PEM file of an extra TLS root for KMS (only with --attestation simulated)")
	fs.StringVar(&cfg.LogFormat, "log-format", "json", "log lines on stderr as json or text")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "the least severe level logged: debug, info, warn or error")
	fs.IntVar(&cfg.MaxConns, "max-conns", wire.DefaultMaxConns, "the most connections from unprivileged source ports (1024 and up) served at once; privileged ones are not counted")
	frameMemory := fs.String("frame-memory", "8MiB", "the most memory frames in flight may hold, on all connections together: BYTES, or a number with KiB, MiB or GiB")
	fs.Var((*kmsKeyFlags)(&cfg.Pins.KMSKeys), "kms-key", "`ARN` of a KMS key an identity may be sealed under (repeatable: two during a rotation; also SIGNERD_KMS_KEYS, comma-separated); none: any key (unpinned)")
	fs.Var((*keyringSignerFlags)(&cfg.Pins.KeyringSigners), "keyring-signer", "`VALUE` of a keyring signer (ed25519:BASE64 or ecdsa-p256:BASE64, as signer keyring signer-key prints it) whose signature keyrings need (repeatable; also SIGNERD_KEYRING_SIGNERS, comma-separated); none: keyrings are loaded unchecked")
	fs.BoolVar(&cfg.Pins.RequireAuth, "require-auth", false, "refuse, at provisioning, any keyring that declares no clients (whose keys anyone reaching signerd could use); also SIGNERD_REQUIRE_AUTH=true")
	fs.IntVar(&cfg.NonceCapacity, "nonce-cache", defaultNonceCapacity, "the most nonces of authenticated requests remembered at once (about 40 bytes each); when full, authenticated requests are refused (auth_unavailable) until old ones expire")
	fs.IntVar(&cfg.Pins.KeyringThreshold, "keyring-threshold", 0, "`M`: how many distinct pinned keyring signers must sign each keyring (default 1; also SIGNERD_KEYRING_THRESHOLD)")
	fs.Var((*auditOverflowFlag)(&cfg.Pins.AuditOverflow), "audit-overflow", "what a full audit buffer does: refuse (signing stops until the host drains it) or drop (a gap entry records how many decisions went unrecorded, and signing goes on); a pin, attested (also SIGNERD_AUDIT_OVERFLOW)")
	fs.IntVar(&cfg.AuditBuffer, "audit-buffer", defaultAuditBuffer, "`N`: how many audit records (entries and checkpoints) wait for the host to drain them")
	if err := setImageEnv(fs, getenv); err != nil {
		return Config{}, err
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if cfg.Listen, err = transport.ParseAddr(*listen); err != nil {
		return Config{}, fmt.Errorf("--listen: %w", err)
	}
	if cfg.KMSProxy, err = transport.ParseAddr(*proxy); err != nil {
		return Config{}, fmt.Errorf("--kms-proxy: %w", err)
	}
	if cfg.FrameMemory, err = parseSize(*frameMemory); err != nil {
		return Config{}, fmt.Errorf("--frame-memory: %w", err)
	}
	return cfg, cfg.Validate()
}

// setImageEnv gives fs the values of imageEnv's variables.
func setImageEnv(fs *flag.FlagSet, getenv func(string) string) error {
	if getenv == nil {
		return nil
	}
	for _, e := range imageEnv {
		v := getenv(e.name)
		if strings.TrimSpace(v) == "" {
			continue
		}
		if fs.Lookup(e.flag) == nil {
			return fmt.Errorf("%s is set (%q), but this signerd has no --%s to enforce it: build the image with a signerd that has", e.name, v, e.flag)
		}
		for _, item := range imagepins.List(v) {
			if err := fs.Set(e.flag, item); err != nil {
				return fmt.Errorf("%s (the image's pins, make image %s=…): %w", e.name, strings.TrimPrefix(e.name, "SIGNERD_"), err)
			}
		}
	}
	return nil
}

// Validate checks the combination of settings.
func (c Config) Validate() error {
	switch c.LogFormat {
	case "", "json", "text":
	default:
		return fmt.Errorf("--log-format: want json or text, got %q", c.LogFormat)
	}
	if _, err := c.logLevel(); err != nil {
		return err
	}
	if c.MaxConns < 1 || c.MaxConns > maxMaxConns {
		return fmt.Errorf("--max-conns: want 1 to %d, got %d", maxMaxConns, c.MaxConns)
	}
	if c.FrameMemory < wire.MinFrameMemory || c.FrameMemory > maxFrameMemory {
		return fmt.Errorf("--frame-memory: want %s to %s, got %d bytes", formatSize(wire.MinFrameMemory), formatSize(maxFrameMemory), c.FrameMemory)
	}
	if c.NonceCapacity < 1 || c.NonceCapacity > maxNonceCapacity {
		return fmt.Errorf("--nonce-cache: want 1 to %d, got %d", maxNonceCapacity, c.NonceCapacity)
	}
	if c.AuditBuffer < minAuditBuffer || c.AuditBuffer > maxAuditBuffer {
		return fmt.Errorf("--audit-buffer: want %d to %d records, got %d", minAuditBuffer, maxAuditBuffer, c.AuditBuffer)
	}
	if err := c.Pins.KeyringPolicy().Validate(); err != nil {
		return fmt.Errorf("--keyring-signer, --keyring-threshold: %w", err)
	}
	switch c.Attestation {
	case "nsm":
		var errs []error
		for name, set := range map[string]bool{
			"--sim-ca-dir": c.SimCADir != "", "--sim-pcr": len(c.SimPCRs) > 0, "--sim-debug-mode": c.SimDebugMode,
			"--kms-endpoint": c.KMSEndpoint != "", "--kms-ca": c.KMSCA != "",
		} {
			if set {
				errs = append(errs, fmt.Errorf("%s is accepted only with --attestation simulated", name))
			}
		}
		return errors.Join(errs...)
	case "simulated":
		if c.KMSEndpoint != "" {
			u, err := url.Parse(c.KMSEndpoint)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				return fmt.Errorf("--kms-endpoint: want https://HOST[:PORT], got %q", c.KMSEndpoint)
			}
		}
		_, err := c.simPCRs()
		return err
	}
	return fmt.Errorf("--attestation: want nsm or simulated, got %q", c.Attestation)
}

// simPCRs parses the --sim-pcr values (N=HEX, N from 0 to 15, 96 hex
// digits) into the simulator's PCR overrides.
func (c Config) simPCRs() (map[int][]byte, error) {
	m := make(map[int][]byte, len(c.SimPCRs))
	for _, v := range c.SimPCRs {
		idx, hexv, ok := strings.Cut(v, "=")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || n < 0 || n > 15 {
			return nil, fmt.Errorf("--sim-pcr %q: want N=HEX with N from 0 to 15", v)
		}
		val, err := pcr.ParseHex(hexv)
		if err != nil {
			return nil, fmt.Errorf("--sim-pcr %q: %v", v, err)
		}
		if _, dup := m[n]; dup {
			return nil, fmt.Errorf("--sim-pcr: PCR%d given twice", n)
		}
		m[n] = val
	}
	return m, nil
}

// logLevel parses LogLevel; empty means info.
func (c Config) logLevel() (slog.Level, error) {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level: want debug, info, warn or error, got %q", c.LogLevel)
}

// Upper bounds of --max-conns and --frame-memory: beyond them a typo, not
// a choice (an enclave has a few GiB at most).
const (
	maxMaxConns      = 1 << 16
	maxFrameMemory   = 4 << 30
	maxNonceCapacity = 1 << 26 // some 2.5 GiB full
)

// parseSize parses BYTES or a number with a KiB, MiB or GiB suffix.
func parseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			num, mult = n, m
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("want BYTES or a number with KiB, MiB or GiB (e.g. 8MiB), got %q", s)
	}
	return n * mult, nil
}

// formatSize writes n in the largest unit that divides it.
func formatSize(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

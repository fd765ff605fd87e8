// Package doctor diagnoses a parent instance running enclave-signer: it
// reads the instance's state (nitro-cli, the vsock-proxy process and its
// allowlist, the instance role's credentials, the KMS key policy, the host
// shim) and reports each finding as ok, warning, error or skipped, with a
// fix for anything not ok.
//
// # Seams
//
// Every command, file and network call goes through a field of [Config]:
// [Runner] for nitro-cli, [fs.FS] for /proc and configuration files, an
// [http.Client] with base URLs for the instance metadata service and the
// shim, and [PolicyGetter] for KMS GetKeyPolicy. Tests drive the checks
// with recorded outputs in exactly the shapes the real tools print.
//
// # Checks
//
// [Run] gathers facts first (the enclave nitro-cli describes, the role and
// region IMDS reports, the PCRs the running enclave attests through the
// shim), then reports in this order: nitro-cli, vsock-proxy, credentials,
// shim, key-policy. docs/doctor.md describes each check and its fixes.
//
// The key-policy verdicts come from [policy.Policy.Evaluate]: "may this
// principal call kms:Decrypt with this attestation?" is asked of the same
// evaluator the KMS emulator enforces, never answered by string matching.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/policy"
)

// Status is a result's verdict.
type Status string

// Statuses, from good to bad; Skipped means the check's inputs were absent.
const (
	OK      Status = "ok"
	Skipped Status = "skipped"
	Warning Status = "warning"
	Error   Status = "error"
)

// Check names, in report order.
const (
	CheckNitroCLI    = "nitro-cli"
	CheckVsockProxy  = "vsock-proxy"
	CheckCredentials = "credentials"
	CheckShim        = "shim"
	CheckKeyPolicy   = "key-policy"
)

var checkOrder = []string{CheckNitroCLI, CheckVsockProxy, CheckCredentials, CheckShim, CheckKeyPolicy}

// Result is one finding.
type Result struct {
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	// Fix says what to do; empty when Status is OK.
	Fix string `json:"fix,omitempty"`
}

// Report is the outcome of Run: results in report order.
type Report struct {
	Results []Result `json:"results"`
}

// Count returns how many results have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// Failed reports whether any result is an error.
func (r *Report) Failed() bool { return r.Count(Error) > 0 }

// WriteText writes one line per result, "ok      check: message", each
// followed by an indented "fix: …" line when there is a fix.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, res := range r.Results {
		fmt.Fprintf(&b, "%-7s %s: %s\n", res.Status, res.Check, res.Message)
		if res.Fix != "" {
			fmt.Fprintf(&b, "        fix: %s\n", res.Fix)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one indented JSON object with the
// results and the counts per status.
func (r *Report) WriteJSON(w io.Writer) error {
	out := struct {
		Results  []Result `json:"results"`
		OK       int      `json:"ok"`
		Warnings int      `json:"warnings"`
		Errors   int      `json:"errors"`
		Skipped  int      `json:"skipped"`
	}{r.Results, r.Count(OK), r.Count(Warning), r.Count(Error), r.Count(Skipped)}
	if out.Results == nil {
		out.Results = []Result{}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// plural is n and word, with an s unless n is 1: "1 key", "3 keys".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// Summary is a one-line count, e.g. "1 error, 2 warnings, 3 ok, 1 skipped".
func (r *Report) Summary() string {
	return fmt.Sprintf("%s, %s, %d ok, %d skipped",
		plural(r.Count(Error), "error"), plural(r.Count(Warning), "warning"), r.Count(OK), r.Count(Skipped))
}

// Runner runs an external command and returns its standard output. A
// command that cannot be found yields an error matching exec.ErrNotFound.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// PolicyGetter fetches a KMS key's policy (GetKeyPolicy, policy name
// "default"). keyID is a key id or key ARN.
type PolicyGetter interface {
	GetKeyPolicy(ctx context.Context, keyID string) (string, error)
}

// Default values of Config fields.
const (
	DefaultIMDSEndpoint = "http://169.254.169.254"
	DefaultShimEndpoint = "http://127.0.0.1:8080"
	DefaultKMSProxyPort = 8000
	DefaultProxyConfig  = "/etc/nitro_enclaves/vsock-proxy.yaml"
	// ExpiryWarning is how close to expiry instance-role credentials earn
	// a warning: EC2 makes new credentials available at least five minutes
	// before the old ones expire.
	ExpiryWarning = 5 * time.Minute
)

// Config holds the seams and the operator's inputs. The zero value runs
// no external command and reads no file: each check whose seam is nil is
// reported as skipped.
type Config struct {
	// Runner runs nitro-cli. Nil skips the nitro-cli check.
	Runner Runner
	// ProcFS is /proc: PID directories with cmdline files (and cwd links,
	// to resolve a relative --config). Nil skips the vsock-proxy check.
	ProcFS fs.FS
	// RootFS is the root file system, for absolute paths such as the
	// vsock-proxy allowlist (read as RootFS path without the leading "/").
	// Nil: absolute configuration files are reported as unreadable.
	RootFS fs.FS
	// HTTP reaches IMDS and the shim. Nil skips the credentials and shim
	// checks. It should not use an HTTP proxy: both are local addresses.
	HTTP *http.Client
	// IMDSEndpoint is the instance metadata service's base URL; empty
	// means DefaultIMDSEndpoint.
	IMDSEndpoint string
	// ShimEndpoint is the host shim's base URL; empty means
	// DefaultShimEndpoint.
	ShimEndpoint string
	// NewPolicyGetter makes the KMS client once the region is known (from
	// Region, else IMDS, else the vsock-proxy's remote). Nil, or an empty
	// KeyID, skips the key-policy check.
	NewPolicyGetter func(ctx context.Context, region string) (PolicyGetter, error)
	// KeyID is the KMS key whose policy to check (id, ARN or alias).
	KeyID string
	// Measurements are the EIF's, from nitro-cli build-enclave or
	// describe-eif; nil skips the EIF's verdict. MeasurementsName labels
	// them (the file name).
	Measurements     *policy.Measurements
	MeasurementsName string
	// Region is the AWS region of the key; empty means the instance's
	// region from IMDS.
	Region string
	// EnclaveRole is the principal the key policy is evaluated for: the
	// instance role's ARN (arn:aws:iam::ACCOUNT:role/NAME) or a session
	// ARN. Empty means derived from IMDS: the instance role's session
	// arn:aws:sts::ACCOUNT:assumed-role/ROLE/INSTANCE-ID, as KMS sees it.
	EnclaveRole string
	// KMSProxyPort is the vsock port of signerd's --kms-proxy; zero means
	// DefaultKMSProxyPort.
	KMSProxyPort uint32
	// Timeout bounds each HTTP request and command; zero means 5 s.
	Timeout time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives debug records of what was read; nil discards.
	Log *slog.Logger
}

func (c *Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 5 * time.Second
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Config) proxyPort() uint32 {
	if c.KMSProxyPort != 0 {
		return c.KMSProxyPort
	}
	return DefaultKMSProxyPort
}

func (c *Config) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func trimBase(u, def string) string {
	if u == "" {
		u = def
	}
	return strings.TrimRight(u, "/")
}

// Run runs every check and returns the report. It fails only when ctx is
// done; everything else is a result.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	var results []Result
	add := func(rs ...Result) { results = append(results, rs...) }

	// Facts first: later checks use what earlier ones learnt.
	enclaves := checkNitroCLI(ctx, &cfg)
	add(enclaves.results...)
	inst := checkCredentials(ctx, &cfg)
	add(inst.results...)
	region := cfg.Region
	if region == "" {
		region = inst.region
	}
	proxy := checkVsockProxy(ctx, &cfg, region)
	add(proxy.results...)
	if region == "" {
		region = proxy.region
	}
	shim := checkShim(ctx, &cfg, enclaves.running)
	add(shim.results...)
	add(checkKeyPolicy(ctx, &cfg, keyPolicyFacts{
		region:  region,
		enclave: enclaves.running,
		inst:    inst,
		status:  shim.status,
	})...)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("doctor: %w", err)
	}

	// Stable report order, whatever order the facts were gathered in.
	var ordered []Result
	for _, name := range checkOrder {
		for _, r := range results {
			if r.Check == name {
				ordered = append(ordered, r)
			}
		}
	}
	return &Report{Results: ordered}, nil
}

// short abbreviates a PCR value for messages: the first 16 hex digits and
// an ellipsis.
func short(v string) string {
	if len(v) > 16 {
		return v[:16] + "…"
	}
	return v
}

// oneLine flattens a message from a file or a server into one bounded
// line, so that nothing it holds can forge report lines.
func oneLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xc0 != 0x80 }

//go:build unix

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/bench"
)

func TestBenchUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dev", "--endpoint", "http://127.0.0.1:1"}, "--dev and --endpoint: give one target at most"},
		{[]string{"--endpoint", "http://127.0.0.1:1", "--enclave", "unix:///x"}, "give one target at most"},
		{[]string{"--transport", "grpc"}, `--transport "grpc": want wire or http`},
		{[]string{"--endpoint", "http://127.0.0.1:1", "--transport", "wire"}, "--transport wire needs --enclave ADDR or --dev"},
		{[]string{"--enclave", "unix:///x.sock", "--transport", "http"}, "--transport http needs --endpoint URL or --dev"},
		{[]string{"--endpoint", "http://192.0.2.1:8080"}, "only targets loopback"},
		{[]string{"--enclave", "tcp://192.0.2.1:5005"}, "only targets unix sockets, vsock or loopback"},
		{[]string{"--enclave", "/x.sock"}, "--enclave: invalid address"},
		{[]string{"--alg", "rsa"}, `--alg: unknown algorithm "rsa"`},
		{[]string{"--key", "bad key"}, "--key:"},
		{[]string{"--duration", "0s"}, "--duration: want more than 0"},
		{[]string{"--concurrency", "0"}, "--concurrency: want 1 to 4096, got 0"},
		{[]string{"--enclave-cpus", "-1"}, "--enclave-cpus -1: want 1 or more"},
		{[]string{"--enclave-cpus", "4096"}, "--enclave-cpus: enclave CPUs: want at most"},
		{[]string{"--conns", "0"}, "--conns 0: want 1 to 64"},
		{[]string{"--message-size", "100000000"}, "--message-size 100000000: want 0 to 65536"},
		{[]string{"--max-ops", "0"}, "--max-ops: want 1 or more"},
		{[]string{"--enclave", "unix:///x.sock", "--signerd", "/bin/signerd"}, "--signerd goes with --dev only"},
		{[]string{"--dev", "--http", "nonsense"}, "--http:"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--nope"}, "flag provided but not defined: -nope"},
		{[]string{"--raw", "--alg", "rsa"}, `bench --raw: --alg: unknown algorithm "rsa"`},
		{[]string{"--raw", "--concurrency", "0"}, "bench --raw: --concurrency: want 1 to 4096"},
		{[]string{"--dev", "--client", "app1", "--client-secret", "f"}, "with --dev, --auth signs as the dev stack's client app1"},
		{[]string{"--endpoint", "http://127.0.0.1:1", "--auth"}, "--auth goes with --dev"},
		{[]string{"--endpoint", "http://127.0.0.1:1", "--client", "app1"}, "--client ID and --client-secret FILE go together"},
	} {
		code, stdout, stderr := signer(t, "", append([]string{"bench"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("signer bench %q: exit %d, stderr %q, stdout %q\nwant exit 2 and …%s…", c.args, code, stderr, stdout, c.want)
		}
	}
}

// benchJSON is the documented JSON line (docs/performance.md); each field
// a pointer, so that a missing one shows.
type benchJSON struct {
	Alg         *string  `json:"alg"`
	Transport   *string  `json:"transport"`
	Concurrency *int     `json:"concurrency"`
	EnclaveCPUs *int     `json:"enclave_cpus"`
	DurationS   *float64 `json:"duration_s"`
	Ops         *uint64  `json:"ops"`
	Errors      *uint64  `json:"errors"`
	OpsPerS     *float64 `json:"ops_per_s"`
	RawOpsPerS  *float64 `json:"raw_ops_per_s"`
	Ratio       *float64 `json:"ratio"`
	P50us       *float64 `json:"p50_us"`
	P99us       *float64 `json:"p99_us"`
	P999us      *float64 `json:"p999_us"`
	SignerdCPUs string   `json:"signerd_cpus"`
	LoadCPUs    string   `json:"load_cpus"`
	Client      string   `json:"client"`

	// With --dev only; the shim's with --transport http only.
	SignerdRSSStart *uint64 `json:"signerd_rss_kib_start"`
	SignerdRSSEnd   *uint64 `json:"signerd_rss_kib_end"`
	ShimRSSStart    *uint64 `json:"shim_rss_kib_start"`
	ShimRSSEnd      *uint64 `json:"shim_rss_kib_end"`
}

// checkMemoryFields checks which memory figures a run reported: signerd's
// with a dev stack, the shim's with a dev stack over HTTP, each a
// plausible resident size (1 MiB to 1 GiB) for both halves of the window.
func checkMemoryFields(t *testing.T, r benchJSON, signerd, shim bool) {
	t.Helper()
	for _, f := range []struct {
		name        string
		start, end  *uint64
		wantPresent bool
	}{
		{"signerd", r.SignerdRSSStart, r.SignerdRSSEnd, signerd},
		{"shim", r.ShimRSSStart, r.ShimRSSEnd, shim},
	} {
		switch {
		case !f.wantPresent && (f.start != nil || f.end != nil):
			t.Errorf("%s_rss_kib_start/end present (%v, %v): want them only when the bench started that process", f.name, f.start, f.end)
		case f.wantPresent && (f.start == nil || f.end == nil):
			t.Errorf("%s_rss_kib_start/end missing", f.name)
		case f.wantPresent:
			for _, v := range []uint64{*f.start, *f.end} {
				if v < 1<<10 || v > 1<<20 {
					t.Errorf("%s resident size %d KiB: want 1 MiB to 1 GiB", f.name, v)
				}
			}
		}
	}
}

// runBenchBinary runs the built signer bench and checks its last line.
func runBenchBinary(t *testing.T, alg, transport string, concurrency int, args ...string) benchJSON {
	t.Helper()
	bin := builtBinaries(t)
	cmd := exec.Command(filepath.Join(bin, "signer"), append([]string{"bench", "--json", "--duration", "1s", "--warmup", "200ms"}, args...)...)
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("signer bench %q: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	var r benchJSON
	dec := json.NewDecoder(strings.NewReader(last))
	if err := dec.Decode(&r); err != nil || dec.More() {
		t.Fatalf("last line is not one JSON object (%v): %q", err, last)
	}
	for name, missing := range map[string]bool{
		"alg": r.Alg == nil, "transport": r.Transport == nil, "concurrency": r.Concurrency == nil,
		"enclave_cpus": r.EnclaveCPUs == nil, "duration_s": r.DurationS == nil, "ops": r.Ops == nil,
		"errors": r.Errors == nil, "ops_per_s": r.OpsPerS == nil, "raw_ops_per_s": r.RawOpsPerS == nil,
		"ratio": r.Ratio == nil, "p50_us": r.P50us == nil, "p99_us": r.P99us == nil, "p999_us": r.P999us == nil,
	} {
		if missing {
			t.Fatalf("field %s missing from %s", name, last)
		}
	}
	if *r.Alg != alg || *r.Transport != transport || *r.Concurrency != concurrency {
		t.Errorf("alg %s transport %s concurrency %d, want %s %s %d", *r.Alg, *r.Transport, *r.Concurrency, alg, transport, concurrency)
	}
	if *r.Ops == 0 || *r.Errors != 0 || *r.Ratio <= 0 || *r.OpsPerS <= 0 || *r.RawOpsPerS <= 0 {
		t.Errorf("ops %d errors %d ratio %v: want ops, no errors, a ratio", *r.Ops, *r.Errors, *r.Ratio)
	}
	if *r.DurationS != 1 || !(*r.P50us > 0 && *r.P50us <= *r.P99us && *r.P99us <= *r.P999us) {
		t.Errorf("duration %v s, p50 %v p99 %v p999 %v µs: want 1 s and ordered quantiles", *r.DurationS, *r.P50us, *r.P99us, *r.P999us)
	}
	// signerd and the load generator have CPUs of their own.
	avail, _ := bench.AvailableCPUs()
	if len(avail) > 1 {
		if *r.EnclaveCPUs != bench.DefaultEnclaveCPUs(len(avail)) || r.SignerdCPUs == r.LoadCPUs || r.SignerdCPUs == "" || r.LoadCPUs == "" {
			t.Errorf("enclave_cpus %d, signerd on %q, load on %q: want %d and separate CPUs", *r.EnclaveCPUs, r.SignerdCPUs, r.LoadCPUs, bench.DefaultEnclaveCPUs(len(avail)))
		}
	}
	return r
}

func TestBenchDev(t *testing.T) {
	t.Run("wire", func(t *testing.T) {
		t.Parallel()
		r := runBenchBinary(t, "ed25519", "wire", 64, "--dev")
		checkMemoryFields(t, r, true, false)
	})
	t.Run("http", func(t *testing.T) {
		t.Parallel()
		r := runBenchBinary(t, "ecdsa-p256", "http", 8, "--dev", "--transport", "http", "--alg", "ecdsa-p256", "--concurrency", "8")
		checkMemoryFields(t, r, true, true)
	})
	t.Run("http-unix", func(t *testing.T) {
		t.Parallel()
		dir, err := os.MkdirTemp("", "bench-http")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		runBenchBinary(t, "ed25519", "http", 2, "--dev", "--transport", "http", "--http", "unix://"+filepath.Join(dir, "shim.sock"), "--concurrency", "2")
	})
	// Authenticated: every request signed afresh as the dev stack's app1,
	// through the shim and straight to signerd.
	for _, tr := range []string{"http", "wire"} {
		t.Run(tr+"-auth", func(t *testing.T) {
			t.Parallel()
			r := runBenchBinary(t, "ed25519", tr, 4, "--dev", "--auth", "--transport", tr, "--concurrency", "4")
			if r.Client != "app1" {
				t.Errorf("client %q, want app1", r.Client)
			}
		})
	}
}

// TestBenchAgainstRunningStack benchmarks a running signer dev: signerd
// straight over the wire protocol (--enclave), and the shim (--endpoint).
func TestBenchAgainstRunningStack(t *testing.T) {
	dir, err := os.MkdirTemp("", "bench-e2e")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p := startDev(t, dir)
	r := runBenchBinary(t, "ecdsa-secp256k1", "wire", 4, "--enclave", "unix://"+filepath.Join(dir, "signerd.sock"), "--alg", "ecdsa-secp256k1", "--concurrency", "4")
	checkMemoryFields(t, r, false, false)
	r = runBenchBinary(t, "ed25519", "http", 4, "--endpoint", p.url, "--concurrency", "4")
	checkMemoryFields(t, r, false, false)

	// A key the enclave does not have fails at once, saying why.
	bin := builtBinaries(t)
	cmd := exec.Command(filepath.Join(bin, "signer"), "bench", "--enclave", "unix://"+filepath.Join(dir, "signerd.sock"), "--key", "nope", "--duration", "1s")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "the first request failed") || !strings.Contains(string(out), "nope") {
		t.Errorf("bench with an unknown key: %v\n%s\nwant exit 1 naming the key", err, out)
	}
}

// TestBenchRaw runs the hidden in-process mode as signer bench does: it
// reports the CPUs and GOMAXPROCS it ran with.
func TestBenchRaw(t *testing.T) {
	bin := builtBinaries(t)
	cmd := exec.Command(filepath.Join(bin, "signer"), "bench", "--raw", "--alg", "ecdsa-p256", "--duration", "200ms", "--warmup", "0s", "--concurrency", "1")
	cmd.Env = append(withoutGOMAXPROCS(os.Environ()), "GOMAXPROCS=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var r rawResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if r.Alg != "ecdsa-p256" || r.Ops == 0 || r.Errors != 0 || r.GOMAXPROCS != 1 || r.Workers != 1 || len(r.CPUs) == 0 || r.OpsPerS <= 0 || r.CPUSec <= 0 {
		t.Errorf("raw result %+v", r)
	}
}

// TestBenchAsClient benchmarks a running signer dev --auth as its client
// app2 (--client, --client-secret): over the wire protocol, where the
// client learns the audience from signerd's status, and through the shim.
func TestBenchAsClient(t *testing.T) {
	dir, err := os.MkdirTemp("", "bench-auth")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p := startDev(t, dir, "--auth")
	secret := filepath.Join(dir, "clients", "app2.secret")
	r := runBenchBinary(t, "ecdsa-p256", "wire", 4, "--enclave", "unix://"+filepath.Join(dir, "signerd.sock"), "--alg", "ecdsa-p256",
		"--key", "dev-app2", "--concurrency", "4", "--client", "app2", "--client-secret", secret)
	if r.Client != "app2" {
		t.Errorf("client %q, want app2", r.Client)
	}
	runBenchBinary(t, "ed25519", "http", 4, "--endpoint", p.url, "--concurrency", "4", "--client", "app2", "--client-secret", secret, "--audience", "dev")
	// Without credentials a policed key fails at once, saying why.
	cmd := exec.Command(filepath.Join(builtBinaries(t), "signer"), "bench", "--endpoint", p.url, "--duration", "1s")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "HTTP 401") {
		t.Errorf("bench without credentials: %v\n%s\nwant exit 1 and the 401", err, out)
	}
}

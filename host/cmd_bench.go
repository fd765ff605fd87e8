//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/bench"
	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// runBench is `signer bench`: a closed loop of N concurrent signing
// requests against the enclave (wire protocol) or the host shim (HTTP),
// with signerd on CPUs of its own, and in the same run the same signing
// in process on those CPUs, for the ratio. internal/bench does the measuring;
// this is the wiring. docs/performance.md describes the method.
func runBench(e *env) error {
	if len(e.args) > 0 && e.args[0] == "--raw" {
		return runBenchRaw(e, e.args[1:])
	}
	o, err := parseBenchFlags(e)
	if err != nil {
		return err
	}
	return o.run(e)
}

// benchOptions are signer bench's flags, checked.
type benchOptions struct {
	target      string // "dev", "endpoint" or "enclave"
	endpoint    string
	enclave     transport.Addr
	transport   string // "wire" or "http"
	alg         keyring.Algorithm
	keyID       string
	duration    time.Duration
	warmup      time.Duration
	concurrency int
	enclaveCPUs int // 0: the default
	conns       int
	msgSize     int
	maxOps      uint64
	json        bool
	signerd     string
	httpAddr    string
	// auth (--dev --auth) signs as the dev stack's client app1;
	// authFlags (--client, --client-secret, --audience) as the client
	// given, against --endpoint or --enclave.
	auth      bool
	authFlags *authFlags
}

// devKeyIDs are the keys signer dev's keyring holds, by algorithm.
var devKeyIDs = map[keyring.Algorithm]string{
	keyring.Ed25519:        "dev-ed25519",
	keyring.ECDSAP256:      "dev-p256",
	keyring.ECDSASecp256k1: "dev-secp256k1",
}

// maxBenchMessage bounds --message-size: a signing request, not a bulk
// transfer.
const maxBenchMessage = 64 << 10

func parseBenchFlags(e *env) (*benchOptions, error) {
	fs := newFlagSet(e, "bench")
	dev := fs.Bool("dev", false, "start a dev stack of its own in a temporary directory (the default when no target is given)")
	endpoint := fs.String("endpoint", "", "benchmark the host shim at `URL` (http://127.0.0.1:PORT or unix:///PATH) over HTTP")
	enclave := fs.String("enclave", "", "benchmark signerd at `ADDR` (unix:///PATH, vsock://CID:PORT, tcp://127.0.0.1:PORT) over the wire protocol; it must be provisioned")
	tr := fs.String("transport", "", "wire (straight to signerd) or http (through the shim); default wire, or http with --endpoint")
	alg := fs.String("alg", string(keyring.Ed25519), "the algorithm: ed25519, ecdsa-p256 or ecdsa-secp256k1")
	keyID := fs.String("key", "", "the key `ID` to sign with (default: the dev keyring's key of --alg: dev-ed25519, dev-p256, dev-secp256k1)")
	duration := fs.Duration("duration", 10*time.Second, "the measured window")
	warmup := fs.Duration("warmup", time.Second, "uncounted load before the window (connections, caches, scheduler)")
	concurrency := fs.Int("concurrency", 64, "requests in flight at once (closed loop)")
	enclaveCPUs := fs.Int("enclave-cpus", 0, "CPUs given to signerd and to the in-process measurement (default half the machine's, at least 1); the rest run the load generator and the shim")
	conns := fs.Int("conns", wireclient.DefaultConns, "wire connections to signerd (as the shim's enclave_connections)")
	msgSize := fs.Int("message-size", 32, "bytes of each message signed")
	maxOps := fs.Uint64("max-ops", bench.DefaultMaxOps, "end the window early after this many requests")
	jsonOut := fs.Bool("json", false, "print one JSON object as the last line (the summary goes to stderr)")
	signerd := fs.String("signerd", "", "with --dev: the signerd binary (default: beside signer, else on PATH)")
	httpAddr := fs.String("http", "", "with --dev: the shim's HTTP address (default: a free 127.0.0.1 port)")
	auth := fs.Bool("auth", false, "with --dev: start the stack as signer dev --auth does and sign every request as its client app1 (authenticated requests)")
	af := addAuthFlags(fs)
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, unexpectedArg("bench", pos[0], "")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	o := &benchOptions{
		duration: *duration, warmup: *warmup, concurrency: *concurrency, enclaveCPUs: *enclaveCPUs,
		conns: *conns, msgSize: *msgSize, maxOps: *maxOps, json: *jsonOut, signerd: *signerd, httpAddr: *httpAddr,
		auth: *auth, authFlags: af,
	}
	if err := af.check("bench"); err != nil {
		return nil, err
	}
	var targets []string
	if *dev {
		targets = append(targets, "--dev")
	}
	if *endpoint != "" {
		targets = append(targets, "--endpoint")
	}
	if *enclave != "" {
		targets = append(targets, "--enclave")
	}
	switch {
	case len(targets) > 1:
		return nil, usageErrorf("bench: %s: give one target at most", strings.Join(targets, " and "))
	case *endpoint != "":
		o.target, o.endpoint = "endpoint", *endpoint
		if err := bench.CheckEndpoint(*endpoint); err != nil {
			return nil, usageErrorf("bench: --endpoint: %v", err)
		}
	case *enclave != "":
		o.target = "enclave"
		a, err := transport.ParseAddr(*enclave)
		if err != nil {
			return nil, usageErrorf("bench: --enclave: %v", err)
		}
		if err := bench.CheckEnclaveAddr(a); err != nil {
			return nil, usageErrorf("bench: --enclave: %v", err)
		}
		o.enclave = a
	default:
		o.target = "dev"
	}
	switch {
	case o.target == "dev" && *af.client != "":
		return nil, usageErrorf("bench: --client signs against --endpoint or --enclave; with --dev, --auth signs as the dev stack's client app1")
	case o.target != "dev" && o.auth:
		return nil, usageErrorf("bench: --auth goes with --dev; against --endpoint or --enclave, give --client ID --client-secret FILE")
	}
	if o.target != "dev" {
		for _, f := range []string{"signerd", "http"} {
			if set[f] {
				return nil, usageErrorf("bench: --%s goes with --dev only", f)
			}
		}
	}

	switch *tr {
	case "":
		o.transport = "wire"
		if o.target == "endpoint" {
			o.transport = "http"
		}
	case "wire", "http":
		o.transport = *tr
	default:
		return nil, usageErrorf("bench: --transport %q: want wire or http", *tr)
	}
	if o.target == "endpoint" && o.transport != "http" {
		return nil, usageErrorf("bench: --endpoint is the shim's HTTP API: --transport wire needs --enclave ADDR or --dev")
	}
	if o.target == "enclave" && o.transport != "wire" {
		return nil, usageErrorf("bench: --enclave speaks the wire protocol: --transport http needs --endpoint URL or --dev")
	}

	a, err := keyring.ParseAlgorithm(*alg)
	if err != nil {
		return nil, usageErrorf("bench: --alg: %v", err)
	}
	o.alg = a
	o.keyID = *keyID
	if o.keyID == "" {
		o.keyID = devKeyIDs[a]
	} else if err := keyring.CheckID(o.keyID); err != nil {
		return nil, usageErrorf("bench: --key: %v", err)
	}

	ro := bench.Options{Concurrency: o.concurrency, Duration: o.duration, Warmup: o.warmup}
	if err := ro.Validate(); err != nil {
		return nil, usageErrorf("bench: --%v", err)
	}
	switch {
	case o.enclaveCPUs < 0:
		return nil, usageErrorf("bench: --enclave-cpus %d: want 1 or more", o.enclaveCPUs)
	case o.conns < 1 || o.conns > 64:
		return nil, usageErrorf("bench: --conns %d: want 1 to 64", o.conns)
	case o.msgSize < 0 || o.msgSize > maxBenchMessage:
		return nil, usageErrorf("bench: --message-size %d: want 0 to %d", o.msgSize, maxBenchMessage)
	case o.maxOps < 1:
		return nil, usageErrorf("bench: --max-ops: want 1 or more")
	}
	if o.httpAddr != "" {
		if _, err := httpURL(o.httpAddr); err != nil {
			return nil, usageErrorf("bench: --http: %v", err)
		}
	}
	return o, nil
}

// benchResult is the JSON summary, one line with --json. Every field is
// documented in docs/performance.md#the-json-line (TestBenchJSONDocumented);
// scripts rely on the names, so fields are added, never renamed.
type benchResult struct {
	Alg         string  `json:"alg"`
	Transport   string  `json:"transport"`
	Concurrency int     `json:"concurrency"`
	EnclaveCPUs int     `json:"enclave_cpus"`
	DurationS   float64 `json:"duration_s"`
	Ops         uint64  `json:"ops"`
	Errors      uint64  `json:"errors"`
	OpsPerS     float64 `json:"ops_per_s"`
	RawOpsPerS  float64 `json:"raw_ops_per_s"`
	Ratio       float64 `json:"ratio"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	P999us      float64 `json:"p999_us"`

	Target      string  `json:"target"`
	KeyID       string  `json:"key_id"`
	MeanUs      float64 `json:"mean_us"`
	MaxUs       float64 `json:"max_us"`
	WarmupS     float64 `json:"warmup_s"`
	MessageSize int     `json:"message_size"`
	SignerdCPUs string  `json:"signerd_cpus"`
	LoadCPUs    string  `json:"load_cpus"`
	RawOps      uint64  `json:"raw_ops"`
	FirstError  string  `json:"first_error,omitempty"`
	// Client is the client the requests were signed as (--auth: app1;
	// --client); absent when they went unauthenticated.
	Client string `json:"client,omitempty"`
	// CPU time over the windows (with --dev, where signerd's is known):
	// signatures per CPU-second through signerd and in process, and their
	// ratio, which other load on the machine disturbs far less than the
	// wall-clock ratio.
	SignerdCPUSec   float64 `json:"signerd_cpu_s,omitempty"`
	RawCPUSec       float64 `json:"raw_cpu_s,omitempty"`
	OpsPerCPUSec    float64 `json:"ops_per_cpu_s,omitempty"`
	RawOpsPerCPUSec float64 `json:"raw_ops_per_cpu_s,omitempty"`
	CPURatio        float64 `json:"cpu_ratio,omitempty"`
	// Memory over the window (with --dev): the peak resident size of
	// signerd, and of the shim with --transport http, over the first half
	// of the window (start) and over the second (end). A soak run that
	// holds steady has end within a few percent of start.
	SignerdRSSStartKiB uint64 `json:"signerd_rss_kib_start,omitempty"`
	SignerdRSSEndKiB   uint64 `json:"signerd_rss_kib_end,omitempty"`
	ShimRSSStartKiB    uint64 `json:"shim_rss_kib_start,omitempty"`
	ShimRSSEndKiB      uint64 `json:"shim_rss_kib_end,omitempty"`
}

func (o *benchOptions) run(e *env) error {
	ctx := e.ctx
	avail, err := bench.AvailableCPUs()
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	n := o.enclaveCPUs
	if n == 0 {
		n = bench.DefaultEnclaveCPUs(len(avail))
	}
	encCPUs, loadCPUs, err := bench.SplitCPUs(avail, n)
	if err != nil {
		return usageErrorf("bench: --enclave-cpus: %v", err)
	}
	progress := e.stdout
	if o.json {
		progress = e.stderr
	}
	if slices.Equal(encCPUs, loadCPUs) {
		fmt.Fprintf(e.stderr, "signer bench: warning: only CPU %d is available: signerd, the shim and the load generator share it, so the figures are not those of an enclave\n", encCPUs[0])
	}
	// Pin this process, every thread of it, to the load generator's CPUs
	// before anything else starts: the dev stack's processes (the shim
	// among them) inherit it, and signerd is then moved to its own.
	pinned := true
	if err := bench.PinProcess(0, loadCPUs); err != nil {
		pinned = false
		fmt.Fprintf(e.stderr, "signer bench: warning: %v; running unpinned, the figures are not those of an enclave\n", err)
	} else {
		runtime.GOMAXPROCS(len(loadCPUs))
	}

	msg := make([]byte, o.msgSize)
	rand.Read(msg)

	var op bench.Op
	var closeTarget func()
	signerdPID := 0 // known with --dev: its CPU time and memory are sampled
	shimPID := 0    // known with --dev --transport http: its memory is sampled
	switch o.transport {
	case "wire":
		addr := o.enclave
		var creds *wireclient.Credentials
		if o.target == "dev" {
			st, stop, err := o.startDev(ctx, encCPUs, pinned)
			if err != nil {
				return err
			}
			defer stop()
			addr = transport.Addr{Scheme: transport.Unix, Path: filepath.Join(st.dir, "signerd.sock")}
			signerdPID = st.pid("signerd")
			if creds, err = o.devCredentials(st); err != nil {
				return err
			}
		} else if creds, err = o.authFlags.credentials("bench", func() (string, error) { return "", nil }); err != nil {
			// The client asks the enclave's status for the audience.
			return fmt.Errorf("bench: %w", err)
		}
		c := wireclient.New(addr, &wireclient.Options{Conns: o.conns, Credentials: creds})
		if creds != nil {
			clear(creds.Secret) // the client holds its own copy
		}
		defer c.Close()
		closeTarget = func() { c.Close() }
		op = bench.SignWire(c, o.keyID, msg)
	case "http":
		endpoint := o.endpoint
		var dev *devStack
		if o.target == "dev" {
			st, stop, err := o.startDev(ctx, encCPUs, pinned)
			if err != nil {
				return err
			}
			defer stop()
			dev = st
			endpoint = st.httpURL
			if strings.HasPrefix(st.opts.HTTP, "unix://") {
				endpoint = st.opts.HTTP
			}
			signerdPID = st.pid("signerd")
			shimPID = st.pid("shim")
		}
		hs, err := bench.NewHTTPSigner(endpoint, o.keyID, msg, o.concurrency)
		if err != nil {
			return usageErrorf("bench: --endpoint: %v", err)
		}
		defer hs.Close()
		rs, err := o.requestSigner(e, endpoint, dev)
		if err != nil {
			return err
		}
		if rs != nil {
			defer rs.Destroy()
			hs.Authorize(rs.Authorization)
		}
		closeTarget = hs.Close
		op = hs.Op()
	}

	// One request first, so that a target that cannot sign says why at
	// once rather than as N errors.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = op(pctx, 0)
	cancel()
	if err != nil {
		return &hintError{err: fmt.Errorf("bench: the first request failed: %w", err), hints: o.targetHints()}
	}

	fmt.Fprintf(progress, "signer bench: %s, %s (key %s), concurrency %d, %s after %s of warm-up; signerd on CPUs %s, load generator and shim on CPUs %s\n",
		o.transport, o.alg, o.keyID, o.concurrency, o.duration, o.warmup, bench.FormatCPUs(encCPUs), bench.FormatCPUs(loadCPUs))

	// In-process signing is measured for half the duration before the
	// load and half after, so that a change in the machine's other load
	// during the run weighs on both sides alike.
	var raw rawTotal
	if err := raw.add(o.runRaw(ctx, encCPUs, pinned)); err != nil {
		return err
	}
	var cpu0, cpu1 time.Duration
	var cpuErr error
	ro := bench.Options{Concurrency: o.concurrency, Duration: o.duration, Warmup: o.warmup, MaxOps: o.maxOps}
	var memory []*bench.MemorySampler // signerd's, then the shim's
	for _, pid := range []int{signerdPID, shimPID} {
		if pid != 0 {
			memory = append(memory, &bench.MemorySampler{PID: pid})
		}
	}
	if signerdPID != 0 {
		ro.OnWindow = func(open bool) {
			t, err := bench.ProcessCPUTime(signerdPID)
			if err != nil {
				cpuErr = err
			}
			if open {
				cpu0 = t
			} else {
				cpu1 = t
			}
			for _, m := range memory {
				if open {
					m.Start()
				}
			}
		}
	}
	res, err := bench.Run(ctx, ro, op)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	// Run has called OnWindow(false) by now: the window is closed.
	var peaks []bench.MemoryPeaks
	for i, m := range memory {
		p, err := m.Stop()
		if err != nil {
			fmt.Fprintf(e.stderr, "signer bench: warning: %v; no memory figures for %s\n", err, []string{"signerd", "the shim"}[i])
			p = bench.MemoryPeaks{}
		}
		peaks = append(peaks, p)
	}
	closeTarget()
	if err := raw.add(o.runRaw(ctx, encCPUs, pinned)); err != nil {
		return err
	}

	out := benchResult{
		Alg: string(o.alg), Transport: o.transport, Concurrency: o.concurrency, EnclaveCPUs: len(encCPUs),
		DurationS: round(res.Elapsed.Seconds(), 3), Ops: res.Ops, Errors: res.Errors,
		OpsPerS: round(res.OpsPerSecond(), 1), RawOpsPerS: round(raw.OpsPerS(), 1),
		P50us: us(res.Latency.Quantile(0.50)), P99us: us(res.Latency.Quantile(0.99)), P999us: us(res.Latency.Quantile(0.999)),
		Target: o.target, KeyID: o.keyID, MeanUs: us(res.Latency.Mean()), MaxUs: us(res.Latency.Max()),
		WarmupS: o.warmup.Seconds(), MessageSize: o.msgSize,
		SignerdCPUs: bench.FormatCPUs(encCPUs), LoadCPUs: bench.FormatCPUs(loadCPUs),
		RawOps: raw.ops,
	}
	if raw.OpsPerS() > 0 {
		out.Ratio = round(res.OpsPerSecond()/raw.OpsPerS(), 4)
	}
	if signerdPID != 0 && cpuErr == nil && cpu1 > cpu0 && raw.cpu > 0 {
		out.SignerdCPUSec = round((cpu1 - cpu0).Seconds(), 2)
		out.RawCPUSec = round(raw.cpu.Seconds(), 3)
		out.OpsPerCPUSec = round(float64(res.Ops)/(cpu1-cpu0).Seconds(), 1)
		out.RawOpsPerCPUSec = round(float64(raw.ops)/raw.cpu.Seconds(), 1)
		out.CPURatio = round(out.OpsPerCPUSec/out.RawOpsPerCPUSec, 4)
	}
	if len(peaks) > 0 {
		out.SignerdRSSStartKiB, out.SignerdRSSEndKiB = peaks[0].FirstHalfKiB, peaks[0].SecondHalfKiB
	}
	if len(peaks) > 1 {
		out.ShimRSSStartKiB, out.ShimRSSEndKiB = peaks[1].FirstHalfKiB, peaks[1].SecondHalfKiB
	}
	if res.FirstError != nil {
		out.FirstError = res.FirstError.Error()
	}
	if o.auth {
		out.Client = "app1"
	} else {
		out.Client = *o.authFlags.client
	}
	fmt.Fprintf(progress, "  through %s: %s in %.3f s: %.1f/s, %s\n", o.transport, plural(int(res.Ops), "signature"), res.Elapsed.Seconds(), out.OpsPerS, plural(int(res.Errors), "error"))
	fmt.Fprintf(progress, "  latency: p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs, max %.1f µs\n", out.P50us, out.P99us, out.P999us, out.MaxUs)
	fmt.Fprintf(progress, "  in process on CPUs %s: %.1f/s\n", out.SignerdCPUs, out.RawOpsPerS)
	fmt.Fprintf(progress, "  ratio: %.3f\n", out.Ratio)
	if out.CPURatio > 0 {
		fmt.Fprintf(progress, "  per CPU-second: %.1f through signerd (%.2f s of CPU), %.1f in process: ratio %.3f\n", out.OpsPerCPUSec, out.SignerdCPUSec, out.RawOpsPerCPUSec, out.CPURatio)
	}
	for i, p := range peaks {
		if p.FirstHalfKiB == 0 {
			continue
		}
		how := "peak resident size"
		if !p.Exact {
			how = "largest resident size sampled"
		}
		fmt.Fprintf(progress, "  memory of %s (%s): %.1f MiB over the first half of the window, %.1f MiB over the second (%+.1f %%)\n",
			[]string{"signerd", "the shim"}[i], how, float64(p.FirstHalfKiB)/1024, float64(p.SecondHalfKiB)/1024, 100*p.Growth())
	}
	if o.json {
		line, _ := json.Marshal(out)
		fmt.Fprintf(e.stdout, "%s\n", line)
	}
	if res.Errors > 0 {
		return fmt.Errorf("bench: %s failed; the first: %v", plural(int(res.Errors), "request"), res.FirstError)
	}
	return nil
}

func (o *benchOptions) targetHints() []string {
	switch o.target {
	case "enclave":
		return []string{"signerd must be provisioned (state ready): run it under `signer dev` or `signer serve`", "--key names the key; the default is signer dev's " + o.keyID}
	case "endpoint":
		return []string{"is the shim at " + o.endpoint + " ready? (signer status --endpoint " + o.endpoint + ")", "--key names the key; the default is signer dev's " + o.keyID}
	}
	return []string{"the dev stack's logs were in its temporary directory; run `signer dev` to see it start"}
}

// devCredentials are the credentials of the dev stack's client app1 with
// --auth; nil without.
func (o *benchOptions) devCredentials(st *devStack) (*wireclient.Credentials, error) {
	if !o.auth {
		return nil, nil
	}
	secret, err := wireclient.ReadSecretFile(clientSecretFile(st.dir, "app1"))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return &wireclient.Credentials{Client: "app1", Secret: secret, Audience: devAudience}, nil
}

// requestSigner signs the HTTP requests: as the dev stack's app1 with
// --auth (dev is the stack), as --client against --endpoint; nil when
// requests go unauthenticated.
func (o *benchOptions) requestSigner(e *env, endpoint string, dev *devStack) (*wireclient.RequestSigner, error) {
	var creds *wireclient.Credentials
	var err error
	if dev != nil {
		creds, err = o.devCredentials(dev)
	} else {
		creds, err = o.authFlags.credentials("bench", func() (string, error) { return shimAudience(e, endpoint) })
	}
	if err != nil || creds == nil {
		return nil, err
	}
	defer clear(creds.Secret)
	rs, err := wireclient.NewRequestSigner(*creds)
	if err != nil {
		return nil, usageErrorf("bench: %v", err)
	}
	return rs, nil
}

// startDev starts a dev stack in a temporary directory, with signerd
// pinned to encCPUs (when pin) and everything else on this process's
// CPUs, and waits until it is ready. stop ends the stack and removes the
// directory, with the development-only secrets it holds (the emulator's
// key material, the simulator CA's key: docs/development.md).
func (o *benchOptions) startDev(ctx context.Context, encCPUs []int, pin bool) (st *devStack, stop func(), err error) {
	dir, err := os.MkdirTemp("", "signer-bench-")
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	httpAddr := o.httpAddr
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0" // the shim picks a free port; st.opts.HTTP names it
	}
	opts := devOptions{Dir: dir, HTTP: httpAddr, SignerdPath: o.signerd, Auth: o.auth}
	if pin {
		opts.SignerdCPUs = encCPUs
	}
	st, err = startDevStack(ctx, opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("bench: dev stack: %w", err)
	}
	stop = func() {
		st.stop()
		os.RemoveAll(dir)
	}
	s, err := st.status(httpClientFor(st.opts.HTTP))
	if err != nil || s.State != "ready" {
		detail := fmt.Sprint(err)
		if s != nil {
			detail = s.State + " " + string(s.Error)
		}
		stop()
		return nil, nil, fmt.Errorf("bench: the dev stack is not ready: %s", detail)
	}
	return st, stop, nil
}

// rawResult is what `signer bench --raw` prints: in-process signing on the
// CPUs it was started on.
type rawResult struct {
	Alg        string  `json:"alg"`
	Ops        uint64  `json:"ops"`
	Errors     uint64  `json:"errors"`
	DurationS  float64 `json:"duration_s"`
	OpsPerS    float64 `json:"ops_per_s"`
	Workers    int     `json:"workers"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	CPUs       []int   `json:"cpus"`
	CPUSec     float64 `json:"cpu_s"` // CPU time used over the window
	FirstError string  `json:"first_error,omitempty"`
}

// rawTotal adds up the in-process measurements.
type rawTotal struct {
	ops     uint64
	elapsed time.Duration
	cpu     time.Duration
}

func (t *rawTotal) add(r *rawResult, err error) error {
	if err != nil {
		return err
	}
	t.ops += r.Ops
	t.elapsed += time.Duration(r.DurationS * float64(time.Second))
	t.cpu += time.Duration(r.CPUSec * float64(time.Second))
	return nil
}

func (t *rawTotal) OpsPerS() float64 {
	if t.elapsed <= 0 {
		return 0
	}
	return float64(t.ops) / t.elapsed.Seconds()
}

// runRaw measures in-process signing with o.alg in a child process
// started on encCPUs with GOMAXPROCS = len(encCPUs), as signerd runs: a
// closed loop of one worker per CPU (the most in-process signing can do
// there), for half the load's warm-up and window (it runs twice).
func (o *benchOptions) runRaw(ctx context.Context, encCPUs []int, pin bool) (*rawResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: in-process measurement: %w", err)
	}
	cmd := exec.CommandContext(ctx, self, "bench", "--raw",
		"--alg", string(o.alg), "--duration", (o.duration / 2).String(), "--warmup", (o.warmup / 2).String(),
		"--concurrency", strconv.Itoa(len(encCPUs)), "--message-size", strconv.Itoa(o.msgSize))
	cmd.Env = append(withoutGOMAXPROCS(os.Environ()), "GOMAXPROCS="+strconv.Itoa(len(encCPUs)))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if pin {
		err = bench.StartPinned(cmd, encCPUs)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return nil, fmt.Errorf("bench: in-process measurement: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("bench: in-process measurement: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var r rawResult
	if err := json.Unmarshal(lastLine(stdout.Bytes()), &r); err != nil {
		return nil, fmt.Errorf("bench: in-process measurement printed %q: %v", stdout.String(), err)
	}
	if pin && !slices.Equal(r.CPUs, encCPUs) {
		return nil, fmt.Errorf("bench: in-process measurement ran on CPUs %s, want %s", bench.FormatCPUs(r.CPUs), bench.FormatCPUs(encCPUs))
	}
	if r.Errors > 0 {
		return nil, fmt.Errorf("bench: in-process measurement: %s failed; the first: %s", plural(int(r.Errors), "signature"), r.FirstError)
	}
	return &r, nil
}

func withoutGOMAXPROCS(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return out
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// runBenchRaw is the hidden `signer bench --raw`: in-process signing in a
// closed loop, on whatever CPUs and GOMAXPROCS it was started with; one
// JSON line (rawResult) on stdout.
func runBenchRaw(e *env, args []string) error {
	fs := newFlagSet(e, "bench --raw")
	alg := fs.String("alg", string(keyring.Ed25519), "the algorithm")
	duration := fs.Duration("duration", 10*time.Second, "the measured window")
	warmup := fs.Duration("warmup", time.Second, "uncounted signing before the window")
	concurrency := fs.Int("concurrency", runtime.GOMAXPROCS(0), "workers")
	msgSize := fs.Int("message-size", 32, "bytes of each message signed")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return unexpectedArg("bench", pos[0], "")
	}
	a, err := keyring.ParseAlgorithm(*alg)
	if err != nil {
		return usageErrorf("bench --raw: --alg: %v", err)
	}
	if *msgSize < 0 || *msgSize > maxBenchMessage {
		return usageErrorf("bench --raw: --message-size %d: want 0 to %d", *msgSize, maxBenchMessage)
	}
	ro := bench.Options{Concurrency: *concurrency, Duration: *duration, Warmup: *warmup}
	if err := ro.Validate(); err != nil {
		return usageErrorf("bench --raw: --%v", err)
	}
	cpus, err := bench.AvailableCPUs()
	if err != nil {
		return err
	}
	key, destroy, err := bench.NewKey(a)
	if err != nil {
		return fmt.Errorf("bench --raw: %w", err)
	}
	defer destroy()
	msg := make([]byte, *msgSize)
	rand.Read(msg)
	var cpu0, cpu1 time.Duration
	ro.OnWindow = func(open bool) {
		t, _ := bench.ProcessCPUTime(0)
		if open {
			cpu0 = t
		} else {
			cpu1 = t
		}
	}
	res, err := bench.Run(e.ctx, ro, bench.SignInProcess(key, msg))
	if err != nil {
		return fmt.Errorf("bench --raw: %w", err)
	}
	out := rawResult{
		Alg: string(a), Ops: res.Ops, Errors: res.Errors, DurationS: res.Elapsed.Seconds(),
		OpsPerS: res.OpsPerSecond(), Workers: *concurrency, GOMAXPROCS: runtime.GOMAXPROCS(0), CPUs: cpus,
		CPUSec: max(0, cpu1-cpu0).Seconds(),
	}
	if res.FirstError != nil {
		out.FirstError = res.FirstError.Error()
	}
	line, _ := json.Marshal(out)
	fmt.Fprintf(e.stdout, "%s\n", line)
	return nil
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// us is d in microseconds, to 0.1 µs.
func us(d time.Duration) float64 { return round(float64(d)/float64(time.Microsecond), 1) }

// pid returns the process id of the stack's child called name, 0 if none.
func (s *devStack) pid(name string) int {
	for _, c := range s.children {
		if c.name == name && c.cmd.Process != nil {
			return c.cmd.Process.Pid
		}
	}
	return 0
}

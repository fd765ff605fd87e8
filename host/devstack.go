//go:build unix

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyringsig"
	enclavekms "github.com/enclave-signer/enclave-signer/internal/kms"
	"github.com/enclave-signer/enclave-signer/internal/kms/kmssigner"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/policy"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

// The development stack's fixed names. Everything signer dev creates lives
// in its directory. docs/development.md says what each file holds: two are
// secrets, in development only (kms-state.json holds the emulator's key
// material, ca/root.key the simulator CA's key).
const (
	devRegion    = "us-east-1"
	devAccount   = "000000000000"
	devRoleName  = "dev"
	devPrincipal = "arn:aws:iam::" + devAccount + ":role/" + devRoleName // the emulator's test/test credential, and the role of its IMDS
	devKeyAlias  = "alias/enclave-signer-dev"
	// devSignerAlias names the emulator's signing key that signs the dev
	// keyrings and that signerd pins (--keyring-signer).
	devSignerAlias = "alias/enclave-signer-dev-keyring-signer"
	// devKeyringID is keyring.age's keyring id; devKeyringValidity how
	// long its statement is signed for (signer dev signs it again when
	// less than a day is left).
	devKeyringID       = "dev"
	devKeyringValidity = 365 * 24 * time.Hour
)

// devOptions configures a development stack.
type devOptions struct {
	Dir         string   // the stack's directory (created)
	HTTP        string   // the shim's listen address
	DebugMode   bool     // simulate a debug-mode enclave
	Keyrings    []string // extra age-encrypted keyrings
	PolicyFile  string   // replaces the generated key policy
	SignerdPath string   // the signerd binary; "" finds it
	// SignerdCPUs, when set, pins signerd to these CPUs (as taskset does)
	// with GOMAXPROCS = len(SignerdCPUs), like an enclave's own vCPUs.
	SignerdCPUs []int
	// ReadyTimeout bounds the wait for /readyz; 0 means 20 s.
	ReadyTimeout time.Duration
	// Events, when not nil, gets a line for each event of the running
	// stack (signerd exited, restarted): signer dev's terminal.
	Events io.Writer
	// SignerdListen, when set (tcp://127.0.0.1:PORT), is where signerd
	// listens instead of DIR/signerd.sock: over TCP the shim dials from a
	// privileged source port, as over vsock in production.
	SignerdListen string
	// IMDSCredentials, when set, is the lifetime of the instance-role
	// credentials the emulator's IMDS hands out; the shim then takes
	// its credentials from there (no static keys in its environment) and
	// refreshes them a third of the lifetime before they expire. Zero:
	// the static test/test credential.
	IMDSCredentials time.Duration
	// KMSThrottle is the fraction of KMS requests the emulator answers
	// with ThrottlingException (0 to below 1).
	KMSThrottle float64
	// Auth runs signerd with --require-auth and loads keyring-auth.age, a
	// keyring with clients (devauth.go), instead of keyring.age.
	Auth bool
	// AuditBuffer, when set, is signerd's --audit-buffer.
	AuditBuffer int
}

// The bounds of devOptions.IMDSCredentials: a provisioning must fit in a
// third of the lifetime, and the SDK reports instance-role credentials as
// expiring at most an hour ahead, so a refresh margin above that would
// refresh again at once.
const (
	minIMDSLifetime = 10 * time.Second
	maxIMDSLifetime = time.Hour
)

// credentialRefresh is the shim's credential_refresh for credentials of
// this lifetime: a third of it. The emulator offers new credentials once
// the current ones are past half their lifetime, so a refresh at two
// thirds finds them, with a third left for the provisioning, as EC2's
// 5-minute margin leaves ample time for one.
func credentialRefresh(lifetime time.Duration) time.Duration {
	return (lifetime / 3).Truncate(time.Millisecond)
}

// devStack is a running development stack.
type devStack struct {
	opts        devOptions
	dir         string
	kmsEndpoint string
	imdsURL     string // the emulator's IMDS, with opts.IMDSCredentials
	httpURL     string
	keyID       string
	keyARN      string // signerd is pinned to it (--kms-key)
	recipient   string
	// keyringSigner signs the dev keyrings (the emulator's key under
	// devSignerAlias); signerPin is its pin, which signerd gets.
	keyringSigner *kmssigner.Signer
	signerPin     keyringsig.SignerKey
	pcr0          []byte
	created       []string
	// instance is this start's random label, given to its shim and
	// checked in /v1/status, so Ready is never said of another process.
	instance string
	lock     *devLock
	signerd  signerdCmd

	mu       sync.Mutex
	children []*child // in start order; signerd's entry is replaced when it restarts
	stopping bool

	stopped   chan struct{} // closed by stop
	fatal     chan struct{} // closed when the stack cannot go on; fatalErr says why
	fatalOnce sync.Once
	fatalErr  error
	bg        sync.WaitGroup // the watchers and signerd's supervisor
}

// signerdCmd is how signerd is started, the first time and at each restart.
type signerdCmd struct {
	path string
	args []string
	env  []string
	sock string // the socket it listens on
}

// child is a process of the stack, its output kept in DIR/logs/NAME.log.
type child struct {
	name string
	pid  int
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited and its output is logged
	err  error

	mu      sync.Mutex
	lines   []string // the last lines, for error messages
	watch   *regexp.Regexp
	matched chan string
}

func startChild(ctx context.Context, dir, name string, env []string, watch *regexp.Regexp, path string, args ...string) (*child, error) {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	c := &child{name: name, done: make(chan struct{}), watch: watch, matched: make(chan string, 1)}
	c.cmd = exec.Command(path, args...)
	c.cmd.Env = env
	c.cmd.SysProcAttr = devChildAttr()
	pr, pw := io.Pipe()
	c.cmd.Stdout, c.cmd.Stderr = pw, pw
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, path, err)
	}
	c.pid = c.cmd.Process.Pid
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			c.mu.Lock()
			c.lines = append(c.lines, line)
			if len(c.lines) > 20 {
				c.lines = c.lines[1:]
			}
			c.mu.Unlock()
			if c.watch != nil {
				if m := c.watch.FindStringSubmatch(line); m != nil {
					select {
					case c.matched <- m[len(m)-1]:
					default:
					}
				}
			}
		}
		io.Copy(io.Discard, pr)
		logf.Close()
	}()
	go func() {
		c.err = c.cmd.Wait()
		pw.Close()
		<-logged
		close(c.done)
	}()
	return c, nil
}

// tail returns the child's last output lines.
func (c *child) tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// failure explains a child that exited.
func (c *child) failure(dir string) error {
	return fmt.Errorf("%s exited (%s); last output (full log in %s):\n%s", c.name, exitDescription(c.err), filepath.Join(dir, "logs", c.name+".log"), c.tail())
}

// exitDescription says how a child ended: "exit status 1", "signal:
// killed".
func exitDescription(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
}

// waitFor waits until ready reports true, the child exits, the stack
// fails, ctx ends (signer dev was interrupted while starting), or the
// timeout.
func (s *devStack) waitFor(ctx context.Context, c *child, timeout time.Duration, what string, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-c.done:
			return c.failure(s.dir)
		case <-s.fatal:
			return s.fatalErr
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for the %s's %s", c.name, what)
		default:
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s after %s; last output:\n%s", c.name, what, timeout, c.tail())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tcpReady reports whether something accepts connections at hostport.
func tcpReady(hostport string) func() bool {
	return func() bool {
		conn, err := net.DialTimeout("tcp", hostport, 100*time.Millisecond)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
}

func socketReady(path string) func() bool {
	return func() bool {
		conn, err := net.DialTimeout("unix", path, 100*time.Millisecond)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
}

// removeStaleSocket removes a socket file left by a process that is gone;
// one that still answers is left alone (the listen then fails and says so).
func removeStaleSocket(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSocket != 0 && !socketReady(path)() {
		os.Remove(path)
	}
}

// checkNoOneListens refuses to start while another process answers where
// the stack is about to listen: signer dev holds the directory's lock and
// has started nothing yet, so whatever answers there is not its own (a
// stack left running by an earlier signer dev killed before it could stop
// it, or another program), and Ready must never be said of it.
func checkNoOneListens(dir, httpAddr, signerdListen string) error {
	socks := []string{filepath.Join(dir, "kms-proxy.sock"), filepath.Join(dir, "signerd.sock")}
	if p, ok := strings.CutPrefix(httpAddr, "unix://"); ok {
		socks = append(socks, p)
	}
	for _, p := range socks {
		if !socketReady(p)() {
			continue
		}
		who := "another process"
		if pid := socketOwner(p); pid > 0 {
			who = fmt.Sprintf("process %d", pid)
		}
		return fmt.Errorf("%s answers, but this signer dev has started nothing yet: %s listens there (left running by an earlier signer dev?); stop it and start again, or use another --dir", p, who)
	}
	if hostport, ok := strings.CutPrefix(signerdListen, "tcp://"); ok && tcpReady(hostport)() {
		return fmt.Errorf("--signerd-listen %s: another process already listens there (a signerd left running by an earlier signer dev?); stop it, or choose another port", signerdListen)
	}
	if _, ok := strings.CutPrefix(httpAddr, "unix://"); ok {
		return nil
	}
	hostport := strings.TrimPrefix(httpAddr, "tcp://")
	if anyPort(hostport) {
		return nil // the shim picks a free port itself
	}
	if conn, err := net.DialTimeout("tcp", hostport, 500*time.Millisecond); err == nil {
		conn.Close()
		return fmt.Errorf("--http %s: another process already listens there (a shim left running by an earlier signer dev?); stop it, or choose another --http", httpAddr)
	}
	return nil
}

// findSignerd returns the signerd binary: the given path, else the one
// beside this executable, else on PATH.
func findSignerd(given string) (string, error) {
	if given != "" {
		// As exec would look it up, so that a wrong --signerd is said
		// before anything starts.
		p, err := exec.LookPath(given)
		if err != nil {
			return "", &hintError{err: fmt.Errorf("dev: --signerd %s: %w", given, unwrapExecError(err)),
				hints: []string{"--signerd wants the signerd binary (make build writes bin/signerd); a name without / is looked up on PATH"}}
		}
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "signerd")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("signerd")
	if err != nil {
		return "", errors.New("signerd not found beside signer nor on PATH: build it (make build) or pass --signerd PATH")
	}
	return p, nil
}

var (
	endpointLine = regexp.MustCompile(`endpoint=(http://\S+)`)
	imdsLine     = regexp.MustCompile(`imds=(http://\S+)`)
)

// startDevStack starts the whole stack and waits for it to be ready, or to
// settle in a state that is not ready (a policy that refuses the enclave is
// a legitimate thing to try): the returned stack is running either way.
// From then on signerd is restarted whenever it exits, as an enclave is,
// and the shim provisions it again; the other processes' exit ends the
// stack (failed reports it).
func startDevStack(ctx context.Context, o devOptions) (*devStack, error) {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 20 * time.Second
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// Before anything else: one signer dev per directory. A second one
	// would overwrite the first's files and remove its sockets.
	lock, err := lockDevDir(dir)
	if err != nil {
		return nil, err
	}
	s := &devStack{opts: o, dir: dir, lock: lock, stopped: make(chan struct{}), fatal: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			s.stop()
		}
	}()
	if err := checkDevFiles(dir); err != nil {
		return nil, err
	}
	if err := checkExtraKeyrings(dir, o.Keyrings); err != nil {
		return nil, err
	}
	if o.PolicyFile != "" {
		// Read now, before anything starts, for the mistyped path; it is
		// read again (and parsed) when the policy is put.
		if _, err := devPolicyFile(o.PolicyFile).read(nil, policy.MaxSize); err != nil {
			return nil, err
		}
	}
	if err := checkNoOneListens(dir, o.HTTP, o.SignerdListen); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	signerd, err := findSignerd(o.SignerdPath)
	if err != nil {
		return nil, err
	}
	var nonce [8]byte
	rand.Read(nonce[:])
	s.instance = "dev-" + hex.EncodeToString(nonce[:])
	caDir := filepath.Join(dir, "ca")
	if _, err := os.Stat(filepath.Join(caDir, nsmsim.RootCertFile)); err != nil {
		s.created = append(s.created, "ca/ (the simulator's development CA; ca/root.pem)")
	}
	ca, err := nsmsim.LoadOrCreateCA(caDir, time.Now())
	if err != nil {
		return nil, err
	}
	_ = ca
	rootPEM := filepath.Join(caDir, nsmsim.RootCertFile)
	env := devEnv()

	// 1. The KMS emulator, plain HTTP on loopback for aws --endpoint-url.
	statePath := filepath.Join(dir, "kms-state.json")
	emuArgs := []string{"kms-emulator", "--listen", "127.0.0.1:0", "--state", statePath, "--trust-root", rootPEM}
	if o.KMSThrottle > 0 {
		emuArgs = append(emuArgs, "--throttle-fraction", strconv.FormatFloat(o.KMSThrottle, 'g', -1, 64))
	}
	if o.IMDSCredentials > 0 {
		emuArgs = append(emuArgs, "--imds", "127.0.0.1:0", "--imds-role", devRoleName, "--imds-lifetime", o.IMDSCredentials.String())
	}
	emu, err := s.startFixed(ctx, "kms-emulator", env, endpointLine, self, emuArgs...)
	if err != nil {
		return nil, err
	}
	select {
	case s.kmsEndpoint = <-emu.matched:
	case <-emu.done:
		return nil, emu.failure(dir)
	case <-ctx.Done():
		return nil, errors.New("interrupted while waiting for the kms-emulator's endpoint")
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("kms-emulator reported no endpoint; last output:\n%s", emu.tail())
	}
	if err := os.WriteFile(filepath.Join(dir, "kms-endpoint"), []byte(s.kmsEndpoint+"\n"), 0o644); err != nil {
		return nil, err
	}
	imdsFile := filepath.Join(dir, "imds-endpoint")
	if o.IMDSCredentials > 0 {
		// The emulator logs its IMDS right after its KMS endpoint.
		if err := s.waitFor(ctx, emu, 10*time.Second, "IMDS address", func() bool {
			if m := imdsLine.FindStringSubmatch(emu.tail()); m != nil {
				s.imdsURL = m[1]
			}
			return s.imdsURL != ""
		}); err != nil {
			return nil, err
		}
		if err := os.WriteFile(imdsFile, []byte(s.imdsURL+"\n"), 0o644); err != nil {
			return nil, err
		}
	} else if err := os.Remove(imdsFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Never leave the address of an earlier start's IMDS behind.
		return nil, err
	}

	// 2. Its TLS front, where vsock-proxy would be.
	proxySock := filepath.Join(dir, "kms-proxy.sock")
	removeStaleSocket(proxySock)
	front, err := s.startFixed(ctx, "tls-front", env, nil, self,
		"tls-front", "--listen", "unix://"+proxySock, "--backend", s.kmsEndpoint, "--ca-dir", caDir, "--name", "kms."+devRegion+".amazonaws.com")
	if err != nil {
		return nil, err
	}

	// 3. The key, its policy, the sealed identity and the keyring.
	if err := s.setupKMS(ctx); err != nil {
		return nil, err
	}
	if err := s.waitFor(ctx, front, 10*time.Second, "socket", socketReady(proxySock)); err != nil {
		return nil, err
	}

	// 4. signerd, the real binary, in simulated attestation.
	enclaveSock := filepath.Join(dir, "signerd.sock")
	enclaveAddr, enclaveReady, enclaveSockFile := "unix://"+enclaveSock, socketReady(enclaveSock), enclaveSock
	if o.SignerdListen != "" {
		enclaveAddr, enclaveReady, enclaveSockFile = o.SignerdListen, tcpReady(strings.TrimPrefix(o.SignerdListen, "tcp://")), ""
	}
	if _, err := enclavekms.ParseKeyARN(s.keyARN); err != nil {
		return nil, fmt.Errorf("the dev key's ARN, to pin signerd to: %w", err)
	}
	// Pinned, as production should be: signerd accepts only an identity
	// sealed under the dev key.
	args := []string{"--listen", enclaveAddr, "--kms-proxy", "unix://" + proxySock,
		"--attestation", "simulated", "--sim-ca-dir", caDir, "--kms-ca", rootPEM, "--kms-key", s.keyARN,
		"--keyring-signer", s.signerPin.String()}
	if o.DebugMode {
		args = append(args, "--sim-debug-mode")
	}
	if o.Auth {
		args = append(args, "--require-auth")
	}
	if o.AuditBuffer > 0 {
		args = append(args, "--audit-buffer", strconv.Itoa(o.AuditBuffer))
	}
	senv := env
	if len(o.SignerdCPUs) > 0 {
		senv = append(senv, fmt.Sprintf("GOMAXPROCS=%d", len(o.SignerdCPUs)))
	}
	s.signerd = signerdCmd{path: signerd, args: args, env: senv, sock: enclaveSockFile}
	sd, err := s.startSignerd()
	if err != nil {
		return nil, err
	}
	if err := s.waitFor(ctx, sd, 10*time.Second, "socket", enclaveReady); err != nil {
		return nil, err
	}
	s.bg.Add(1)
	go s.superviseSignerd(sd)

	// 5. The host shim.
	cfg := map[string]any{
		"enclave":  enclaveAddr,
		"listen":   o.HTTP,
		"region":   devRegion,
		"identity": filepath.Join(dir, "identity.enc"),
		"keyrings": append([]string{s.keyringFile()}, absAll(o.Keyrings)...),
		"instance": s.instance,
		// The audit trail, drained as in production: every decision of
		// every signerd this stack starts, one file.
		"audit_log": filepath.Join(dir, "audit.jsonl"),
	}
	shimEnv := env
	if o.IMDSCredentials > 0 {
		cfg["credential_refresh"] = credentialRefresh(o.IMDSCredentials).String()
		shimEnv = imdsEnv(env, s.imdsURL)
	}
	cfgJSON, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(dir, "shim.json")
	if err := os.WriteFile(cfgPath, append(cfgJSON, '\n'), 0o644); err != nil {
		return nil, err
	}
	var watch *regexp.Regexp
	if anyPort(strings.TrimPrefix(o.HTTP, "tcp://")) {
		watch = shimListenLine
	}
	shim, err := s.startFixed(ctx, "shim", shimEnv, watch, self, "serve", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	if watch != nil {
		// --http HOST:0: the shim bound a free port; its log says which,
		// and from here on the stack is reached there.
		select {
		case addr := <-shim.matched:
			o.HTTP, s.opts.HTTP = addr, addr
		case <-shim.done:
			return nil, shim.failure(dir)
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("the shim did not report its address after 10 s; last output:\n%s", shim.tail())
		}
	}
	s.httpURL, err = httpURL(o.HTTP)
	if err != nil {
		return nil, err
	}
	// Settled: this start's shim answers (its instance label), and the
	// enclave is ready, failed, or waiting after a failure on the host
	// side (shim.last_error).
	client := httpClientFor(o.HTTP)
	var last *devStatus
	var foreign *foreignShimError
	settled := func() bool {
		st, err := s.status(client)
		if err != nil {
			errors.As(err, &foreign)
			return false
		}
		last = st
		return st.State == "ready" || st.State == "failed" || st.State == "waiting" && st.Shim.LastError != ""
	}
	if err := s.waitFor(ctx, shim, o.ReadyTimeout, "ready or failed enclave", settled); err != nil {
		if last != nil {
			err = fmt.Errorf("%w\nthe last status: enclave %s %s", err, last.State, strings.TrimSpace(string(last.Error)))
		}
		if foreign != nil {
			err = fmt.Errorf("%w\n%v", err, foreign)
		}
		return nil, err
	}
	ok = true
	return s, nil
}

// startFixed starts a child whose exit ends the stack: the emulator, the
// TLS front, the shim.
func (s *devStack) startFixed(ctx context.Context, name string, env []string, watch *regexp.Regexp, path string, args ...string) (*child, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil, errStackStopping
	}
	c, err := startChild(ctx, s.dir, name, env, watch, path, args...)
	if err != nil {
		return nil, err
	}
	s.children = append(s.children, c)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		<-c.done
		if !s.isStopping() {
			s.fail(fmt.Errorf("the %s exited (%s), and the stack cannot run without it, so signer dev stopped everything; its last output (full log in %s):\n%s",
				name, exitDescription(c.err), filepath.Join(s.dir, "logs", name+".log"), c.tail()))
		}
	}()
	return c, nil
}

var errStackStopping = errors.New("the stack is stopping")

// Restarts of signerd: at once the first time, then after a pause that
// doubles; more than maxSignerdRestarts within a minute ends the stack (a
// signerd that cannot start: its log says why).
const maxSignerdRestarts = 5

func signerdRestartDelay(recent int) time.Duration {
	if recent == 0 {
		return 0
	}
	return min(250*time.Millisecond<<(recent-1), 4*time.Second)
}

// startSignerd starts signerd, or starts it again, in its place among the
// children.
func (s *devStack) startSignerd() (*child, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil, errStackStopping
	}
	removeStaleSocket(s.signerd.sock) // a killed signerd leaves its socket file
	c, err := startChild(context.Background(), s.dir, "signerd", s.signerd.env, nil, s.signerd.path, s.signerd.args...)
	if err != nil {
		return nil, err
	}
	if len(s.opts.SignerdCPUs) > 0 {
		if err := setAffinity(c.pid, s.opts.SignerdCPUs); err != nil {
			c.cmd.Process.Kill()
			<-c.done
			return nil, fmt.Errorf("pin signerd to CPUs %v: %w", s.opts.SignerdCPUs, err)
		}
	}
	for i, old := range s.children {
		if old.name == "signerd" {
			s.children[i] = c
			return c, nil
		}
	}
	s.children = append(s.children, c)
	return c, nil
}

// superviseSignerd restarts signerd whenever it exits, until the stack
// stops: an enclave that restarts comes back in state waiting, and the
// shim provisions it again by itself (docs/operations.md, restart
// recovery). Each exit and restart is told on the terminal and in
// logs/signerd.log.
func (s *devStack) superviseSignerd(c *child) {
	defer s.bg.Done()
	logPath := filepath.Join(s.dir, "logs", "signerd.log")
	var recent []time.Time // restarts within the last minute
	for {
		select {
		case <-c.done:
		case <-s.stopped:
			return
		}
		if s.isStopping() {
			return
		}
		now := time.Now()
		recent = slices.DeleteFunc(recent, func(t time.Time) bool { return now.Sub(t) >= time.Minute })
		if len(recent) >= maxSignerdRestarts {
			s.event("signerd", "signerd (pid %d) exited (%s), the %d%s time within a minute: not restarting it again", c.pid, exitDescription(c.err), len(recent)+1, ordinal(len(recent)+1))
			s.fail(fmt.Errorf("signerd exited %s within a minute, so signer dev stopped restarting it and stopped everything: %w", plural(len(recent)+1, "time"), c.failure(s.dir)))
			return
		}
		delay := signerdRestartDelay(len(recent))
		when := "now"
		if delay > 0 {
			when = "in " + delay.String()
		}
		s.event("signerd", "signerd (pid %d) exited (%s); restarting it %s (restart %d of at most %d a minute; log %s)",
			c.pid, exitDescription(c.err), when, len(recent)+1, maxSignerdRestarts, logPath)
		select {
		case <-time.After(delay):
		case <-s.stopped:
			return
		}
		nc, err := s.startSignerd()
		if errors.Is(err, errStackStopping) {
			return
		}
		if err != nil {
			s.fail(fmt.Errorf("restarting signerd: %w", err))
			return
		}
		recent = append(recent, time.Now())
		s.event("signerd", "signerd restarted (pid %d); the shim provisions it again", nc.pid)
		c = nc
	}
}

func ordinal(n int) string {
	switch n {
	case 1:
		return "st"
	case 2:
		return "nd"
	case 3:
		return "rd"
	}
	return "th"
}

// event tells the terminal (opts.Events) and the child's log about an
// event of the stack.
func (s *devStack) event(logName, format string, a ...any) {
	line := "signer dev: " + fmt.Sprintf(format, a...) + "\n"
	if s.opts.Events != nil {
		io.WriteString(s.opts.Events, line)
	}
	if f, err := os.OpenFile(filepath.Join(s.dir, "logs", logName+".log"), os.O_WRONLY|os.O_APPEND, 0); err == nil {
		f.WriteString(line)
		f.Close()
	}
}

func (s *devStack) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// fail ends the stack's life: the first error is kept, failed() fires.
func (s *devStack) fail(err error) {
	s.fatalOnce.Do(func() {
		s.fatalErr = err
		close(s.fatal)
	})
}

// failed is closed when the stack cannot go on; err says why.
func (s *devStack) failed() <-chan struct{} { return s.fatal }

func (s *devStack) err() error {
	select {
	case <-s.fatal:
		return s.fatalErr
	default:
		return nil
	}
}

// processes lists the children and their pids, in start order.
func (s *devStack) processes() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := make([]string, len(s.children))
	for i, c := range s.children {
		parts[i] = fmt.Sprintf("%s %d", c.name, c.pid)
	}
	return strings.Join(parts, ", ")
}

type devStatus struct {
	State string          `json:"state"`
	Error json.RawMessage `json:"error"`
	Shim  struct {
		Instance  string `json:"instance"`
		LastError string `json:"last_error"`
	} `json:"shim"`
}

// foreignShimError is a /v1/status answered by another process than this
// stack's shim.
type foreignShimError struct {
	url, instance, want string
}

func (e *foreignShimError) Error() string {
	who := "an answer with no instance label"
	if e.instance != "" {
		who = fmt.Sprintf("shim instance %q", e.instance)
	}
	return fmt.Sprintf("%s answers, but as %s, not as this start's shim (%s): another process listens there (a shim left running by an earlier signer dev?); stop it, or choose another --http", e.url, who, e.want)
}

// status is /v1/status as this stack's shim answers it; an answer from
// another process is a *foreignShimError.
func (s *devStack) status(c *http.Client) (*devStatus, error) {
	resp, err := c.Get(s.httpURL + "/v1/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st devStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	if st.Shim.Instance != s.instance {
		return nil, &foreignShimError{url: s.httpURL, instance: st.Shim.Instance, want: s.instance}
	}
	return &st, nil
}

// stop ends every child, last started first, and releases the directory.
func (s *devStack) stop() {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return
	}
	s.stopping = true
	children := slices.Clone(s.children)
	s.mu.Unlock()
	close(s.stopped)
	for i := len(children) - 1; i >= 0; i-- {
		children[i].stop()
	}
	s.bg.Wait()
	s.lock.release()
}

// devEnv is the environment of the stack's processes: the emulator's
// test/test credential, no AWS configuration files and no instance metadata
// service, so nothing reaches beyond loopback; and none of signerd's pins
// (SIGNERD_*) from the developer's environment: signerd is pinned to the
// dev key alone.
func devEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "GOMAXPROCS=") && !strings.HasPrefix(kv, "SIGNERD_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION="+devRegion,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
}

// imdsEnv is env for a process that takes instance-role credentials from
// the emulator's IMDS at url, as on EC2: no static keys, instance
// metadata on, and pointed at loopback (never 169.254.169.254).
func imdsEnv(env []string, url string) []string {
	var out []string
	for _, kv := range env {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_EC2_METADATA_DISABLED":
		default:
			out = append(out, kv)
		}
	}
	return append(out, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+url)
}

func absAll(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		if a, err := filepath.Abs(p); err == nil {
			out[i] = a
		} else {
			out[i] = p
		}
	}
	return out
}

// setupKMS makes sure the key exists with the policy in force, and that
// identity.enc and keyring.age exist for it.
func (s *devStack) setupKMS(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := kms.New(kms.Options{
		Region:       devRegion,
		BaseEndpoint: aws.String(s.kmsEndpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
		Retryer: setupRetryer(s.opts.KMSThrottle),
	})
	s.pcr0 = nsmsim.DefaultPCRs("")[0]
	if s.opts.DebugMode {
		s.pcr0 = pcr.Zero()
	}
	pol, err := s.policy()
	if err != nil {
		return err
	}

	created := false
	aliases, err := c.ListAliases(ctx, &kms.ListAliasesInput{})
	if err != nil {
		return fmt.Errorf("kms ListAliases: %w", err)
	}
	for _, a := range aliases.Aliases {
		if aws.ToString(a.AliasName) == devKeyAlias {
			s.keyID = aws.ToString(a.TargetKeyId)
			// The alias's ARN is the key's but for the last part.
			if i := strings.LastIndex(aws.ToString(a.AliasArn), ":alias/"); i > 0 {
				s.keyARN = aws.ToString(a.AliasArn)[:i] + ":key/" + s.keyID
			}
		}
	}
	if s.keyID == "" {
		if err := checkNoKeyNoFiles(s.dir); err != nil {
			return err
		}
		out, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("enclave-signer dev: seals the age identity"), Policy: aws.String(string(pol)), BypassPolicyLockoutSafetyCheck: s.opts.PolicyFile != ""})
		if err != nil {
			return fmt.Errorf("kms CreateKey: %w", err)
		}
		s.keyID, s.keyARN = aws.ToString(out.KeyMetadata.KeyId), aws.ToString(out.KeyMetadata.Arn)
		if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(devKeyAlias), TargetKeyId: out.KeyMetadata.KeyId}); err != nil {
			return fmt.Errorf("kms CreateAlias: %w", err)
		}
		created = true
		s.created = append(s.created, "kms-state.json (KMS key "+s.keyID+", "+devKeyAlias+")")
	} else {
		cur, err := c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(s.keyID), PolicyName: aws.String("default")})
		if err != nil {
			return fmt.Errorf("kms GetKeyPolicy: %w", err)
		}
		if aws.ToString(cur.Policy) != string(pol) {
			if _, err := c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(s.keyID), PolicyName: aws.String("default"), Policy: aws.String(string(pol)), BypassPolicyLockoutSafetyCheck: s.opts.PolicyFile != ""}); err != nil {
				return fmt.Errorf("kms PutKeyPolicy (the policy in force does not let %s change it? remove %s to start over): %w", devPrincipal, filepath.Join(s.dir, "kms-state.json"), err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(s.dir, "policy.json"), pol, 0o644); err != nil {
		return err
	}

	idPath := filepath.Join(s.dir, "identity.enc")
	_, statErr := os.Stat(idPath)
	if created || statErr != nil {
		if err := s.sealIdentity(ctx, c, idPath); err != nil {
			return err
		}
	}
	rec, err := os.ReadFile(filepath.Join(s.dir, "recipient.txt"))
	if err != nil {
		return fmt.Errorf("%s: %w (remove %s to start over)", filepath.Join(s.dir, "recipient.txt"), err, s.dir)
	}
	s.recipient = strings.TrimSpace(string(rec))
	if err := s.setupKeyringSigner(ctx, c); err != nil {
		return err
	}
	return s.setupKeyring(ctx, s.keyringFile(), created)
}

// setupKeyringSigner makes sure the emulator has the signing key that
// signs the dev keyrings, and writes its SIGNER value (kms:ARN) to
// DIR/keyring-signer.
func (s *devStack) setupKeyringSigner(ctx context.Context, c *kms.Client) error {
	arn := ""
	out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(devSignerAlias)})
	var nf *kmstypes.NotFoundException
	switch {
	case err == nil:
		arn = aws.ToString(out.KeyMetadata.Arn)
	case errors.As(err, &nf):
		k, err := c.CreateKey(ctx, &kms.CreateKeyInput{
			Description: aws.String("enclave-signer dev: signs the dev keyrings (signerd pins it)"),
			KeySpec:     kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify,
		})
		if err != nil {
			return fmt.Errorf("kms CreateKey (the keyring signer): %w", err)
		}
		if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(devSignerAlias), TargetKeyId: k.KeyMetadata.KeyId}); err != nil {
			return fmt.Errorf("kms CreateAlias (the keyring signer): %w", err)
		}
		arn = aws.ToString(k.KeyMetadata.Arn)
		s.created = append(s.created, "the keyring signer, KMS key "+arn+" ("+devSignerAlias+", ECC_NIST_P256; kms:ARN in keyring-signer)")
	default:
		return fmt.Errorf("kms DescribeKey %s: %w", devSignerAlias, err)
	}
	signer, err := kmssigner.New(ctx, c, arn)
	if err != nil {
		return err
	}
	pin, err := keyringsig.NewSignerKey(signer.Public())
	if err != nil {
		return err
	}
	s.keyringSigner, s.signerPin = signer, pin
	return os.WriteFile(filepath.Join(s.dir, "keyring-signer"), []byte("kms:"+arn+"\n"), 0o644)
}

// setupKeyring makes sure keyring.age exists, signed by the keyring
// signer in keyring.age.sig with more than a day of validity left: a new
// keyring (format 2, keyring id dev, version 1) when there is none, when
// the identity is new, or when keyring.age.sig is not this signer's
// statement about it (a keyring from before signed keyrings); the same
// keyring signed again when only its window is ending.
func (s *devStack) setupKeyring(ctx context.Context, path string, fresh bool) error {
	ct, err := os.ReadFile(path)
	if fresh || errors.Is(err, fs.ErrNotExist) {
		return s.makeKeyring(ctx, path, "")
	}
	if err != nil {
		return err
	}
	if missing := s.missingClientSecret(); s.opts.Auth && missing != "" {
		return s.makeKeyring(ctx, path, missing+" was missing")
	}
	pins := keyringsig.Policy{Signers: []keyringsig.SignerKey{s.signerPin}}
	sigBytes, _ := os.ReadFile(path + sigSuffix)
	_, verr := pins.Verify(ct, sigBytes, time.Now().Add(24*time.Hour))
	if verr == nil {
		return nil
	}
	f, perr := keyringsig.ParseSigned(sigBytes)
	if perr != nil || errors.Is(verr, keyringsig.ErrSignature) || !f.Statement.HasRecipient(s.recipient) {
		return s.makeKeyring(ctx, path, "the old one was not signed by the keyring signer")
	}
	// Only the window: sign the same statement for another year.
	st := f.Statement
	return s.signKeyring(ctx, path, ct, st.KeyringID, st.Version, st.Recipients, "keyring.age.sig (signed again: its window was ending)")
}

func (s *devStack) makeOpenKeyring(ctx context.Context, path, why string) error {
	r, err := age.ParseX25519Recipient(s.recipient)
	if err != nil {
		return fmt.Errorf("recipient.txt: %w", err)
	}
	ct, _, err := keyring.GenerateKeyring(keyring.GenerateOptions{
		Keys: []keyring.KeySpec{
			{ID: "dev-ed25519", Algorithm: keyring.Ed25519},
			{ID: "dev-p256", Algorithm: keyring.ECDSAP256},
			{ID: "dev-secp256k1", Algorithm: keyring.ECDSASecp256k1},
		},
		Recipients: []age.Recipient{r},
		KeyringID:  devKeyringID, KeyringVersion: 1,
	})
	if err != nil {
		return err
	}
	if err := writeCiphertextFile(path, ct, true); err != nil {
		return err
	}
	what := "keyring.age (dev-ed25519, dev-p256, dev-secp256k1; keyring " + devKeyringID + " version 1)"
	if why != "" {
		what += " anew: " + why
	}
	s.created = append(s.created, what)
	return s.signKeyring(ctx, path, ct, devKeyringID, 1, []string{s.recipient}, "keyring.age.sig (its statement, signed by the keyring signer)")
}

// makeKeyring writes the stack's own keyring anew: keyring.age, or with
// --auth keyring-auth.age and its clients' secrets.
func (s *devStack) makeKeyring(ctx context.Context, path, why string) error {
	if s.opts.Auth {
		return s.makeAuthKeyring(ctx, path, why)
	}
	return s.makeOpenKeyring(ctx, path, why)
}

// signKeyring writes path.sig: a statement about ct, valid from now for
// devKeyringValidity, signed by the keyring signer.
func (s *devStack) signKeyring(ctx context.Context, path string, ct []byte, id string, version uint64, recipients []string, what string) error {
	now := time.Now()
	st, err := keyringsig.NewStatement(id, version, now.Add(-notBeforeSkew), now.Add(devKeyringValidity), recipients, ct)
	if err != nil {
		return err
	}
	f, err := keyringsig.NewSigned(st)
	if err != nil {
		return err
	}
	if _, err := keyringsig.Sign(ctx, s.keyringSigner, f); err != nil {
		return err
	}
	if err := writeCiphertextFile(path+sigSuffix, f.Marshal(), true); err != nil {
		return err
	}
	s.created = append(s.created, what)
	return nil
}

// setupRetryer retries signer dev's own KMS calls past the throttling it
// asked the emulator for: the emulator spreads its throttles evenly, so
// 1/(1-F) attempts in a row always include one it serves.
func setupRetryer(throttle float64) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 3
		if throttle > 0 {
			o.MaxAttempts = int(math.Ceil(1/(1-throttle)-1e-9)) + 1 // 1e-9: 1/(1-0.9) is 10.000000000000002
			o.MaxBackoff = 100 * time.Millisecond
		}
		o.RateLimiter = ratelimit.None
	})
}

// policy is the key policy in force: --policy, or the guide's policy for
// the simulated enclave's PCR0 (the all-zero one in debug mode), with the
// emulator's one principal in every role.
func (s *devStack) policy() ([]byte, error) {
	if s.opts.PolicyFile != "" {
		b, err := devPolicyFile(s.opts.PolicyFile).read(nil, policy.MaxSize)
		if err != nil {
			return nil, err
		}
		if _, err := policy.Parse(b); err != nil {
			return nil, fmt.Errorf("--policy %s: %w", s.opts.PolicyFile, err)
		}
		return b, nil
	}
	p, _, err := policy.Render(policy.RenderOptions{
		ImageSha384: []string{hex.EncodeToString(nsmsim.DefaultPCRs("")[0])},
		EnclaveRole: devPrincipal, EncryptRole: devPrincipal, AdminRole: devPrincipal,
		Debug: s.opts.DebugMode,
	})
	if err != nil {
		return nil, err
	}
	if s.opts.DebugMode {
		// Only a debug enclave's all-zero PCR0 may decrypt.
		kept := p.Statements[:0]
		for _, st := range p.Statements {
			if st.Sid != policy.SidEnclaveDecrypt {
				kept = append(kept, st)
			}
		}
		p.Statements = kept
	}
	return p.Marshal(), nil
}

// sealIdentity creates an age identity in memory and seals it with the
// dev key, as signer seal does; only the ciphertext and the recipient are
// written.
func (s *devStack) sealIdentity(ctx context.Context, c *kms.Client, path string) error {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	keyFile := ageKeyFile(id, time.Now())
	defer clear(keyFile)
	out, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(s.keyID), Plaintext: keyFile})
	if err != nil {
		return fmt.Errorf("kms Encrypt of the new identity: %w", err)
	}
	if err := writeCiphertextFile(path, out.CiphertextBlob, true); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, "recipient.txt"), []byte(id.Recipient().String()+"\n"), 0o644); err != nil {
		return err
	}
	s.created = append(s.created, "identity.enc (an age identity sealed by "+devKeyAlias+")", "recipient.txt ("+id.Recipient().String()+")")
	return nil
}

// shimListenLine finds the address in the shim's "serving the HTTP API"
// log line (text or JSON).
var shimListenLine = regexp.MustCompile(`serving the HTTP API"?.*?\blisten"?[=:]"?([^\s",]+)`)

// anyPort reports whether hostport asks for any free port (HOST:0).
func anyPort(hostport string) bool {
	_, port, err := net.SplitHostPort(hostport)
	return err == nil && port == "0"
}

// httpURL turns a listen address into the URL clients use.
func httpURL(listen string) (string, error) {
	if p, ok := strings.CutPrefix(listen, "unix://"); ok {
		_ = p
		return "http://signer", nil
	}
	hostport := strings.TrimPrefix(listen, "tcp://")
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return "", fmt.Errorf("--http %q: want HOST:PORT, tcp://HOST:PORT or unix:///PATH", listen)
	}
	return "http://" + hostport, nil
}

// httpClientFor returns a client that reaches the listen address.
func httpClientFor(listen string) *http.Client {
	c := &http.Client{Timeout: 5 * time.Second}
	if p, ok := strings.CutPrefix(listen, "unix://"); ok {
		c.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", p)
		}}
	}
	return c
}

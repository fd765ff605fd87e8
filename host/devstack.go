//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/enclave-signer/enclave-signer/pkg/attestation/nsmsim"
	"github.com/enclave-signer/enclave-signer/pkg/keyring"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
	"github.com/enclave-signer/enclave-signer/pkg/policy"
)

// The development stack's fixed names. Everything signer dev creates lives
// in its directory; nothing in it is a plaintext secret.
const (
	devRegion    = "us-east-1"
	devAccount   = "000000000000"
	devPrincipal = "arn:aws:iam::" + devAccount + ":role/dev" // the emulator's test/test credential
	devKeyAlias  = "alias/enclave-signer-dev"
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
	// SignerdListen, when set (tcp://127.0.0.1:PORT), is where signerd
	// listens instead of DIR/signerd.sock: over TCP the shim dials from a
	// privileged source port, as over vsock in production.
	SignerdListen string
}

// devStack is a running development stack.
type devStack struct {
	opts        devOptions
	dir         string
	kmsEndpoint string
	httpURL     string
	keyID       string
	recipient   string
	pcr0        []byte
	created     []string
	children    []*child
}

// child is a process of the stack, its output kept in DIR/logs/NAME.log.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
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
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	c.cmd.Stdout, c.cmd.Stderr = pw, pw
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, path, err)
	}
	go func() {
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
	return fmt.Errorf("%s exited (%v); last output (full log in %s):\n%s", c.name, c.err, filepath.Join(dir, "logs", c.name+".log"), c.tail())
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

// waitFor waits until ready reports true, the child exits, or the timeout.
func (c *child) waitFor(dir string, timeout time.Duration, what string, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if ready() {
			return nil
		}
		select {
		case <-c.done:
			return c.failure(dir)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s after %s; last output:\n%s", c.name, what, timeout, c.tail())
		}
		time.Sleep(5 * time.Millisecond)
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

// findSignerd returns the signerd binary: the given path, else the one
// beside this executable, else on PATH.
func findSignerd(given string) (string, error) {
	if given != "" {
		return given, nil
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

var endpointLine = regexp.MustCompile(`endpoint=(http://\S+)`)

// startDevStack starts the whole stack and waits for it to be ready, or to
// settle in a state that is not ready (a policy that refuses the enclave is
// a legitimate thing to try): the returned stack is running either way.
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
	s := &devStack{opts: o, dir: dir}
	ok := false
	defer func() {
		if !ok {
			s.stop()
		}
	}()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	signerd, err := findSignerd(o.SignerdPath)
	if err != nil {
		return nil, err
	}
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
	emu, err := startChild(ctx, dir, "kms-emulator", env, endpointLine, self,
		"kms-emulator", "--listen", "127.0.0.1:0", "--state", statePath, "--trust-root", rootPEM)
	if err != nil {
		return nil, err
	}
	s.children = append(s.children, emu)
	select {
	case s.kmsEndpoint = <-emu.matched:
	case <-emu.done:
		return nil, emu.failure(dir)
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("kms-emulator reported no endpoint; last output:\n%s", emu.tail())
	}
	if err := os.WriteFile(filepath.Join(dir, "kms-endpoint"), []byte(s.kmsEndpoint+"\n"), 0o644); err != nil {
		return nil, err
	}

	// 2. Its TLS front, where vsock-proxy would be.
	proxySock := filepath.Join(dir, "kms-proxy.sock")
	removeStaleSocket(proxySock)
	front, err := startChild(ctx, dir, "tls-front", env, nil, self,
		"tls-front", "--listen", "unix://"+proxySock, "--backend", s.kmsEndpoint, "--ca-dir", caDir, "--name", "kms."+devRegion+".amazonaws.com")
	if err != nil {
		return nil, err
	}
	s.children = append(s.children, front)

	// 3. The key, its policy, the sealed identity and the keyring.
	if err := s.setupKMS(ctx); err != nil {
		return nil, err
	}
	if err := front.waitFor(dir, 10*time.Second, "socket", socketReady(proxySock)); err != nil {
		return nil, err
	}

	// 4. signerd, the real binary, in simulated attestation.
	enclaveSock := filepath.Join(dir, "signerd.sock")
	enclaveAddr, enclaveReady := "unix://"+enclaveSock, socketReady(enclaveSock)
	if o.SignerdListen != "" {
		hostport := strings.TrimPrefix(o.SignerdListen, "tcp://")
		enclaveAddr, enclaveReady = o.SignerdListen, func() bool {
			c, err := net.DialTimeout("tcp", hostport, 100*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err == nil
		}
	} else {
		removeStaleSocket(enclaveSock)
	}
	args := []string{"--listen", enclaveAddr, "--kms-proxy", "unix://" + proxySock,
		"--attestation", "simulated", "--sim-ca-dir", caDir, "--kms-ca", rootPEM}
	if o.DebugMode {
		args = append(args, "--sim-debug-mode")
	}
	path := signerd
	senv := env
	if len(o.SignerdCPUs) > 0 {
		senv = append(senv, fmt.Sprintf("GOMAXPROCS=%d", len(o.SignerdCPUs)))
	}
	sd, err := startChild(ctx, dir, "signerd", senv, nil, path, args...)
	if err != nil {
		return nil, err
	}
	s.children = append(s.children, sd)
	if len(o.SignerdCPUs) > 0 {
		if err := setAffinity(sd.cmd.Process.Pid, o.SignerdCPUs); err != nil {
			return nil, fmt.Errorf("pin signerd to CPUs %v: %w", o.SignerdCPUs, err)
		}
	}
	if err := sd.waitFor(dir, 10*time.Second, "socket", enclaveReady); err != nil {
		return nil, err
	}

	// 5. The host shim.
	cfg := map[string]any{
		"enclave":  enclaveAddr,
		"listen":   o.HTTP,
		"region":   devRegion,
		"identity": filepath.Join(dir, "identity.enc"),
		"keyrings": append([]string{filepath.Join(dir, "keyring.age")}, absAll(o.Keyrings)...),
	}
	cfgJSON, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(dir, "shim.json")
	if err := os.WriteFile(cfgPath, append(cfgJSON, '\n'), 0o644); err != nil {
		return nil, err
	}
	shim, err := startChild(ctx, dir, "shim", env, nil, self, "serve", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	s.children = append(s.children, shim)
	s.httpURL, err = httpURL(o.HTTP)
	if err != nil {
		return nil, err
	}
	client := httpClientFor(o.HTTP)
	readyOrSettled := func() bool {
		st, err := s.status(client)
		return err == nil && (st.State == "ready" || st.State == "failed")
	}
	if err := shim.waitFor(dir, o.ReadyTimeout, "ready or failed enclave", readyOrSettled); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

type devStatus struct {
	State string          `json:"state"`
	Error json.RawMessage `json:"error"`
}

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
	return &st, nil
}

// stop ends every child, last started first.
func (s *devStack) stop() {
	for i := len(s.children) - 1; i >= 0; i-- {
		s.children[i].stop()
	}
}

// exited returns a channel closed when any child exits.
func (s *devStack) exited() <-chan *child {
	ch := make(chan *child, len(s.children))
	for _, c := range s.children {
		go func() { <-c.done; ch <- c }()
	}
	return ch
}

// devEnv is the environment of the stack's processes: the emulator's
// test/test credential, no AWS configuration files and no instance metadata
// service, so nothing reaches beyond loopback.
func devEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION="+devRegion,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
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
		RetryMaxAttempts: 3,
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
		}
	}
	if s.keyID == "" {
		out, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("enclave-signer dev: seals the age identity"), Policy: aws.String(string(pol)), BypassPolicyLockoutSafetyCheck: s.opts.PolicyFile != ""})
		if err != nil {
			return fmt.Errorf("kms CreateKey: %w", err)
		}
		s.keyID = aws.ToString(out.KeyMetadata.KeyId)
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
	krPath := filepath.Join(s.dir, "keyring.age")
	if _, err := os.Stat(krPath); err != nil || created {
		if err := s.makeKeyring(krPath); err != nil {
			return err
		}
	}
	return nil
}

// policy is the key policy in force: --policy, or the guide's policy for
// the simulated enclave's PCR0 (the all-zero one in debug mode), with the
// emulator's one principal in every role.
func (s *devStack) policy() ([]byte, error) {
	if s.opts.PolicyFile != "" {
		b, err := os.ReadFile(s.opts.PolicyFile)
		if err != nil {
			return nil, fmt.Errorf("--policy: %w", err)
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

func (s *devStack) makeKeyring(path string) error {
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
	})
	if err != nil {
		return err
	}
	if err := writeCiphertextFile(path, ct, true); err != nil {
		return err
	}
	s.created = append(s.created, "keyring.age (dev-ed25519, dev-p256, dev-secp256k1)")
	return nil
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

//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// The end-to-end tests run the real binaries, built once per test run:
// signer dev starts signer kms-emulator, signer tls-front, signerd and
// signer serve as child processes, exactly as a developer runs it.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// TestMain makes this test binary the signer command of the testscript
// transcripts (script_test.go: run as "signer", it is signer's main), and
// removes the binaries built for the end-to-end tests (35 MB a run, left in
// the temporary directory otherwise).
func TestMain(m *testing.M) {
	testscript.Main(removeBuilt{m}, map[string]func(){"signer": main})
}

// removeBuilt runs the tests, then removes what builtBinaries built.
type removeBuilt struct{ m *testing.M }

func (r removeBuilt) Run() int {
	code := r.m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	return code
}

func builtBinaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "enclave-signer-e2e-")
		if buildErr != nil {
			return
		}
		for name, pkg := range map[string]string{"signer": ".", "signerd": "../enclave"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// TestBuiltBinariesRemoved runs this test binary again, in a temporary
// directory of its own, to build the binaries only; after it exits
// nothing of them is left there.
func TestBuiltBinariesRemoved(t *testing.T) {
	if os.Getenv("SIGNER_TEST_BUILD_ONLY") == "1" {
		fmt.Printf("built in %s\n", builtBinaries(t)) // the child: build, and let TestMain clean up
		return
	}
	tmp := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBuiltBinariesRemoved$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SIGNER_TEST_BUILD_ONLY=1", "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the build-only run failed: %v\n%s", err, out)
	}
	_, built, ok := strings.Cut(string(out), "built in ")
	if built, _, _ = strings.Cut(built, "\n"); !ok || !strings.HasPrefix(built, tmp) {
		t.Fatalf("the build-only run did not build in %s:\n%s", tmp, out)
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "enclave-signer-e2e-*"))
	if len(left) > 0 {
		t.Fatalf("the test run left its built binaries behind: %v", left)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// devProc is a running `signer dev`.
type devProc struct {
	t      *testing.T
	dir    string
	url    string
	cmd    *exec.Cmd
	out    *lockedBuffer
	took   time.Duration
	cancel context.CancelFunc
	// pids are the children's, from the summary's Processes line.
	pids    map[string]int
	exited  chan struct{} // closed when signer dev has exited
	exitErr error
}

// devCommand is signer dev with args, its output collected, not started.
func devCommand(t *testing.T, dir string, args ...string) (*exec.Cmd, *lockedBuffer, context.CancelFunc) {
	t.Helper()
	bin := builtBinaries(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "signer"), append([]string{"dev", "--dir", dir}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true")
	return cmd, out, cancel
}

// startDev runs signer dev and waits until /v1/status answers ready or
// failed and the summary is printed.
func startDev(t *testing.T, dir string, args ...string) *devProc {
	t.Helper()
	// Any free port, which the shim picks and the summary names: a port
	// chosen here and closed again could be taken by another test's stack
	// before this one binds it.
	cmd, out, cancel := devCommand(t, dir, append([]string{"--http", "127.0.0.1:0"}, args...)...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &devProc{t: t, dir: dir, cmd: cmd, out: out, cancel: cancel, exited: make(chan struct{})}
	go func() {
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.stop)
	deadline := time.Now().Add(30 * time.Second)
	// signer dev prints its summary once the stack has settled (ready,
	// failed, or waiting after a host-side failure).
	for !strings.Contains(out.String(), "Ctrl-C stops everything.") {
		if time.Now().After(deadline) || p.hasExited() {
			t.Fatalf("signer dev printed no summary after 30 s; output:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.took = time.Since(start)
	m := regexp.MustCompile(`(?m)^Host shim: +(http://\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("signer dev's summary names no host shim:\n%s", out.String())
	}
	p.url = m[1]
	var st struct{ State string }
	if code, _ := p.getJSON("/v1/status", &st); code != 200 || st.State == "" {
		t.Fatalf("%s/v1/status: %d %q after the summary; output:\n%s", p.url, code, st.State, out.String())
	}
	p.pids = parseProcesses(t, out.String())
	return p
}

// parseProcesses reads the summary's "Processes: NAME PID, ..." line.
func parseProcesses(t *testing.T, out string) map[string]int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^Processes: +(.*) \(`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no Processes line in the summary:\n%s", out)
	}
	pids := map[string]int{}
	for _, part := range strings.Split(m[1], ", ") {
		name, pid, _ := strings.Cut(part, " ")
		n, err := strconv.Atoi(pid)
		if err != nil {
			t.Fatalf("Processes line %q: %v", m[1], err)
		}
		pids[name] = n
	}
	for _, name := range []string{"kms-emulator", "tls-front", "signerd", "shim"} {
		if pids[name] == 0 {
			t.Fatalf("the Processes line names no %s: %q", name, m[1])
		}
	}
	return pids
}

func (p *devProc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// waitExit waits for signer dev to exit by itself and returns its exit
// code; past the bound the test fails.
func (p *devProc) waitExit(bound time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(bound):
		p.t.Fatalf("signer dev still running %s later; output:\n%s", bound, p.out.String())
	}
	if p.exitErr == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(p.exitErr, &ee) {
		return ee.ExitCode()
	}
	p.t.Fatalf("signer dev: %v", p.exitErr)
	return -1
}

// runDevToExit runs signer dev with args, expecting it to exit by itself
// within bound (a refusal), and returns its exit code and output.
func runDevToExit(t *testing.T, dir string, bound time.Duration, args ...string) (int, string) {
	t.Helper()
	cmd, out, cancel := devCommand(t, dir, args...)
	defer cancel()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String()
	case <-time.After(bound):
		cancel()
		<-done
		t.Fatalf("signer dev %v still running after %s; output:\n%s", args, bound, out.String())
		return 0, ""
	}
}

func (p *devProc) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	<-p.exited
	if p.t.Failed() {
		p.t.Logf("signer dev output:\n%s", p.out.String())
		for _, name := range []string{"signerd", "shim", "kms-emulator", "tls-front"} {
			b, _ := os.ReadFile(filepath.Join(p.dir, "logs", name+".log"))
			p.t.Logf("%s log:\n%s", name, b)
		}
	}
}

func (p *devProc) do(method, path string, body []byte) (int, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (p *devProc) getJSON(path string, v any) (int, error) {
	resp, err := http.Get(p.url + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

type keyJSON struct {
	ID              string `json:"id"`
	Algorithm       string `json:"algorithm"`
	PublicKeyPEM    string `json:"public_key_pem"`
	EthereumAddress string `json:"ethereum_address"`
}

func (p *devProc) keys() map[string]keyJSON {
	var out struct{ Keys []keyJSON }
	if code, err := p.getJSON("/v1/keys", &out); code != 200 || err != nil {
		p.t.Fatalf("GET /v1/keys: %d %v", code, err)
	}
	m := map[string]keyJSON{}
	for _, k := range out.Keys {
		m[k.ID] = k
	}
	return m
}

type signJSON struct {
	KeyID        string `json:"key_id"`
	Algorithm    string `json:"algorithm"`
	Signature    string `json:"signature"`
	RecoveryID   *int   `json:"recovery_id"`
	SignatureRSV string `json:"signature_rsv"`
}

func (p *devProc) sign(id string, field string, data []byte) (int, signJSON, []byte) {
	p.t.Helper()
	body, _ := json.Marshal(map[string]string{field: base64.StdEncoding.EncodeToString(data)})
	code, b := p.do("POST", "/v1/keys/"+id+"/sign", body)
	var s signJSON
	json.Unmarshal(b, &s)
	return code, s, b
}

// opensslVerify checks sig over msg with openssl and the PEM public key.
func opensslVerify(t *testing.T, alg, pubPEM string, msg, sig []byte) {
	t.Helper()
	openssl := tool(t, "openssl")
	dir := t.TempDir()
	pub, m, s := filepath.Join(dir, "pub.pem"), filepath.Join(dir, "msg"), filepath.Join(dir, "sig")
	os.WriteFile(pub, []byte(pubPEM), 0o644)
	os.WriteFile(m, msg, 0o644)
	os.WriteFile(s, sig, 0o644)
	var cmd *exec.Cmd
	if alg == "ed25519" {
		cmd = exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", m, "-sigfile", s)
	} else {
		cmd = exec.Command(openssl, "dgst", "-sha256", "-verify", pub, "-signature", s, m)
	}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Verified") && !strings.Contains(string(out), "Success") {
		t.Fatalf("openssl does not verify the %s signature: %v\n%s", alg, err, out)
	}
}

// tool finds a program no one here wrote; CI must have it.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI: %v", name, err)
		}
		t.Skipf("%s not installed; CI fails instead of skipping", name)
	}
	return p
}

func TestDevSignsAndOpenSSLVerifies(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	var st map[string]any
	p.getJSON("/v1/status", &st)
	if st["state"] != "ready" || st["attestation"] != "simulated" || st["debug_mode"] != false || st["keys"] != float64(3) {
		t.Fatalf("status %v", st)
	}
	// Readiness time is measured, not asserted (a loaded CI machine is no
	// benchmark): docs/performance.md has the figures and the command.
	t.Logf("ready after %v from a clean directory", p.took)
	for _, f := range []string{"ca/root.pem", "kms-state.json", "kms-endpoint", "policy.json", "identity.enc", "recipient.txt", "keyring.age"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("signer dev did not create %s", f)
		}
	}
	keys := p.keys()
	msg := []byte("hello from the end-to-end test")
	for _, id := range []string{"dev-ed25519", "dev-p256", "dev-secp256k1"} {
		k := keys[id]
		code, s, body := p.sign(id, "message", msg)
		if code != 200 || s.KeyID != id || s.Algorithm != k.Algorithm {
			t.Fatalf("sign %s: %d %s", id, code, body)
		}
		sig, _ := base64.StdEncoding.DecodeString(s.Signature)
		opensslVerify(t, k.Algorithm, k.PublicKeyPEM, msg, sig)
		if k.Algorithm != "ed25519" {
			d := sha256.Sum256(msg)
			code, s, body = p.sign(id, "digest", d[:])
			sig, _ = base64.StdEncoding.DecodeString(s.Signature)
			if code != 200 {
				t.Fatalf("sign digest %s: %d %s", id, code, body)
			}
			opensslVerify(t, k.Algorithm, k.PublicKeyPEM, msg, sig)
		}
	}
	if !strings.HasPrefix(keys["dev-secp256k1"].EthereumAddress, "0x") || len(keys["dev-secp256k1"].EthereumAddress) != 42 {
		t.Errorf("secp256k1 key has no ethereum_address: %+v", keys["dev-secp256k1"])
	}
	if !strings.Contains(p.out.String(), "curl") || !strings.Contains(p.out.String(), "/sign") {
		t.Errorf("signer dev did not print a curl line that signs:\n%s", p.out.String())
	}

	// A second start reuses the directory, and is ready as fast.
	p.stop()
	p2 := startDev(t, dir)
	t.Logf("ready after %v from a reused directory", p2.took)
	if keys2 := p2.keys(); keys2["dev-p256"].PublicKeyPEM != keys["dev-p256"].PublicKeyPEM {
		t.Error("the reused directory's keys changed")
	}
}

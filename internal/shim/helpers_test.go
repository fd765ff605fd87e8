package shim_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/enclave-signer/enclave-signer/internal/fakeenclave"
	"github.com/enclave-signer/enclave-signer/internal/shim"
	"github.com/enclave-signer/enclave-signer/internal/testsupport"
)

// Distinctive credential values: TestNoSecretsInLogs looks for them.
const (
	testAKID    = "AKIDSHIMTEST"
	testSecret  = "sEcReT-d0-not-log-me"
	testSession = "t0ken-d0-not-log-me"
)

func staticAWS() aws.Config {
	return aws.Config{
		Region:      "eu-west-1",
		Credentials: credentials.NewStaticCredentialsProvider(testAKID, testSecret, testSession),
	}
}

type harness struct {
	t    *testing.T
	fe   *fakeenclave.Enclave
	shim *shim.Shim
	srv  *httptest.Server
	logs *testsupport.SyncBuffer
	cfg  *shim.Config
	// stop stops the shim (its loops and HTTP server); the test's end
	// does it too.
	stop func()
}

// writeSealed writes fake sealed files (ciphertext stand-ins, not secrets)
// and returns their paths.
func writeSealed(t *testing.T) (identity, keyring string) {
	dir := t.TempDir()
	identity = filepath.Join(dir, "identity.enc")
	keyring = filepath.Join(dir, "keyring.age")
	if err := os.WriteFile(identity, []byte("kms-ciphertext-blob"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyring, []byte("age-encryption.org/v1 stand-in"), 0o600); err != nil {
		t.Fatal(err)
	}
	return identity, keyring
}

func testConfig(t *testing.T, fe *fakeenclave.Enclave) *shim.Config {
	identity, keyring := writeSealed(t)
	return &shim.Config{
		Enclave:           fe.Addr.String(),
		Region:            "eu-west-1",
		Identity:          identity,
		Keyrings:          []string{keyring},
		EncryptionContext: map[string]string{"app": "signer"},
		RequestTimeout:    shim.Duration(2 * time.Second),
		StatusInterval:    shim.Duration(20 * time.Millisecond),
		RetryMin:          shim.Duration(20 * time.Millisecond),
		RetryMax:          shim.Duration(200 * time.Millisecond),
	}
}

// start runs a shim (provisioning loop and HTTP API on an httptest server)
// against a fake enclave. mutate, if not nil, adjusts the config and
// options first. It does not wait for the enclave to be ready.
func start(t *testing.T, fe *fakeenclave.Enclave, mutate func(*shim.Config, *shim.Options)) *harness {
	t.Helper()
	if fe == nil {
		fe = fakeenclave.Start(t)
	}
	cfg := testConfig(t, fe)
	logs := &testsupport.SyncBuffer{}
	opts := shim.Options{AWS: staticAWS(), Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mutate != nil {
		mutate(cfg, &opts)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := shim.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	srv := httptest.NewServer(s.Handler())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			srv.Close()
			cancel()
			<-done
			s.Close()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("shim logs:\n%s", logs)
		}
	})
	return &harness{t: t, fe: fe, shim: s, srv: srv, logs: logs, cfg: cfg, stop: stop}
}

// startReady is start, then waits until /readyz answers 200.
func startReady(t *testing.T, mutate func(*shim.Config, *shim.Options)) *harness {
	t.Helper()
	h := start(t, nil, mutate)
	h.waitReady(3 * time.Second)
	return h
}

func (h *harness) waitReady(d time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp := h.do("GET", "/readyz", "")
		if resp.status == 200 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("/readyz still %d after %s: %s", resp.status, d, resp.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type response struct {
	status int
	header http.Header
	body   string
}

// errorCode returns the error body's code, or "" if the body is not one.
func (r response) errorCode() string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal([]byte(r.body), &e) != nil {
		return ""
	}
	return e.Error.Code
}

func (r response) errorMessage() string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	json.Unmarshal([]byte(r.body), &e)
	return e.Error.Message
}

func (h *harness) do(method, path, body string) response {
	h.t.Helper()
	return h.doReader(method, path, strings.NewReader(body), int64(len(body)))
}

func (h *harness) doReader(method, path string, body io.Reader, n int64) response {
	h.t.Helper()
	hdr := http.Header{}
	if n != 0 {
		hdr.Set("Content-Type", "application/json")
	}
	return h.doHeaders(method, path, body, n, hdr)
}

// doHeaders sends a request with exactly the headers given (a "Host"
// entry sets the Host header) and does not follow redirects.
func (h *harness) doHeaders(method, path string, body io.Reader, n int64, hdr http.Header) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	req.ContentLength = n
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v[0]
			continue
		}
		req.Header[k] = v
	}
	client := *h.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("answer %q: %v", r.body, err)
	}
	return v
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

//go:build unix

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
)

// The end-to-end tests of authenticated requests (docs/protocol.md,
// Authenticated sign requests) run signer dev --auth: the real signerd
// with --require-auth, the real shim, keyring-auth.age with clients app1
// and app2.

// authClient signs requests to a dev stack as one of its clients.
type authClient struct {
	t      *testing.T
	p      *devProc
	id     string
	secret []byte
}

func (p *devProc) client(id string) *authClient {
	p.t.Helper()
	path := filepath.Join(p.dir, "clients", id+".secret")
	fi, err := os.Stat(path)
	if err != nil {
		p.t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		p.t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	secret, err := signreq.ReadSecretFile(path)
	if err != nil {
		p.t.Fatal(err)
	}
	return &authClient{t: p.t, p: p, id: id, secret: secret}
}

// authAnswer is an answer to an authenticated request.
type authAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (a authAnswer) code() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(a.body, &e)
	return e.Error.Code
}

// send posts body to path with the Authorization header of params p
// (made by edit from a fresh request for path and body), as given.
func (c *authClient) send(method, path string, body []byte, edit func(p *signreq.Params)) authAnswer {
	c.t.Helper()
	p := signreq.Params{Audience: "dev", Client: c.id, Timestamp: time.Now().Unix(), Method: method, Path: path, Body: body}
	rand.Read(p.Nonce[:])
	if edit != nil {
		edit(&p)
	}
	h, err := signreq.Authorization(c.secret, &p)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.sendHeader(method, path, body, h)
}

func (c *authClient) sendHeader(method, path string, body []byte, h string) authAnswer {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.p.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if h != "" {
		req.Header.Set("Authorization", h)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return authAnswer{resp.StatusCode, resp.Header, b}
}

func msgBody(msg string) []byte {
	return []byte(`{"message":"` + base64.StdEncoding.EncodeToString([]byte(msg)) + `"}`)
}

// verifySig checks an answer's signature with the listed public key.
func verifySig(t *testing.T, k keyJSON, msg []byte, a authAnswer) {
	t.Helper()
	var s signJSON
	if a.status != 200 || json.Unmarshal(a.body, &s) != nil {
		t.Fatalf("sign with %s: %d %s", k.ID, a.status, a.body)
	}
	sig, _ := base64.StdEncoding.DecodeString(s.Signature)
	block, _ := pem.Decode([]byte(k.PublicKeyPEM))
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	switch pk := pub.(type) {
	case ed25519.PublicKey:
		ok = ed25519.Verify(pk, msg, sig)
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(pk, d[:], sig)
	}
	if !ok {
		t.Fatalf("the signature of %s does not verify", k.ID)
	}
}

// TestDevAuthClientsAndKeys is the first landing of issue 11 with the real
// binaries: two clients on two keys, each signs with its own key and gets
// 403 on the other's; a plain request to a key of the policed keyring,
// each field of the MAC tampered with, a stale timestamp and a replayed
// nonce are each 401 with WWW-Authenticate; signer sign --client and the
// Python example sign through the stack.
func TestDevAuthClientsAndKeys(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir, "--auth")
	if !strings.Contains(p.out.String(), "Ready:") || !strings.Contains(p.out.String(), "Clients:        app1, app2, audience dev") {
		t.Fatalf("signer dev --auth is not ready or its summary names no clients:\n%s", p.out.String())
	}
	var st struct {
		Auth struct {
			RequireAuth bool     `json:"require_auth"`
			Policed     bool     `json:"policed"`
			Audiences   []string `json:"audiences"`
			ClockOK     bool     `json:"clock_ok"`
		}
		Pins struct {
			RequireAuth bool `json:"require_auth"`
		}
	}
	if _, err := p.getJSON("/v1/status", &st); err != nil || !st.Auth.RequireAuth || !st.Auth.Policed || !st.Auth.ClockOK ||
		len(st.Auth.Audiences) != 1 || st.Auth.Audiences[0] != "dev" || !st.Pins.RequireAuth {
		t.Fatalf("status auth %+v pins %+v (%v)", st.Auth, st.Pins, err)
	}
	keys := p.keys()
	app1, app2 := p.client("app1"), p.client("app2")

	// Each signs with its own key.
	verifySig(t, keys["dev-app1"], []byte("from app1"), app1.send("POST", "/v1/keys/dev-app1/sign", msgBody("from app1"), nil))
	verifySig(t, keys["dev-app2"], []byte("from app2"), app2.send("POST", "/v1/keys/dev-app2/sign", msgBody("from app2"), nil))
	// And is refused the other's, naming the rule.
	for _, tc := range []struct {
		c   *authClient
		key string
	}{{app1, "dev-app2"}, {app2, "dev-app1"}} {
		a := tc.c.send("POST", "/v1/keys/"+tc.key+"/sign", msgBody("x"), nil)
		if a.status != 403 || a.code() != "forbidden" || !bytes.Contains(a.body, []byte(`policy.clients: client \"`+tc.c.id+`\" is not allowed`)) {
			t.Errorf("%s on %s: %d %s, want 403 forbidden naming policy.clients", tc.c.id, tc.key, a.status, a.body)
		}
	}

	// 401s, each with WWW-Authenticate naming the scheme and the realm.
	replay := func() authAnswer {
		p := signreq.Params{Audience: "dev", Client: "app1", Timestamp: time.Now().Unix(), Method: "POST", Path: "/v1/keys/dev-app1/sign", Body: msgBody("once")}
		rand.Read(p.Nonce[:])
		h, _ := signreq.Authorization(app1.secret, &p)
		if a := app1.sendHeader("POST", p.Path, p.Body, h); a.status != 200 {
			t.Fatalf("the request to replay: %d %s", a.status, a.body)
		}
		return app1.sendHeader("POST", p.Path, p.Body, h)
	}
	for _, tc := range []struct {
		name string
		a    authAnswer
		want string
	}{
		{"no credential", app1.sendHeader("POST", "/v1/keys/dev-app1/sign", msgBody("x"), ""), "declares clients"},
		{"client", app1.send("POST", "/v1/keys/dev-app1/sign", msgBody("x"), func(p *signreq.Params) { p.Client = "app2" }), "mac does not match"},
		{"timestamp", tamperedHeader(app1, func(c *signreq.Credential) { c.Timestamp++ }), "mac does not match"},
		{"nonce", tamperedHeader(app1, func(c *signreq.Credential) { c.Nonce[7] ^= 0x40 }), "mac does not match"},
		{"mac", tamperedHeader(app1, func(c *signreq.Credential) { c.MAC[0] ^= 1 }), "mac does not match"},
		{"method", app1.send("POST", "/v1/keys/dev-app1/sign", msgBody("x"), func(p *signreq.Params) { p.Method = "PUT" }), "mac does not match"},
		{"path", app1.send("POST", "/v1/keys/dev-app1/sign", msgBody("x"), func(p *signreq.Params) { p.Path = "/v1/keys/dev-ed25519/sign" }), "mac does not match"},
		{"body", app1.send("POST", "/v1/keys/dev-app1/sign", msgBody("pay 1"), func(p *signreq.Params) { p.Body = msgBody("pay 1000") }), "mac does not match"},
		{"audience", app1.send("POST", "/v1/keys/dev-app1/sign", msgBody("x"), func(p *signreq.Params) { p.Audience = "prod" }), "mac does not match"},
		{"stale", app1.send("POST", "/v1/keys/dev-app1/sign", msgBody("x"), func(p *signreq.Params) { p.Timestamp -= 120 }), "want within 60 s"},
		{"replayed", replay(), "nonce replayed"},
		{"malformed", app1.sendHeader("POST", "/v1/keys/dev-app1/sign", msgBody("x"), "ES-HMAC-SHA256 client=app1"), "after the client parameter"},
	} {
		if tc.a.status != 401 || tc.a.code() != "unauthenticated" || !bytes.Contains(tc.a.body, []byte(tc.want)) ||
			tc.a.header.Get("WWW-Authenticate") != `ES-HMAC-SHA256 realm="dev"` {
			t.Errorf("%s: %d %s WWW-Authenticate %q; want 401 unauthenticated containing %q, realm dev", tc.name, tc.a.status, tc.a.body, tc.a.header.Get("WWW-Authenticate"), tc.want)
		}
	}

	// signer sign --client, the real binary.
	msgFile := filepath.Join(t.TempDir(), "msg")
	os.WriteFile(msgFile, []byte("signed by the CLI"), 0o600)
	cmd := exec.Command(filepath.Join(builtBinaries(t), "signer"), "sign", "--endpoint", p.url, "--key", "dev-app2", "--message-file", msgFile,
		"--client", "app2", "--client-secret", filepath.Join(dir, "clients", "app2.secret"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("signer sign --client app2: %v\n%s", err, out)
	}
	verifySig(t, keys["dev-app2"], []byte("signed by the CLI"), authAnswer{status: 200, body: out})

	// The Python example, stdlib only.
	py := exec.Command("python3", "../docs/examples/sign.py", p.url, "app1", filepath.Join(dir, "clients", "app1.secret"), "dev-app1", "hello from python")
	py.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err = py.CombinedOutput()
	if err != nil {
		t.Fatalf("docs/examples/sign.py: %v\n%s", err, out)
	}
	verifySig(t, keys["dev-app1"], []byte("hello from python"), authAnswer{status: 200, body: out})
	py = exec.Command("python3", "../docs/examples/sign.py", p.url, "app2", filepath.Join(dir, "clients", "app2.secret"), "dev-app1", "not mine")
	py.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	if out, err := py.CombinedOutput(); err == nil || !strings.Contains(string(out), `"code":"forbidden"`) {
		t.Fatalf("sign.py as app2 on dev-app1: %v, want exit 1 and forbidden\n%s", err, out)
	}
	// No secret in any log of the stack.
	for _, c := range []*authClient{app1, app2} {
		hexSecret := fmt.Sprintf("%x", c.secret)
		for _, name := range []string{"signerd", "shim", "kms-emulator", "tls-front"} {
			b, _ := os.ReadFile(filepath.Join(dir, "logs", name+".log"))
			if bytes.Contains(bytes.ToLower(b), []byte(hexSecret)) {
				t.Errorf("%s's secret is in %s's log", c.id, name)
			}
		}
	}
}

// tamperedHeader sends a good request for dev-app1 whose header has one
// field changed after the MAC was computed.
func tamperedHeader(c *authClient, edit func(*signreq.Credential)) authAnswer {
	c.t.Helper()
	p := signreq.Params{Audience: "dev", Client: c.id, Timestamp: time.Now().Unix(), Method: "POST", Path: "/v1/keys/dev-app1/sign", Body: msgBody("x")}
	rand.Read(p.Nonce[:])
	h, err := signreq.Authorization(c.secret, &p)
	if err != nil {
		c.t.Fatal(err)
	}
	cred, err := signreq.ParseAuthorization(h)
	if err != nil {
		c.t.Fatal(err)
	}
	edit(&cred)
	return c.sendHeader("POST", p.Path, p.Body, cred.String())
}

// TestDevAuthRateLimit: dev-limited signs at 5/s with a burst of 5; under
// 10 s of continuous requests it serves 55 ± 5 and answers the rest 429
// with Retry-After.
func TestDevAuthRateLimit(t *testing.T) {
	p := startDev(t, t.TempDir(), "--auth")
	app1 := p.client("app1")
	var served, limited, other atomic.Int64
	var badRetry atomic.Value
	end := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				a := app1.send("POST", "/v1/keys/dev-limited/sign", msgBody("again"), nil)
				switch a.status {
				case 200:
					served.Add(1)
				case 429:
					limited.Add(1)
					if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 || a.code() != "rate_limited" {
						badRetry.Store(fmt.Sprintf("Retry-After %q, %s", a.header.Get("Retry-After"), a.body))
					}
				default:
					other.Add(1)
					badRetry.Store(fmt.Sprintf("%d %s", a.status, a.body))
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("10 s: %d served, %d rate_limited, %d other", served.Load(), limited.Load(), other.Load())
	if s := served.Load(); s < 50 || s > 60 {
		t.Errorf("a key of 5/s, burst 5, served %d in 10 s, want 55 ± 5", s)
	}
	if limited.Load() < 100 || other.Load() != 0 {
		t.Errorf("%d rate_limited, %d other answers", limited.Load(), other.Load())
	}
	if v := badRetry.Load(); v != nil {
		t.Errorf("a refusal without a good Retry-After: %v", v)
	}
	var st struct {
		Auth struct {
			RateLimited int64 `json:"rate_limited"`
		}
	}
	if _, err := p.getJSON("/v1/status", &st); err != nil || st.Auth.RateLimited != limited.Load() {
		t.Errorf("status counts %d rate_limited, the clients saw %d (%v)", st.Auth.RateLimited, limited.Load(), err)
	}
}

// TestDevRequireAuth: signerd --require-auth (signer dev --auth) refuses,
// at provisioning, a keyring that declares no clients, even one signed by
// the pinned keyring signer; without it the stack is ready.
func TestDevRequireAuth(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir, "--auth")
	d := newDevTools(t, p)
	signerSpec := strings.TrimSpace(d.read(filepath.Join(dir, "keyring-signer")))
	open := filepath.Join(d.work, "open.age")
	d.run(true, d.signer, "keyring", "new", "--endpoint-url", d.endpoint, "--recipient-file", filepath.Join(dir, "recipient.txt"),
		"--key", "open-ed25519:ed25519", "--out", open, "--sign-with", signerSpec, "--id", "open", "--version", "1")
	p.stop()

	p = startDev(t, dir, "--auth", "--keyring", open)
	state, step, msg := p.provisionError()
	if state != "failed" || step != "require_auth" || !strings.Contains(msg, "declare no clients") || !strings.Contains(msg, "open.age") {
		t.Fatalf("an open keyring under --require-auth: %s at %s: %s", state, step, msg)
	}
	var st struct {
		Error struct{ Hint string }
	}
	if _, err := p.getJSON("/v1/status", &st); err != nil || !strings.Contains(st.Error.Hint, "--require-auth") {
		t.Errorf("status hint %q (%v)", st.Error.Hint, err)
	}
}

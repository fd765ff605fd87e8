//go:build unix

package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
)

// TestOpenAPIAgainstTheShim checks the answers of running shims (signer
// dev, then signer dev --auth) against docs/openapi.yaml: each request
// and answer is validated with kin-openapi's openapi3filter, each request
// is accepted by the document exactly when it should be, and each answer
// has the status and error code the case expects. It fails if an
// operation of the document was never exercised or an error code of its
// ErrorCode was never answered, so the document and the shim stay in
// step.
func TestOpenAPIAgainstTheShim(t *testing.T) {
	c := newAPIContract(t)
	t.Run("open", func(t *testing.T) { openAPIOpenStack(t, c) })
	t.Run("auth", func(t *testing.T) { openAPIAuthStack(t, c) })
	c.done()
}

// apiCall is one request to the shim and what must come of it.
type apiCall struct {
	name   string
	method string
	path   string // the request target, as sent
	body   []byte
	ctype  string                // the Content-Type header; "" sends none
	edit   func(r *http.Request) // other headers, another Host
	valid  bool                  // the document accepts the request
	status int                   // the answer's status; 0 takes any (polling)
	code   string                // the answer's error code; "" for a success
}

const apiJSONType = "application/json"

// apiStack sends calls to one running shim and checks them.
type apiStack struct {
	t *testing.T
	p *devProc
	c *apiContract
}

func (s *apiStack) request(call apiCall) *http.Request {
	s.t.Helper()
	var body io.Reader
	if call.body != nil {
		body = bytes.NewReader(call.body)
	}
	r, err := http.NewRequest(call.method, s.p.url+call.path, body)
	if err != nil {
		s.t.Fatalf("%s: %v", call.name, err)
	}
	if call.ctype != "" {
		r.Header.Set("Content-Type", call.ctype)
	}
	if call.edit != nil {
		call.edit(r)
	}
	return r
}

// send sends call and returns the answer; it may run on any goroutine.
func (s *apiStack) send(r *http.Request) (apiAnswer, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(r)
	if err != nil {
		return apiAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiAnswer{}, fmt.Errorf("reading the answer: %w", err)
	}
	return apiAnswer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// do sends call, checks it against the document and its expectations,
// and returns the answer.
func (s *apiStack) do(call apiCall) apiAnswer {
	s.t.Helper()
	a, err := s.send(s.request(call))
	if err != nil {
		s.t.Fatalf("%s: %s %s: %v", call.name, call.method, call.path, err)
	}
	s.verify(call, a)
	return a
}

// verify checks the answer a to call.
func (s *apiStack) verify(call apiCall, a apiAnswer) {
	s.t.Helper()
	s.c.check(s.t, call.name, s.request(call), call.body, call.valid, a)
	if call.status != 0 && (a.status != call.status || a.code() != call.code) {
		s.t.Errorf("%s: %s %s answered %d %q, want %d %q\n%s", call.name, call.method, call.path, a.status, a.code(), call.status, call.code, apiTruncate(a.body, 600))
	}
}

func (s *apiStack) run(calls []apiCall) {
	s.t.Helper()
	for _, call := range calls {
		s.do(call)
	}
}

// poll repeats call (with any answer, each checked against the document)
// until until holds of the answer, for at most bound.
func (s *apiStack) poll(bound time.Duration, what string, call apiCall, until func(apiAnswer) bool) apiAnswer {
	s.t.Helper()
	deadline := time.Now().Add(bound)
	for {
		a := s.do(call)
		if until(a) {
			return a
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not after %s; last answer %d %s", what, bound, a.status, apiTruncate(a.body, 600))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func apiB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func apiJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func apiSignMessage(msg string) []byte {
	return apiJSON(map[string]string{"message": apiB64([]byte(msg))})
}
func apiSignDigest(n int) []byte {
	return apiJSON(map[string]string{"digest": apiB64(bytes.Repeat([]byte{7}, n))})
}

// openAPIOpenStack: signer dev with an open keyring (dev-ed25519,
// dev-p256, dev-secp256k1), a 64-record audit buffer and the audit drain's
// pause hook.
func openAPIOpenStack(t *testing.T, c *apiContract) {
	pause := filepath.Join(t.TempDir(), "pause")
	t.Setenv("SIGNER_TEST_AUDIT_PAUSE_FILE", pause)
	dir := t.TempDir()
	s := &apiStack{t: t, p: startDev(t, dir, "--audit-buffer", "64"), c: c}
	s.run(openAPISuccessCalls())
	s.run(openAPIErrorCalls())
	s.auditUnavailable(pause)
	s.stalledEnclave()
	s.provisionFailures(dir)
}

// openAPISuccessCalls: every operation, answered 200.
func openAPISuccessCalls() []apiCall {
	nonce := strings.Repeat("a5", 16)
	return []apiCall{
		{name: "healthz", method: "GET", path: "/healthz", valid: true, status: 200},
		{name: "readyz", method: "GET", path: "/readyz", valid: true, status: 200},
		{name: "status", method: "GET", path: "/v1/status", valid: true, status: 200},
		{name: "keys", method: "GET", path: "/v1/keys", valid: true, status: 200},
		{name: "sign ed25519 message", method: "POST", path: "/v1/keys/dev-ed25519/sign", body: apiSignMessage("hello"), ctype: apiJSONType, valid: true, status: 200},
		{name: "sign an empty message", method: "POST", path: "/v1/keys/dev-ed25519/sign", body: []byte(`{"message":""}`), ctype: apiJSONType, valid: true, status: 200},
		{name: "sign p256 digest", method: "POST", path: "/v1/keys/dev-p256/sign", body: apiSignDigest(32), ctype: apiJSONType, valid: true, status: 200},
		{name: "sign secp256k1 digest, charset", method: "POST", path: "/v1/keys/dev-secp256k1/sign", body: apiSignDigest(32), ctype: "application/json; charset=utf-8", valid: true, status: 200},
		{name: "sign secp256k1 message", method: "POST", path: "/v1/keys/dev-secp256k1/sign", body: apiSignMessage("tx"), ctype: apiJSONType, valid: true, status: 200},
		{name: "attestation without a body", method: "POST", path: "/v1/attestation", valid: true, status: 200},
		{name: "attestation with nonce and user_data", method: "POST", path: "/v1/attestation", ctype: apiJSONType, valid: true, status: 200,
			body: apiJSON(map[string]string{"nonce": apiB64([]byte("a nonce of ours")), "user_data": apiB64([]byte("ours"))})},
		{name: "audit head", method: "GET", path: "/v1/audit/head?nonce=" + nonce, valid: true, status: 200},
		{name: "metrics", method: "GET", path: "/metrics", valid: true, status: 200},
		{name: "provision", method: "POST", path: "/v1/provision", valid: true, status: 200},
		{name: "provision with a JSON body", method: "POST", path: "/v1/provision", body: []byte(`{}`), ctype: apiJSONType, valid: true, status: 200},
	}
}

// openAPIErrorCalls: each error an outside client can cause on an open
// keyring.
func openAPIErrorCalls() []apiCall {
	sign := "/v1/keys/dev-ed25519/sign"
	big := apiJSON(map[string]string{"message": apiB64(make([]byte, 800<<10))}) // over 1 MiB in base64
	host := func(h string) func(*http.Request) { return func(r *http.Request) { r.Host = h } }
	header := func(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(k, v) } }
	return []apiCall{
		{name: "bad JSON", method: "POST", path: sign, body: []byte(`{"message":`), ctype: apiJSONType, status: 400, code: "malformed_request"},
		{name: "message and digest", method: "POST", path: sign, body: []byte(`{"message":"","digest":""}`), ctype: apiJSONType, status: 400, code: "malformed_request"},
		{name: "neither message nor digest", method: "POST", path: sign, body: []byte(`{}`), ctype: apiJSONType, status: 400, code: "malformed_request"},
		{name: "an unknown field", method: "POST", path: sign, body: []byte(`{"message":"","extra":1}`), ctype: apiJSONType, status: 400, code: "malformed_request"},
		{name: "bad base64", method: "POST", path: sign, body: []byte(`{"message":"!!!!"}`), ctype: apiJSONType, status: 400, code: "malformed_request"},
		{name: "a key id that is not UTF-8", method: "POST", path: "/v1/keys/%ff/sign", body: apiSignMessage("x"), ctype: apiJSONType, valid: true, status: 400, code: "malformed_request"},
		{name: "attestation: an unknown field", method: "POST", path: "/v1/attestation", body: []byte(`{"nonce":"","other":""}`), ctype: apiJSONType, status: 400, code: "malformed_request"},
		{name: "attestation: user_data too large for the document", method: "POST", path: "/v1/attestation", ctype: apiJSONType, valid: true, status: 400, code: "malformed_request",
			body: apiJSON(map[string]string{"user_data": apiB64(make([]byte, 2000))})},
		{name: "audit head without a nonce", method: "GET", path: "/v1/audit/head", status: 400, code: "malformed_request"},
		{name: "audit head with a short nonce", method: "GET", path: "/v1/audit/head?nonce=0011", status: 400, code: "malformed_request"},
		{name: "audit head with another parameter", method: "GET", path: "/v1/audit/head?nonce=" + strings.Repeat("00", 16) + "&x=1", valid: true, status: 400, code: "malformed_request"},
		{name: "unknown key", method: "POST", path: "/v1/keys/no-such-key/sign", body: apiSignMessage("x"), ctype: apiJSONType, valid: true, status: 404, code: "unknown_key"},
		{name: "sign body over 1 MiB", method: "POST", path: sign, body: big, ctype: apiJSONType, valid: true, status: 413, code: "too_large"},
		{name: "attestation body over 1 MiB", method: "POST", path: "/v1/attestation", ctype: apiJSONType, valid: true, status: 413, code: "too_large",
			body: apiJSON(map[string]string{"nonce": apiB64(make([]byte, 800<<10))})},
		{name: "text/plain", method: "POST", path: sign, body: apiSignMessage("x"), ctype: "text/plain", status: 415, code: "unsupported_media_type"},
		{name: "a body without Content-Type", method: "POST", path: sign, body: apiSignMessage("x"), status: 415, code: "unsupported_media_type"},
		{name: "provision: a form", method: "POST", path: "/v1/provision", body: []byte("a=b"), ctype: "application/x-www-form-urlencoded", status: 415, code: "unsupported_media_type"},
		{name: "attestation: Latin-1 JSON", method: "POST", path: "/v1/attestation", body: []byte(`{}`), ctype: "application/json; charset=iso-8859-1", valid: true, status: 415, code: "unsupported_media_type"},
		{name: "a 31-byte digest for p256", method: "POST", path: "/v1/keys/dev-p256/sign", body: apiSignDigest(31), ctype: apiJSONType, valid: true, status: 422, code: "invalid_digest"},
		{name: "a digest for ed25519", method: "POST", path: sign, body: apiSignDigest(32), ctype: apiJSONType, valid: true, status: 422, code: "digest_not_allowed"},
		{name: "a foreign Host", method: "GET", path: "/v1/status", edit: host("attacker.example"), valid: true, status: 403, code: "forbidden_origin"},
		{name: "a foreign Origin", method: "POST", path: sign, body: apiSignMessage("x"), ctype: apiJSONType, edit: header("Origin", "http://attacker.example"), valid: true, status: 403, code: "forbidden_origin"},
		{name: "Sec-Fetch-Site cross-site", method: "GET", path: "/v1/keys", edit: header("Sec-Fetch-Site", "cross-site"), valid: true, status: 403, code: "forbidden_origin"},
		{name: "a foreign Host on healthz", method: "GET", path: "/healthz", edit: host("attacker.example:80"), valid: true, status: 403, code: "forbidden_origin"},
		{name: "a foreign Host on metrics", method: "GET", path: "/metrics", edit: host("attacker.example"), valid: true, status: 403, code: "forbidden_origin"},
		{name: "a foreign Host on readyz", method: "GET", path: "/readyz", edit: host("attacker.example"), valid: true, status: 403, code: "forbidden_origin"},
		{name: "a foreign Host on audit head", method: "GET", path: "/v1/audit/head?nonce=" + strings.Repeat("00", 16), edit: host("attacker.example"), valid: true, status: 403, code: "forbidden_origin"},
		{name: "a foreign Origin on provision", method: "POST", path: "/v1/provision", edit: header("Origin", "https://attacker.example"), valid: true, status: 403, code: "forbidden_origin"},
		{name: "a foreign Origin on attestation", method: "POST", path: "/v1/attestation", edit: header("Origin", "null"), valid: true, status: 403, code: "forbidden_origin"},
		{name: "no such path", method: "GET", path: "/v2/keys", status: 404, code: "not_found"},
		{name: "a dot-dot segment", method: "GET", path: "/v1/keys/../status", status: 404, code: "not_found"},
		{name: "an empty key id", method: "POST", path: "/v1/keys//sign", body: apiSignMessage("x"), ctype: apiJSONType, status: 404, code: "not_found"},
		{name: "DELETE status", method: "DELETE", path: "/v1/status", status: 405, code: "method_not_allowed"},
		{name: "GET provision", method: "GET", path: "/v1/provision", status: 405, code: "method_not_allowed"},
		{name: "GET sign", method: "GET", path: "/v1/keys/dev-ed25519/sign", status: 405, code: "method_not_allowed"},
		{name: "a credential for an open keyring", method: "POST", path: sign, body: apiSignMessage("x"), ctype: apiJSONType, valid: true, status: 401, code: "unauthenticated",
			edit: header("Authorization", "ES-HMAC-SHA256 client=nobody, ts=1700000000, nonce="+strings.Repeat("00", 16)+", mac="+strings.Repeat("00", 32))},
	}
}

// auditUnavailable pauses the shim's audit drain (its test hook): signing
// goes on until signerd's 64-record buffer is full, then is refused
// 503 audit_unavailable, and resumes once the drain does.
func (s *apiStack) auditUnavailable(pause string) {
	s.t.Helper()
	if err := os.WriteFile(pause, nil, 0o600); err != nil {
		s.t.Fatal(err)
	}
	status := apiCall{name: "status while pausing the audit drain", method: "GET", path: "/v1/status", valid: true}
	s.poll(10*time.Second, "the audit drain pauses", status, func(a apiAnswer) bool {
		var st struct {
			Shim struct {
				AuditLog struct{ State string } `json:"audit_log"`
			}
		}
		return a.status == 200 && json.Unmarshal(a.body, &st) == nil && st.Shim.AuditLog.State == "paused"
	})
	sign := apiCall{name: "sign while the audit trail is not drained", method: "POST", path: "/v1/keys/dev-ed25519/sign", body: apiSignMessage("paused"), ctype: apiJSONType, valid: true}
	for i := 0; ; i++ {
		a := s.do(sign)
		if a.status == 503 && a.code() == "audit_unavailable" {
			break
		}
		if a.status != 200 || i > 200 {
			s.t.Fatalf("sign %d with the audit drain paused: %d %s, want 200 until the 64-record buffer is full, then 503 audit_unavailable", i, a.status, a.body)
		}
	}
	if err := os.Remove(pause); err != nil {
		s.t.Fatal(err)
	}
	sign.name = "sign after the audit drain resumed"
	s.poll(15*time.Second, "signing resumes", sign, func(a apiAnswer) bool { return a.status == 200 })
}

// stalledEnclave stops signerd (SIGSTOP) for longer than the shim's
// request_timeout (5 s in signer dev): every operation that asks the
// enclave something, sent at once, answers 503 not_ready; once signerd
// goes on (SIGCONT), signing does too.
func (s *apiStack) stalledEnclave() {
	s.t.Helper()
	pid := s.p.pids["signerd"]
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		s.t.Fatal(err)
	}
	resume := sync.OnceFunc(func() { syscall.Kill(pid, syscall.SIGCONT) })
	defer resume()
	sign := apiCall{name: "sign", method: "POST", path: "/v1/keys/dev-ed25519/sign", body: apiSignMessage("x"), ctype: apiJSONType, valid: true, status: 503, code: "not_ready"}
	calls := []apiCall{
		{name: "status", method: "GET", path: "/v1/status", valid: true, status: 503, code: "not_ready"},
		{name: "readyz", method: "GET", path: "/readyz", valid: true, status: 503, code: "not_ready"},
		{name: "keys", method: "GET", path: "/v1/keys", valid: true, status: 503, code: "not_ready"},
		{name: "attestation", method: "POST", path: "/v1/attestation", valid: true, status: 503, code: "not_ready"},
		{name: "audit head", method: "GET", path: "/v1/audit/head?nonce=" + strings.Repeat("5a", 16), valid: true, status: 503, code: "not_ready"},
		sign,
	}
	answers := make([]apiAnswer, len(calls))
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, call := range calls {
		call.name += " while signerd is stopped"
		calls[i] = call
		r := s.request(call)
		wg.Go(func() { answers[i], errs[i] = s.send(r) })
	}
	wg.Wait()
	for i, call := range calls {
		if errs[i] != nil {
			s.t.Fatalf("%s: %v", call.name, errs[i])
		}
		s.verify(call, answers[i])
	}
	resume()
	sign.name, sign.status, sign.code = "sign after signerd went on", 0, ""
	s.poll(20*time.Second, "signing after signerd went on", sign, func(a apiAnswer) bool { return a.status == 200 })
}

// provisionFailures breaks the stack's keyring: POST /v1/provision fails
// 500 internal with the status of an enclave still ready; a restarted
// signerd (killed, and started again by signer dev) then fails to
// provision, and every request that needs keys is 503 not_ready until
// the keyring is restored and provisioned.
func (s *apiStack) provisionFailures(dir string) {
	s.t.Helper()
	kr := filepath.Join(dir, "keyring.age")
	orig, err := os.ReadFile(kr)
	if err != nil {
		s.t.Fatal(err)
	}
	restore := func() {
		if err := os.WriteFile(kr, orig, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	defer restore()
	if err := os.WriteFile(kr, []byte("not the signed keyring\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	a := s.do(apiCall{name: "provision a broken keyring", method: "POST", path: "/v1/provision", valid: true, status: 500, code: "internal"})
	var failed struct{ Status struct{ State string } }
	if json.Unmarshal(a.body, &failed); failed.Status.State != "ready" {
		s.t.Errorf("a failed new provisioning: status.state %q, want ready (the keys loaded before keep serving)", failed.Status.State)
	}
	if err := syscall.Kill(s.p.pids["signerd"], syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
	status := apiCall{name: "status after signerd was killed", method: "GET", path: "/v1/status", valid: true}
	s.poll(30*time.Second, "the restarted signerd fails to provision", status, func(a apiAnswer) bool {
		var st struct{ State string }
		return a.status == 200 && json.Unmarshal(a.body, &st) == nil && st.State == "failed"
	})
	s.run([]apiCall{
		{name: "status of a failed enclave", method: "GET", path: "/v1/status", valid: true, status: 200},
		{name: "readyz of a failed enclave", method: "GET", path: "/readyz", valid: true, status: 503, code: "not_ready"},
		{name: "keys of a failed enclave", method: "GET", path: "/v1/keys", valid: true, status: 503, code: "not_ready"},
		{name: "sign with a failed enclave", method: "POST", path: "/v1/keys/dev-ed25519/sign", body: apiSignMessage("x"), ctype: apiJSONType, valid: true, status: 503, code: "not_ready"},
		{name: "provision a failed enclave, the keyring still broken", method: "POST", path: "/v1/provision", valid: true, status: 500, code: "internal"},
	})
	restore()
	s.run([]apiCall{
		{name: "provision the restored keyring", method: "POST", path: "/v1/provision", valid: true, status: 200},
		{name: "readyz after", method: "GET", path: "/readyz", valid: true, status: 200},
	})
}

// openAPIAuthStack: signer dev --auth (a policed keyring, signerd
// --require-auth), its signerd started with a nonce cache of 40 so that
// a client can fill it.
func openAPIAuthStack(t *testing.T, c *apiContract) {
	wrapper := filepath.Join(t.TempDir(), "signerd")
	script := fmt.Sprintf("#!/bin/sh\nexec '%s' --nonce-cache 40 \"$@\"\n", filepath.Join(builtBinaries(t), "signerd"))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := startDev(t, t.TempDir(), "--auth", "--signerd", wrapper)
	s := &apiStack{t: t, p: p, c: c}
	app1, app2 := p.client("app1"), p.client("app2")
	as := func(ac *authClient, path string, body []byte) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", apiAuthorization(t, ac, path, body, nil)) }
	}
	sign1 := "/v1/keys/dev-app1/sign"
	msg := apiSignMessage("x")
	replayed := apiAuthorization(t, app1, sign1, msg, nil)
	s.run([]apiCall{
		{name: "status with auth", method: "GET", path: "/v1/status", valid: true, status: 200},
		{name: "keys with auth", method: "GET", path: "/v1/keys", valid: true, status: 200},
		{name: "sign as app1", method: "POST", path: sign1, body: msg, ctype: apiJSONType, edit: as(app1, sign1, msg), valid: true, status: 200},
		{name: "sign a secp256k1 digest as app2", method: "POST", path: "/v1/keys/dev-secp256k1/sign", body: apiSignDigest(32), ctype: apiJSONType,
			edit: as(app2, "/v1/keys/dev-secp256k1/sign", apiSignDigest(32)), valid: true, status: 200},
		{name: "no credential for a policed key", method: "POST", path: sign1, body: msg, ctype: apiJSONType, valid: true, status: 401, code: "unauthenticated"},
		{name: "a wrong audience", method: "POST", path: sign1, body: msg, ctype: apiJSONType, valid: true, status: 401, code: "unauthenticated",
			edit: func(r *http.Request) {
				r.Header.Set("Authorization", apiAuthorization(t, app1, sign1, msg, func(p *signreq.Params) { p.Audience = "prod" }))
			}},
		{name: "a malformed credential", method: "POST", path: sign1, body: msg, ctype: apiJSONType, valid: true, status: 401, code: "unauthenticated",
			edit: func(r *http.Request) { r.Header.Set("Authorization", "ES-HMAC-SHA256 client=app1") }},
		{name: "two Authorization headers", method: "POST", path: sign1, body: msg, ctype: apiJSONType, valid: true, status: 401, code: "unauthenticated",
			edit: func(r *http.Request) {
				r.Header["Authorization"] = []string{apiAuthorization(t, app1, sign1, msg, nil), apiAuthorization(t, app1, sign1, msg, nil)}
			}},
		{name: "a fresh credential", method: "POST", path: sign1, body: msg, ctype: apiJSONType, edit: func(r *http.Request) { r.Header.Set("Authorization", replayed) }, valid: true, status: 200},
		{name: "the same credential replayed", method: "POST", path: sign1, body: msg, ctype: apiJSONType, edit: func(r *http.Request) { r.Header.Set("Authorization", replayed) }, valid: true, status: 401, code: "unauthenticated"},
		{name: "app1 on app2's key", method: "POST", path: "/v1/keys/dev-app2/sign", body: msg, ctype: apiJSONType, edit: as(app1, "/v1/keys/dev-app2/sign", msg), valid: true, status: 403, code: "forbidden"},
	})
	limited := "/v1/keys/dev-limited/sign"
	s.poll(10*time.Second, "dev-limited's rate is spent",
		apiCall{name: "sign on dev-limited", method: "POST", path: limited, body: msg, ctype: apiJSONType, edit: as(app1, limited, msg), valid: true},
		func(a apiAnswer) bool { return a.status == 429 })
	s.poll(10*time.Second, "the nonce cache is full",
		apiCall{name: "sign until the nonce cache is full", method: "POST", path: "/v1/keys/dev-ed25519/sign", body: msg, ctype: apiJSONType, edit: as(app2, "/v1/keys/dev-ed25519/sign", msg), valid: true},
		func(a apiAnswer) bool { return a.status == 503 && a.code() == "auth_unavailable" })
}

// apiAuthorization is the Authorization header of a fresh request by client
// ac for path and body, edited by edit after it is filled in.
func apiAuthorization(t *testing.T, ac *authClient, path string, body []byte, edit func(*signreq.Params)) string {
	t.Helper()
	p := signreq.Params{Audience: "dev", Client: ac.id, Timestamp: time.Now().Unix(), Method: "POST", Path: path, Body: body}
	rand.Read(p.Nonce[:])
	if edit != nil {
		edit(&p)
	}
	h, err := signreq.Authorization(ac.secret, &p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

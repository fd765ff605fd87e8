package shim_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/wire"
)

const testAuthorization = "ES-HMAC-SHA256 client=app1, ts=1700000000, nonce=00112233445566778899aabbccddeeff, mac=802425352bda431b093534b5621ab8d6622cd75142954cbf01e3cd461670ec1a"

func authHeaders(auth ...string) http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Authorization": auth}
}

// TestAuthSignForwardedUnchanged: a sign request with an Authorization
// header reaches the enclave as an auth_sign_request carrying the method,
// the request target as sent (escapes kept), the body byte for byte
// (whitespace kept) and the header, and the answer comes back as a plain
// sign's does.
func TestAuthSignForwardedUnchanged(t *testing.T) {
	h := startReady(t, nil)
	body := " {\"message\" : \"aGVsbG8=\"}\n"
	resp := h.doHeaders("POST", "/v1/keys/%65d/sign", strings.NewReader(body), int64(len(body)), authHeaders(testAuthorization))
	if resp.status != 200 {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	got := h.fe.AuthSigns()
	if len(got) != 1 {
		t.Fatalf("the enclave got %d auth_sign_requests, want 1", len(got))
	}
	want := wire.AuthSignRequest{Method: "POST", Path: "/v1/keys/%65d/sign", Body: []byte(body), Authorization: testAuthorization}
	if g := got[0]; g.Method != want.Method || g.Path != want.Path || string(g.Body) != body || g.Authorization != want.Authorization {
		t.Fatalf("forwarded %+v\nwant %+v", g, want)
	}
	out := decode[struct {
		KeyID     string `json:"key_id"`
		Signature []byte `json:"signature"`
	}](t, resp)
	if out.KeyID != "ed" || len(out.Signature) != 64 {
		t.Fatalf("answer %s", resp.body)
	}
}

// TestAuthSignAnswers: the enclave's refusals map to 401 with
// WWW-Authenticate (realm: the one audience), 403, 429 with Retry-After in
// whole seconds rounded up, and 503.
func TestAuthSignAnswers(t *testing.T) {
	h := startReady(t, nil)
	h.fe.SetAuthStatus(&wire.AuthStatus{Policed: true, Audiences: []string{"payments-prod"}})
	h.do("GET", "/v1/status", "") // the shim learns the audience from status
	body := `{"message":"aGVsbG8="}`
	for _, tc := range []struct {
		err    *wire.Error
		status int
		code   string
		header string
		value  string
	}{
		{wire.NewError(wire.CodeUnauthenticated, "mac does not match"), 401, "unauthenticated", "WWW-Authenticate", `ES-HMAC-SHA256 realm="payments-prod"`},
		{wire.NewError(wire.CodeForbidden, `client "app2" is not in key "ed"'s policy.clients`), 403, "forbidden", "", ""},
		{&wire.Error{Code: wire.CodeRateLimited, Message: "rate", RetryAfterMillis: 180}, 429, "rate_limited", "Retry-After", "1"},
		{&wire.Error{Code: wire.CodeRateLimited, Message: "rate", RetryAfterMillis: 1001}, 429, "rate_limited", "Retry-After", "2"},
		{&wire.Error{Code: wire.CodeRateLimited, Message: "rate"}, 429, "rate_limited", "Retry-After", "1"},
		{wire.NewError(wire.CodeAuthUnavailable, "nonce cache full"), 503, "auth_unavailable", "", ""},
	} {
		h.fe.SetAuthError(tc.err)
		resp := h.doHeaders("POST", "/v1/keys/ed/sign", strings.NewReader(body), int64(len(body)), authHeaders(testAuthorization))
		if resp.status != tc.status || resp.errorCode() != tc.code || !strings.Contains(resp.errorMessage(), tc.err.Message) {
			t.Errorf("%s: %d %s, want %d %s with the enclave's message", tc.err, resp.status, resp.body, tc.status, tc.code)
		}
		if tc.header != "" && resp.header.Get(tc.header) != tc.value {
			t.Errorf("%s: %s = %q, want %q", tc.err, tc.header, resp.header.Get(tc.header), tc.value)
		}
	}
	h.fe.SetAuthError(nil)

	// Two credentials: refused before the enclave sees either.
	n := len(h.fe.AuthSigns())
	resp := h.doHeaders("POST", "/v1/keys/ed/sign", strings.NewReader(body), int64(len(body)), authHeaders(testAuthorization, testAuthorization))
	if resp.status != 401 || resp.header.Get("WWW-Authenticate") == "" || !strings.Contains(resp.errorMessage(), "2 Authorization headers") {
		t.Errorf("two Authorization headers: %d %v %s", resp.status, resp.header, resp.body)
	}
	if len(h.fe.AuthSigns()) != n {
		t.Error("a request with two Authorization headers was forwarded")
	}
	// Without a credential, the plain path as before.
	resp = h.do("POST", "/v1/keys/ed/sign", body)
	if resp.status != 200 || len(h.fe.AuthSigns()) != n {
		t.Errorf("a request without Authorization: %d %s (auth_sign_requests %d → %d)", resp.status, resp.body, n, len(h.fe.AuthSigns()))
	}
	// Status shows the auth state.
	st := decode[struct {
		Auth struct {
			Policed   bool     `json:"policed"`
			Audiences []string `json:"audiences"`
		} `json:"auth"`
	}](t, h.do("GET", "/v1/status", ""))
	if !st.Auth.Policed || len(st.Auth.Audiences) != 1 {
		t.Errorf("status auth = %+v", st.Auth)
	}
	// And /metrics the enclave's auth state, as last seen.
	h.fe.SetAuthStatus(&wire.AuthStatus{Policed: true, Audiences: []string{"payments-prod"}, ClockOK: true, NonceCacheSize: 12, NonceCacheCapacity: 1 << 20, Forbidden: 3})
	h.do("GET", "/v1/status", "")
	m := h.do("GET", "/metrics", "").body
	for _, want := range []string{"signer_enclave_clock_ok 1\n", "signer_enclave_nonce_cache_nonces 12\n", "signer_enclave_nonce_cache_capacity 1048576\n",
		`signer_enclave_sign_refusals_total{reason="forbidden"} 3` + "\n", `signer_http_errors_total{code="rate_limited"} 3` + "\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

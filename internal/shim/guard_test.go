package shim_test

import (
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/shim"
)

// TestCrossSiteRequestsRefused: a web page in a browser on the host must
// not be able to use the API, neither through DNS rebinding (a Host that
// names the attacker's site) nor with a cross-site request (an Origin or
// Sec-Fetch-Site that is not the shim's own), nor with a form post (a
// Content-Type other than application/json). Local clients that send what
// they should keep working.
func TestCrossSiteRequestsRefused(t *testing.T) {
	h := startReady(t, func(c *shim.Config, _ *shim.Options) {
		c.AllowedHosts = []string{"Signer.Internal", "1signer.internal"}
	})
	self := h.srv.Listener.Addr().String()
	port := strconv.Itoa(h.srv.Listener.Addr().(*net.TCPAddr).Port)
	d := sha256.Sum256([]byte("tx"))
	sign := `{"digest":"` + b64(d[:]) + `"}`
	const json = "application/json"
	type hdr = map[string]string
	cases := []struct {
		name, method, path, body string
		hdr                      hdr
		status                   int
		code                     string
	}{
		// The request of issue 9, as a rebinding page sends it.
		{"issue 9: rebinding page", "POST", "/v1/keys/eth/sign", sign,
			hdr{"Host": "attacker.example:8080", "Origin": "http://attacker.example:8080", "Content-Type": "text/plain"}, 403, "forbidden_origin"},
		{"foreign Host, JSON", "POST", "/v1/keys/eth/sign", sign, hdr{"Host": "attacker.example:8080", "Content-Type": json}, 403, "forbidden_origin"},
		{"foreign Host, GET", "GET", "/v1/keys", "", hdr{"Host": "attacker.example"}, 403, "forbidden_origin"},
		{"foreign Host, provision", "POST", "/v1/provision", "", hdr{"Host": "attacker.example:" + port}, 403, "forbidden_origin"},
		{"Host under localhost's name", "GET", "/v1/status", "", hdr{"Host": "localhost.attacker.example:" + port}, 403, "forbidden_origin"},
		{"Host with a bad port", "GET", "/v1/status", "", hdr{"Host": "localhost:80x"}, 403, "forbidden_origin"},
		{"Host, another machine's address", "GET", "/v1/status", "", hdr{"Host": "10.0.0.5:" + port}, 403, "forbidden_origin"},
		{"Host, unbracketed IPv6", "GET", "/v1/status", "", hdr{"Host": "::1"}, 403, "forbidden_origin"},
		{"foreign Origin", "POST", "/v1/keys/eth/sign", sign, hdr{"Origin": "http://attacker.example", "Content-Type": json}, 403, "forbidden_origin"},
		{"Origin on another local port", "POST", "/v1/keys/eth/sign", sign, hdr{"Origin": "http://127.0.0.1:3000", "Content-Type": json}, 403, "forbidden_origin"},
		{"Origin null", "POST", "/v1/keys/eth/sign", sign, hdr{"Origin": "null", "Content-Type": json}, 403, "forbidden_origin"},
		{"Origin on a GET", "GET", "/v1/keys", "", hdr{"Origin": "https://attacker.example"}, 403, "forbidden_origin"},
		{"Sec-Fetch-Site cross-site", "POST", "/v1/keys/eth/sign", sign, hdr{"Sec-Fetch-Site": "cross-site", "Content-Type": json}, 403, "forbidden_origin"},
		{"Sec-Fetch-Site same-site", "POST", "/v1/keys/eth/sign", sign, hdr{"Sec-Fetch-Site": "same-site", "Content-Type": json}, 403, "forbidden_origin"},
		{"text/plain", "POST", "/v1/keys/eth/sign", sign, hdr{"Content-Type": "text/plain"}, 415, "unsupported_media_type"},
		{"form", "POST", "/v1/keys/eth/sign", sign, hdr{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"multipart", "POST", "/v1/keys/eth/sign", sign, hdr{"Content-Type": "multipart/form-data; boundary=x"}, 415, "unsupported_media_type"},
		{"no Content-Type with a body", "POST", "/v1/keys/eth/sign", sign, hdr{}, 415, "unsupported_media_type"},
		{"JSON look-alike", "POST", "/v1/keys/eth/sign", sign, hdr{"Content-Type": "application/jsonp"}, 415, "unsupported_media_type"},
		{"JSON in latin1", "POST", "/v1/keys/eth/sign", sign, hdr{"Content-Type": "application/json; charset=iso-8859-1"}, 415, "unsupported_media_type"},
		{"empty text/plain provision", "POST", "/v1/provision", "", hdr{"Content-Type": "text/plain"}, 415, "unsupported_media_type"},
		{"attestation as a form", "POST", "/v1/attestation", "nonce=x", hdr{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},

		// What local clients send.
		{"curl", "POST", "/v1/keys/eth/sign", sign, hdr{"Content-Type": json}, 200, ""},
		{"charset utf-8", "POST", "/v1/keys/eth/sign", sign, hdr{"Content-Type": "application/json; charset=UTF-8"}, 200, ""},
		{"upper case type", "POST", "/v1/keys/eth/sign", sign, hdr{"Content-Type": "Application/JSON"}, 200, ""},
		{"localhost", "POST", "/v1/keys/eth/sign", sign, hdr{"Host": "localhost:" + port, "Content-Type": json}, 200, ""},
		{"localhost, no port", "GET", "/v1/keys", "", hdr{"Host": "localhost"}, 200, ""},
		{"LOCALHOST.", "GET", "/v1/keys", "", hdr{"Host": "LOCALHOST.:" + port}, 200, ""},
		{"[::1]", "GET", "/v1/keys", "", hdr{"Host": "[::1]:" + port}, 200, ""},
		{"127.0.0.2", "GET", "/v1/keys", "", hdr{"Host": "127.0.0.2:" + port}, 200, ""},
		{"IPv4-mapped loopback", "GET", "/v1/keys", "", hdr{"Host": "[::ffff:127.0.0.1]:" + port}, 200, ""},
		{"allowed_hosts, digit first", "GET", "/v1/keys", "", hdr{"Host": "1signer.internal"}, 200, ""},
		{"allowed_hosts", "POST", "/v1/keys/eth/sign", sign, hdr{"Host": "signer.internal:8080", "Content-Type": json}, 200, ""},
		{"own Origin", "POST", "/v1/keys/eth/sign", sign, hdr{"Origin": "http://" + self, "Content-Type": json}, 200, ""},
		{"same-origin fetch", "POST", "/v1/keys/eth/sign", sign, hdr{"Origin": "http://" + self, "Sec-Fetch-Site": "same-origin", "Content-Type": json}, 200, ""},
		{"typed in the address bar", "GET", "/v1/keys", "", hdr{"Sec-Fetch-Site": "none"}, 200, ""},
		{"provision, no body", "POST", "/v1/provision", "", hdr{}, 200, ""},
		{"attestation, no body", "POST", "/v1/attestation", "", hdr{}, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hh := http.Header{}
			for k, v := range tc.hdr {
				hh.Set(k, v)
			}
			r := h.doHeaders(tc.method, tc.path, strings.NewReader(tc.body), int64(len(tc.body)), hh)
			if r.status != tc.status || r.errorCode() != tc.code {
				t.Fatalf("%s %s %v: got %d %.300s\nwant %d %s", tc.method, tc.path, tc.hdr, r.status, r.body, tc.status, tc.code)
			}
			if tc.status != 200 {
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("error answer with Content-Type %q, want application/json", ct)
				}
				if r.errorMessage() == "" {
					t.Errorf("error answer without a message: %s", r.body)
				}
			}
			if r := h.do("POST", "/v1/keys/ed/sign", `{"message":"eA=="}`); r.status != 200 {
				t.Fatalf("sign after %q: %d %s", tc.name, r.status, r.body)
			}
		})
	}

	// Refusals are counted like every other error.
	m := h.do("GET", "/metrics", "").body
	for _, want := range []string{
		`signer_http_errors_total{code="forbidden_origin"} 14`,
		`signer_http_errors_total{code="unsupported_media_type"} 8`,
		`signer_http_requests_total{route="other",code="403"} 14`,
		`signer_http_requests_total{route="POST /v1/keys/{id}/sign",code="415"} 6`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestUnixSocketAcceptsAnyHost: no browser reaches a unix socket, and
// clients name it as they like (curl --unix-socket uses the URL's host).
// Cross-site headers are refused there too.
func TestUnixSocketAcceptsAnyHost(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "shim.sock")
	h := start(t, nil, func(c *shim.Config, _ *shim.Options) { c.Listen = "unix://" + sock })
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.shim.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	hc, base, err := shim.NewHTTPClient("unix://"+sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	get := func(host, origin string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		req.Host = host
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("attacker.example:8080", ""); got != 200 {
		t.Errorf("unix socket, any Host: %d, want 200", got)
	}
	if got := get("shim", "http://attacker.example"); got != 403 {
		t.Errorf("unix socket, foreign Origin: %d, want 403", got)
	}
}

// TestNonCanonicalPathsAnswerJSON: net/http's ServeMux would redirect a
// path with "..", "." or "//" segments; the API answers JSON instead.
func TestNonCanonicalPathsAnswerJSON(t *testing.T) {
	h := startReady(t, nil)
	for _, p := range []struct{ method, path string }{
		{"POST", "/v1/keys/../x"},
		{"POST", "/v1/keys/../keys/ed/sign"},
		{"POST", "/v1/keys/./ed/sign"},
		{"POST", "/v1//keys/ed/sign"},
		{"GET", "/v1/keys/.."},
		{"GET", "/v1/keys/."},
		{"GET", "//v1/keys"},
	} {
		r := h.do(p.method, p.path, `{"message":"eA=="}`)
		if r.status != 404 || r.errorCode() != "not_found" || r.header.Get("Location") != "" || !strings.Contains(r.errorMessage(), "canonical") {
			t.Errorf("%s %s: got %d (Location %q) %s; want 404 not_found as JSON, no redirect", p.method, p.path, r.status, r.header.Get("Location"), r.body)
		}
	}
}

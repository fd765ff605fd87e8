package shim

import (
	"net/http"
	"net/netip"
	"path"
	"strings"
	"testing"
)

// muxCleanPath is what net/http's ServeMux redirects to: path.Clean,
// keeping a trailing slash.
func muxCleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

func FuzzIsCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/v1/keys/ed/sign", "/v1/keys/../x", "//", "/./", "/a/.", "/a/..", "/a/", "/a//b", "/...", "/.a", "*", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		want := p != "" && p[0] == '/' && muxCleanPath(p) == p
		if got := isCleanPath(p); got != want {
			t.Errorf("isCleanPath(%q) = %v, ServeMux would clean it to %q", p, got, muxCleanPath(p))
		}
	})
}

// FuzzHostGuard: whatever the Host header, a loopback listener accepts it
// only if it names a loopback address or localhost.
func FuzzHostGuard(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8080", "localhost", "[::1]:1", "attacker.example:8080", "::1", "[::ffff:127.0.0.1]", "LOCALHOST.", "localhost.:80", "[", "]:", ":80", "127.0.0.1:99999", "[fe80::1%25eth0]:80"} {
		f.Add(s)
	}
	cfg := &Config{Listen: "127.0.0.1:8080"}
	cfg.Validate() // fills listenAddr; other fields' errors do not matter here
	g := newHostGuard(cfg)
	f.Fuzz(func(t *testing.T, host string) {
		if !g.allows(host) {
			return
		}
		name, ok := splitHostHeader(host)
		if host == "127.0.0.1:8080" {
			return
		}
		if !ok {
			t.Fatalf("allowed a malformed Host %q", host)
		}
		if ip, err := netip.ParseAddr(name); err == nil {
			if !ip.Unmap().IsLoopback() {
				t.Fatalf("allowed Host %q: %s is not loopback", host, ip)
			}
			return
		}
		if !strings.EqualFold(strings.TrimSuffix(name, "."), "localhost") {
			t.Fatalf("allowed Host %q", host)
		}
	})
}

func FuzzContentType(f *testing.F) {
	for _, s := range []string{"application/json", "application/json; charset=utf-8", "text/plain", "application/json; charset=latin1", "application/jsonp", `application/json; charset="UTF-8"`, "APPLICATION/JSON ; x=y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		r := &http.Request{Header: http.Header{"Content-Type": {ct}}, ContentLength: 10}
		if contentTypeProblem(r) != "" {
			return
		}
		mt, _, _ := strings.Cut(ct, ";")
		if !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
			t.Fatalf("accepted Content-Type %q", ct)
		}
	})
}

func TestContentTypeWithoutBody(t *testing.T) {
	for _, tc := range []struct {
		ct   []string
		n    int64
		want bool // accepted
	}{
		{nil, 0, true},   // POST with no body: curl -X POST, signer provision
		{nil, 2, false},  // a body must say what it is
		{nil, -1, false}, // chunked, unknown length
		{[]string{"text/plain"}, 0, false},
		{[]string{"application/json"}, 0, true},
		{[]string{"application/json", "application/json"}, 2, false},
	} {
		r := &http.Request{Header: http.Header{}, ContentLength: tc.n}
		if tc.ct != nil {
			r.Header["Content-Type"] = tc.ct
		}
		if got := contentTypeProblem(r) == ""; got != tc.want {
			t.Errorf("Content-Type %q, length %d: accepted %v, want %v (%s)", tc.ct, tc.n, got, tc.want, contentTypeProblem(r))
		}
	}
}

// BenchmarkRequestGuard is the cost the checks add to each API request
// (the Host, cross-site, path and Content-Type checks of a sign request as
// curl or signer bench sends it), to compare with BenchmarkSignHTTP.
func BenchmarkRequestGuard(b *testing.B) {
	cfg := &Config{Listen: "127.0.0.1:8080"}
	cfg.Validate()
	g := newHostGuard(cfg)
	r, err := http.NewRequest("POST", "http://127.0.0.1:8080/v1/keys/ed/sign", strings.NewReader(`{"message":"eA=="}`))
	if err != nil {
		b.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	for _, host := range []string{"127.0.0.1:8080", "localhost:9000"} {
		r.Host = host
		b.Run(host, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !g.allows(r.Host) || crossSite(r) != "" || !isCleanPath(r.URL.EscapedPath()) || contentTypeProblem(r) != "" {
					b.Fatal("refused")
				}
			}
		})
	}
}

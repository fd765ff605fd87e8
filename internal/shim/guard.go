package shim

import (
	"mime"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// The API has no authentication, so what keeps a web page in a browser on
// the host from signing is that the API answers only requests that could
// not have come from a page of another site (docs/threat-model.md):
//
//   - Host must name the listener. Through DNS rebinding a page on
//     attacker.example reaches 127.0.0.1, but its requests still carry
//     Host: attacker.example.
//   - Origin, when present, must be the listener's own, and Sec-Fetch-Site
//     must not be cross-site or same-site: browsers send these with every
//     cross-origin request, curl and Go clients send neither.
//   - A POST that carries a body, or names a content type, must say
//     application/json: HTML forms cannot, and fetch cannot without a CORS
//     preflight, which the API never grants.
//
// The first two run before routing, the third before a handler reads the
// body. None allocates on a request that passes.

// hostGuard decides which Host header values name the listener.
type hostGuard struct {
	anyHost bool         // a unix socket: no browser reaches it
	anyIP   bool         // a wildcard listener (allow_public_listen): every IP literal
	self    string       // the listen HOST:PORT as configured, for a fast exact match
	ips     []netip.Addr // the listen address when it is an IP literal (unmapped)
	names   []string     // lower case, no trailing dot: localhost, the listen host name, allowed_hosts
}

func newHostGuard(cfg *Config) *hostGuard {
	g := &hostGuard{names: []string{"localhost"}}
	for _, n := range cfg.AllowedHosts {
		if ip, err := netip.ParseAddr(strings.Trim(n, "[]")); err == nil {
			g.ips = append(g.ips, ip.Unmap())
			continue
		}
		g.names = append(g.names, normalizeHostName(n))
	}
	a := cfg.ListenAddr()
	if a.Scheme != transport.TCP {
		g.anyHost = true
		return g
	}
	g.self = a.HostPort
	host, _, err := net.SplitHostPort(a.HostPort)
	if err != nil {
		return g
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.IsUnspecified() {
			g.anyIP = true
		} else {
			g.ips = append(g.ips, ip)
		}
	} else if host == "" {
		g.anyIP = true
	} else {
		g.names = append(g.names, normalizeHostName(host))
	}
	return g
}

func normalizeHostName(h string) string { return strings.ToLower(strings.TrimSuffix(h, ".")) }

// allows reports whether the Host header value host names the listener:
// a loopback address, localhost, the listen address or host name, or a
// name of allowed_hosts, with any port or none. The port is not compared:
// through a port forward (ssh -L) clients name another one, and a page of
// another site cannot choose the name it sends.
func (g *hostGuard) allows(host string) bool {
	if g.anyHost || host == g.self {
		return true
	}
	name, ok := splitHostHeader(host)
	if !ok {
		return false
	}
	// Only what may be an address goes through ParseAddr, whose error
	// allocates.
	if c := name[0]; c >= '0' && c <= '9' || strings.IndexByte(name, ':') >= 0 {
		if ip, err := netip.ParseAddr(name); err == nil {
			ip = ip.Unmap()
			return ip.IsLoopback() || g.anyIP || slices.Contains(g.ips, ip)
		}
		if strings.IndexByte(name, ':') >= 0 {
			return false // a bracketed non-address
		}
	}
	name = strings.TrimSuffix(name, ".")
	for _, n := range g.names {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// splitHostHeader returns the host of a Host header value HOST[:PORT] or
// [IPV6][:PORT], without brackets; ok is false if the value is malformed.
func splitHostHeader(h string) (host string, ok bool) {
	port := ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", false
		}
		rest := h[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return "", false
			}
			port = rest[1:]
		}
		host = h[1:end]
		if !strings.Contains(host, ":") || !validPort(port, rest != "") {
			return "", false
		}
		return host, true
	}
	host = h
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if strings.IndexByte(h[:i], ':') >= 0 {
			return "", false // an unbracketed IPv6 address
		}
		host, port = h[:i], h[i+1:]
		if !validPort(port, true) {
			return "", false
		}
	}
	return host, host != ""
}

// validPort: digits, 1 to 5 of them, when present.
func validPort(p string, present bool) bool {
	if !present {
		return true
	}
	if len(p) == 0 || len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// crossSite returns why r looks like a request from a page of another
// origin, or "" if it does not.
func crossSite(r *http.Request) string {
	if v := r.Header["Sec-Fetch-Site"]; len(v) > 0 {
		for _, s := range v {
			if s == "cross-site" || s == "same-site" {
				return "Sec-Fetch-Site: " + s + ": the request comes from a page of another origin"
			}
		}
	}
	if v := r.Header["Origin"]; len(v) > 0 {
		if len(v) > 1 {
			return "more than one Origin header"
		}
		if !sameOrigin(v[0], r.Host) {
			return "Origin " + strconv.Quote(truncate(v[0], 100)) + " is not this listener's own (http://" + truncate(r.Host, 100) + "): the request comes from a page of another origin"
		}
	}
	return ""
}

// sameOrigin reports whether origin is http:// or https:// followed by
// the request's Host, which the host guard has accepted.
func sameOrigin(origin, host string) bool {
	rest, ok := strings.CutPrefix(origin, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(origin, "https://")
	}
	return ok && host != "" && strings.EqualFold(rest, host)
}

// contentTypeProblem returns why a POST's Content-Type is refused, or ""
// if it is acceptable: application/json (charset, if given, utf-8), or no
// Content-Type at all on a request with an empty body (curl -X POST
// without -d, signer provision's empty POST /v1/provision).
func contentTypeProblem(r *http.Request) string {
	ct := r.Header["Content-Type"]
	switch {
	case len(ct) == 0:
		if r.ContentLength == 0 {
			return ""
		}
		return "a request body needs Content-Type: application/json"
	case len(ct) > 1:
		return "more than one Content-Type header; want one, application/json"
	case ct[0] == "application/json":
		return ""
	}
	mt, params, err := mime.ParseMediaType(ct[0])
	if err == nil && mt == "application/json" {
		cs, ok := params["charset"]
		if !ok || strings.EqualFold(cs, "utf-8") {
			return ""
		}
	}
	return "Content-Type " + strconv.Quote(truncate(ct[0], 100)) + ": want application/json (UTF-8)"
}

// isCleanPath reports whether p (an escaped URL path) is what ServeMux
// would route without a redirect: rooted, without empty, "." or ".."
// segments (a trailing slash is kept by the mux, so it is clean).
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); {
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		seg := p[i+1 : j]
		if (seg == "" && j < len(p)) || seg == "." || seg == ".." {
			return false
		}
		i = j
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

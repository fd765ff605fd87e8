package shim

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// NewHTTPClient returns an HTTP client for the shim's API at endpoint and
// the base URL to put paths after. endpoint is http://HOST[:PORT],
// https://HOST[:PORT], HOST:PORT, tcp://HOST:PORT or unix:///path (a shim
// listening on a unix socket). timeout bounds each request; 0 means none.
func NewHTTPClient(endpoint string, timeout time.Duration) (*http.Client, string, error) {
	bad := func(why string) (*http.Client, string, error) {
		return nil, "", fmt.Errorf("endpoint %q: %s; want http://HOST:PORT, HOST:PORT, tcp://HOST:PORT or unix:///PATH", endpoint, why)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the shim is local: never through an HTTP proxy
	switch {
	case strings.HasPrefix(endpoint, "unix://"):
		path := strings.TrimPrefix(endpoint, "unix://")
		if path == "" {
			return bad("no socket path")
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		return &http.Client{Transport: tr, Timeout: timeout}, "http://shim", nil
	case strings.HasPrefix(endpoint, "tcp://"):
		endpoint = "http://" + strings.TrimPrefix(endpoint, "tcp://")
	case !strings.Contains(endpoint, "://"):
		endpoint = "http://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return bad(err.Error())
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("unsupported scheme or no host")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return bad("no query or fragment allowed")
	}
	return &http.Client{Transport: tr, Timeout: timeout}, strings.TrimSuffix(u.String(), "/"), nil
}

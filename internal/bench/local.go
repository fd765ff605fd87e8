package bench

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// The benchmark is a closed loop that runs as fast as the target answers:
// it only ever targets this machine (loopback or a unix socket) or the
// enclave beside it (vsock), never a host across a network.

// CheckEndpoint accepts a shim endpoint (as shim.NewHTTPClient takes) on
// loopback or a unix socket, and refuses any other host.
func CheckEndpoint(endpoint string) error {
	if strings.HasPrefix(endpoint, "unix://") {
		return nil
	}
	s := endpoint
	if rest, ok := strings.CutPrefix(s, "tcp://"); ok {
		s = "http://" + rest
	} else if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("endpoint %q: want http://HOST:PORT, HOST:PORT or unix:///PATH", endpoint)
	}
	if !loopbackHost(u.Hostname()) {
		return fmt.Errorf("endpoint %q: the benchmark only targets loopback (127.0.0.1, ::1, localhost) or a unix socket, got host %q", endpoint, u.Hostname())
	}
	return nil
}

// CheckEnclaveAddr accepts an enclave address on a unix socket, vsock (the
// enclave beside this instance) or loopback TCP.
func CheckEnclaveAddr(a transport.Addr) error {
	switch a.Scheme {
	case transport.Unix, transport.Vsock:
		return nil
	case transport.TCP:
		host, _, err := net.SplitHostPort(a.HostPort)
		if err == nil && loopbackHost(host) {
			return nil
		}
		return fmt.Errorf("enclave %s: the benchmark only targets unix sockets, vsock or loopback TCP (127.0.0.1, ::1, localhost)", a)
	}
	return fmt.Errorf("enclave %s: unsupported address", a)
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

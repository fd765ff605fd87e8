// Package transport turns the project's address URLs (vsock://CID:PORT,
// unix:///path, tcp://HOST:PORT) into net.Listener and net.Conn values, so
// that everything above it deals only in net.Conn and is tested over unix
// sockets or loopback TCP.
//
// vsock is Linux-only and lives behind this package: on the build machines
// vsock reaches the sandbox's own hypervisor rather than an enclave, so no
// test dials or listens on it.
package transport

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
)

// Scheme is the kind of socket an Addr names.
type Scheme string

const (
	Vsock Scheme = "vsock"
	Unix  Scheme = "unix"
	TCP   Scheme = "tcp"
)

// CIDAny is VMADDR_CID_ANY, written "any" in a vsock address.
const CIDAny = math.MaxUint32

// Addr is a parsed address URL.
type Addr struct {
	Scheme Scheme
	// CID and Port are set for vsock addresses.
	CID  uint32
	Port uint32
	// Path is set for unix addresses.
	Path string
	// HostPort is set for tcp addresses.
	HostPort string
}

// String returns the address in its URL form.
func (a Addr) String() string {
	switch a.Scheme {
	case Vsock:
		cid := strconv.FormatUint(uint64(a.CID), 10)
		if a.CID == CIDAny {
			cid = "any"
		}
		return fmt.Sprintf("vsock://%s:%d", cid, a.Port)
	case Unix:
		return "unix://" + a.Path
	case TCP:
		return "tcp://" + a.HostPort
	}
	return "<invalid address>"
}

// ErrBadAddr is wrapped by every ParseAddr error.
var ErrBadAddr = errors.New("invalid address")

const wantForm = "want vsock://CID:PORT, unix:///PATH or tcp://HOST:PORT"

// ParseAddr parses an address URL. A bare HOST:PORT is not accepted here:
// enclave-side addresses always name their scheme (see ParseHTTPAddr for
// HTTP listeners, which also accept HOST:PORT).
func ParseAddr(s string) (Addr, error) {
	bad := func(why string) (Addr, error) {
		return Addr{}, fmt.Errorf("%w %q: %s; %s", ErrBadAddr, s, why, wantForm)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return bad("no scheme")
	}
	switch Scheme(scheme) {
	case Vsock:
		cidStr, portStr, ok := strings.Cut(rest, ":")
		if !ok {
			return bad("vsock address needs CID:PORT")
		}
		var cid uint32
		if cidStr == "any" {
			cid = CIDAny
		} else {
			n, err := strconv.ParseUint(cidStr, 10, 32)
			if err != nil {
				return bad("CID must be a decimal number or \"any\"")
			}
			cid = uint32(n)
		}
		port, err := strconv.ParseUint(portStr, 10, 32)
		if err != nil {
			return bad("port must be a decimal number")
		}
		return Addr{Scheme: Vsock, CID: cid, Port: uint32(port)}, nil
	case Unix:
		if rest == "" {
			return bad("unix address needs a path")
		}
		if strings.ContainsRune(rest, 0) {
			return bad("path contains NUL")
		}
		return Addr{Scheme: Unix, Path: rest}, nil
	case TCP:
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return bad("tcp address needs HOST:PORT")
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return bad("port must be a number from 0 to 65535")
		}
		return Addr{Scheme: TCP, HostPort: net.JoinHostPort(host, port)}, nil
	}
	return bad(fmt.Sprintf("unknown scheme %q", scheme))
}

// ParseHTTPAddr parses an HTTP listener address: HOST:PORT, tcp://HOST:PORT
// or unix:///path.
func ParseHTTPAddr(s string) (Addr, error) {
	if !strings.Contains(s, "://") {
		s = "tcp://" + s
	}
	a, err := ParseAddr(s)
	if err != nil {
		return Addr{}, err
	}
	if a.Scheme == Vsock {
		return Addr{}, fmt.Errorf("%w %q: HTTP listeners take HOST:PORT, tcp://HOST:PORT or unix:///PATH", ErrBadAddr, s)
	}
	return a, nil
}

// Listen opens a listener on addr. ctx bounds only the setup.
func Listen(ctx context.Context, addr Addr) (net.Listener, error) {
	var lc net.ListenConfig
	switch addr.Scheme {
	case Unix:
		return lc.Listen(ctx, "unix", addr.Path)
	case TCP:
		return lc.Listen(ctx, "tcp", addr.HostPort)
	case Vsock:
		return listenVsock(addr)
	}
	return nil, fmt.Errorf("listen: %w: %v", ErrBadAddr, addr)
}

// Dial connects to addr. ctx bounds only the dial, not the connection's life.
func Dial(ctx context.Context, addr Addr) (net.Conn, error) {
	var d net.Dialer
	switch addr.Scheme {
	case Unix:
		return d.DialContext(ctx, "unix", addr.Path)
	case TCP:
		return d.DialContext(ctx, "tcp", addr.HostPort)
	case Vsock:
		return dialVsock(ctx, addr)
	}
	return nil, fmt.Errorf("dial: %w: %v", ErrBadAddr, addr)
}

// Dialer returns a function shaped like net.Dialer.DialContext that ignores
// its network and address arguments and always dials addr. It is how an HTTP
// transport reaches a fixed proxy (vsock-proxy in front of KMS) while TLS and
// the Host header still name the real server.
func Dialer(addr Addr) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return Dial(ctx, addr)
	}
}

package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"

	"github.com/mdlayher/vsock"
)

// The source ports DialPrivileged binds: glibc's bindresvport range, which
// leaves the well-known ports below it to services.
const (
	PrivilegedPortMin = 600
	PrivilegedPortMax = 1023
)

// ErrPrivilegedPortDenied is matched by DialPrivileged's error when this
// process may not bind a port below 1024: on Linux that takes root or
// CAP_NET_BIND_SERVICE (for vsock, in the initial user namespace).
var ErrPrivilegedPortDenied = errors.New("binding a privileged source port is not permitted (run as root or grant CAP_NET_BIND_SERVICE)")

// ErrNoPrivilegedPort is matched by DialPrivileged's error when every port
// from PrivilegedPortMin to PrivilegedPortMax is in use.
var ErrNoPrivilegedPort = fmt.Errorf("every source port from %d to %d is in use", PrivilegedPortMin, PrivilegedPortMax)

// PrivilegedPeer reports whether a connection's remote address is one that
// only a privileged process can have:
//
//   - vsock or TCP from a source port below 1024. Binding such a port takes
//     root or CAP_NET_BIND_SERVICE on the peer's machine (Linux's vsock
//     code refuses ports up to 1023 without it), so on a Nitro parent
//     instance it is the host shim, not any local user. Over TCP this holds
//     only for peers on the same machine: signerd's tcp:// listener is for
//     development and tests on loopback.
//   - a unix socket peer: the socket file's permissions decide who may
//     connect at all, and unix sockets are for development and tests only
//     (nothing outside an enclave reaches one inside it).
//
// Anything else (another address type, port 0) is unprivileged.
func PrivilegedPeer(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.Port > 0 && a.Port < 1024
	case *vsock.Addr:
		return a.Port < 1024
	case *net.UnixAddr:
		return true
	}
	return false
}

// DialPrivileged connects to addr as Dial does, but from a source port
// between PrivilegedPortMin and PrivilegedPortMax for vsock and TCP
// addresses, so that the peer can tell the connection comes from a
// privileged process (see PrivilegedPeer). It starts at a random port of the
// range and skips ports in use. A unix address is dialed as Dial does.
//
// If the process may not bind such a port, the error matches
// ErrPrivilegedPortDenied; if all of them are in use, ErrNoPrivilegedPort.
// Callers may then fall back to Dial. ctx bounds only the dial.
func DialPrivileged(ctx context.Context, addr Addr) (net.Conn, error) {
	switch addr.Scheme {
	case Unix:
		return Dial(ctx, addr)
	case TCP:
		return dialFromPrivilegedPort(ctx, func(ctx context.Context, port int) (net.Conn, error) {
			return dialTCPFrom(ctx, addr.HostPort, port)
		})
	case Vsock:
		return dialFromPrivilegedPort(ctx, func(ctx context.Context, port int) (net.Conn, error) {
			return dialVsockFrom(ctx, addr, port)
		})
	}
	return nil, fmt.Errorf("dial: %w: %v", ErrBadAddr, addr)
}

// dialFromPrivilegedPort calls dial with one port of the privileged range
// after another, from a random start, until one is not in use. A refusal to
// bind ends it with ErrPrivilegedPortDenied; any other error (the peer
// refused, ctx ended) is returned as it is.
func dialFromPrivilegedPort(ctx context.Context, dial func(ctx context.Context, port int) (net.Conn, error)) (net.Conn, error) {
	const n = PrivilegedPortMax - PrivilegedPortMin + 1
	start := rand.IntN(n)
	for i := range n {
		port := PrivilegedPortMin + (start+i)%n
		c, err := dial(ctx, port)
		switch {
		case err == nil:
			return c, nil
		case isAddrInUse(err):
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		case isBindDenied(err):
			return nil, fmt.Errorf("bind source port %d: %w (%v)", port, ErrPrivilegedPortDenied, err)
		}
		return nil, err
	}
	return nil, ErrNoPrivilegedPort
}

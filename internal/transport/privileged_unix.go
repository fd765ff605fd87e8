//go:build unix

package transport

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// dialTCPFrom dials hostport from local port port (on any local address).
func dialTCPFrom(ctx context.Context, hostport string, port int) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{Port: port}}
	return d.DialContext(ctx, "tcp", hostport)
}

// isAddrInUse reports a source port taken by another socket (including one
// in TIME_WAIT), or a 4-tuple already in use.
func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL)
}

// isBindDenied reports a bind refused for lack of privilege.
func isBindDenied(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}

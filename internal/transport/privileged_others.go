//go:build !unix

package transport

import (
	"context"
	"fmt"
	"net"
	"runtime"
)

// Ports below 1024 are not privileged here, and bind errors have other
// numbers: privileged dialing is a unix matter.

func dialTCPFrom(ctx context.Context, hostport string, port int) (net.Conn, error) {
	return nil, fmt.Errorf("%w: not on %s", ErrPrivilegedPortDenied, runtime.GOOS)
}

func isAddrInUse(error) bool  { return false }
func isBindDenied(error) bool { return false }

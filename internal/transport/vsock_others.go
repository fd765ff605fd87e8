//go:build !linux

package transport

import (
	"context"
	"fmt"
	"net"
	"runtime"
)

func listenVsock(addr Addr) (net.Listener, error) {
	return nil, fmt.Errorf("listen %v: vsock is not implemented on %s", addr, runtime.GOOS)
}

func dialVsock(ctx context.Context, addr Addr) (net.Conn, error) {
	return nil, fmt.Errorf("dial %v: vsock is not implemented on %s", addr, runtime.GOOS)
}

func dialVsockFrom(ctx context.Context, addr Addr, port int) (net.Conn, error) {
	return dialVsock(ctx, addr)
}

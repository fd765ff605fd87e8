package transport

import (
	"context"
	"net"

	"github.com/mdlayher/vsock"
)

func listenVsock(addr Addr) (net.Listener, error) {
	if addr.CID == CIDAny {
		return vsock.Listen(addr.Port, nil)
	}
	return vsock.ListenContextID(addr.CID, addr.Port, nil)
}

func dialVsock(ctx context.Context, addr Addr) (net.Conn, error) {
	return vsock.DialContext(ctx, addr.CID, addr.Port, nil)
}

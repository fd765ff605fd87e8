package main

import (
	"context"
	"fmt"
	"io/fs"
	"net"

	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// socketMode is the mode of signerd's unix socket: its own user only.
// Every peer of a unix socket counts as privileged (it may provision), so
// the socket's permissions decide who can (docs/protocol.md#who-may-provision).
const socketMode fs.FileMode = 0o600

// listen opens the listener. A unix socket file left behind by a signerd
// that died is replaced, but only when nothing answers on it; the socket is
// never, not for a moment, open to others (transport.ListenUnix).
func listen(ctx context.Context, addr transport.Addr) (net.Listener, error) {
	var ln net.Listener
	var err error
	if addr.Scheme == transport.Unix {
		ln, err = transport.ListenUnix(ctx, addr.Path, socketMode)
	} else {
		ln, err = transport.Listen(ctx, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", addr, err)
	}
	return ln, nil
}

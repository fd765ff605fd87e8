package wire

import (
	"context"
	"net"
)

// Peer is the other end of the connection a request came in on.
type Peer struct {
	// Addr is the peer's address, as the connection reports it.
	Addr net.Addr
	// Privileged is what Server.Privileged says of Addr: by default, a
	// vsock or TCP source port below 1024 (which only root can bind on the
	// peer's machine) or a unix socket peer (the socket file's permissions
	// decide who connects at all).
	Privileged bool
}

type peerKey struct{}

// PeerFromContext returns the peer of the connection a Server read the
// request from: the ctx a Handler gets carries it. ok is false for any
// other ctx, which a handler guarding a request should treat as an
// unprivileged peer.
func PeerFromContext(ctx context.Context) (p Peer, ok bool) {
	p, ok = ctx.Value(peerKey{}).(Peer)
	return p, ok
}

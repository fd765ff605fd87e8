package wire

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// peerEcho answers a sign request with the peer its ctx carries: the
// address as the key id, and one byte, 1 for privileged, in the signature.
var peerEcho = HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
	p, ok := PeerFromContext(ctx)
	if !ok {
		return &SignResponse{KeyID: "no peer"}, nil
	}
	priv := byte(0)
	if p.Privileged {
		priv = 1
	}
	return &SignResponse{KeyID: p.Addr.Network() + " " + p.Addr.String(), Signature: []byte{priv}}, nil
})

// TestPeerInHandlerContext: the handler's ctx carries the connection's
// peer, privileged as Server.Privileged says: a unix socket peer and a TCP
// source port below 1024 are privileged, an ephemeral port is not.
func TestPeerInHandlerContext(t *testing.T) {
	if _, ok := PeerFromContext(t.Context()); ok {
		t.Fatal("PeerFromContext of a ctx no Server made: ok")
	}
	ctx := t.Context()
	ask := func(c *Conn) (string, bool) {
		t.Helper()
		r, err := callAs[*SignResponse](ctx, c, &SignRequest{KeyID: "k"})
		if err != nil {
			t.Fatal(err)
		}
		return r.KeyID, len(r.Signature) == 1 && r.Signature[0] == 1
	}

	_, path := startServer(t, peerEcho)
	if addr, priv := ask(dial(t, path)); addr[:4] != "unix" || !priv {
		t.Errorf("unix peer: %q privileged %v, want a unix address, privileged", addr, priv)
	}

	_, hostport := startTCPServer(t, peerEcho)
	taddr := transport.Addr{Scheme: transport.TCP, HostPort: hostport}
	plain, err := Dial(ctx, func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, taddr) })
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	addr, priv := ask(plain)
	if _, port, _ := net.SplitHostPort(addr[len("tcp "):]); priv || port == "" {
		t.Errorf("ephemeral TCP peer: %q privileged %v, want its address, unprivileged", addr, priv)
	}

	privConn, err := Dial(ctx, func(ctx context.Context) (net.Conn, error) { return transport.DialPrivileged(ctx, taddr) })
	if err != nil {
		if os.Getenv("CI") == "true" || os.Geteuid() == 0 {
			t.Fatalf("dial from a privileged port: %v", err)
		}
		t.Skipf("cannot bind privileged ports here: %v", err)
	}
	defer privConn.Close()
	addr, priv = ask(privConn)
	_, port, _ := net.SplitHostPort(addr[len("tcp "):])
	if n, _ := strconv.Atoi(port); !priv || n < transport.PrivilegedPortMin || n > transport.PrivilegedPortMax {
		t.Errorf("privileged TCP peer: %q privileged %v, want a port from %d to %d, privileged", addr, priv, transport.PrivilegedPortMin, transport.PrivilegedPortMax)
	}
}

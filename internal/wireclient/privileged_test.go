package wireclient_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/testsupport"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// fullServer serves signing on 127.0.0.1 with room for one unprivileged
// connection, and takes that one: every further unprivileged connection
// is refused.
func fullServer(t *testing.T) transport.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &wire.Server{MaxConns: 1, Handler: wire.HandlerFunc(func(ctx context.Context, req wire.Message) (wire.Message, error) {
		if s, ok := req.(*wire.SignRequest); ok {
			return &wire.SignResponse{KeyID: s.KeyID, Algorithm: "ed25519", Signature: s.Data}, nil
		}
		return &wire.Status{State: wire.StateReady}, nil
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := transport.Addr{Scheme: transport.TCP, HostPort: ln.Addr().String()}
	holder, err := wire.Dial(t.Context(), func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Close() })
	return addr
}

func TestTooManyConnectionsError(t *testing.T) {
	addr := fullServer(t)
	c := wireclient.New(addr, &wireclient.Options{Conns: 1})
	defer c.Close()
	_, err := c.SignMessage(t.Context(), "k", []byte("x"))
	if !errors.Is(err, wireclient.ErrUnavailable) || !errors.Is(err, wire.ErrTooManyConnections) {
		t.Fatalf("got %v; want an error matching ErrUnavailable and wire.ErrTooManyConnections", err)
	}
	for _, want := range []string{"too_many_connections", "at most 1", "below 1024"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestPrivilegedSourcePort(t *testing.T) {
	addr := fullServer(t)
	var logs testsupport.SyncBuffer
	c := wireclient.New(addr, &wireclient.Options{Conns: 2, PrivilegedSourcePort: true, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	defer c.Close()
	for i := range 4 {
		r, err := c.SignMessage(t.Context(), "k", []byte("x"))
		if err != nil {
			if strings.Contains(logs.String(), "privileged source port") {
				if os.Getenv("CI") == "true" {
					t.Fatalf("CI must run as root (or with CAP_NET_BIND_SERVICE) to test privileged source ports: %v\n%s", err, logs.String())
				}
				t.Skipf("cannot bind privileged ports here: %v", err)
			}
			t.Fatalf("sign %d from a privileged port on a full server: %v", i, err)
		}
		if r.KeyID != "k" {
			t.Fatalf("sign %d: %#v", i, r)
		}
	}
	// Each slot dials lazily the first time round-robin picks it.
	waitConnects(t, c, 2)
}

// waitConnects calls until the Client has opened want connections, or
// fails after 5 s.
func waitConnects(t *testing.T, c *wireclient.Client, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Connects() < want && time.Now().Before(deadline) {
		c.Status(t.Context())
		time.Sleep(time.Millisecond)
	}
	if got := c.Connects(); got != want {
		t.Fatalf("Connects() = %d, want %d", got, want)
	}
}

func TestPrivilegedSourcePortFallback(t *testing.T) {
	var tries atomic.Int32
	old := *wireclient.DialPrivilegedPort
	*wireclient.DialPrivilegedPort = func(ctx context.Context, addr transport.Addr) (net.Conn, error) {
		tries.Add(1)
		return nil, fmt.Errorf("bind source port 700: %w (permission denied)", transport.ErrPrivilegedPortDenied)
	}
	t.Cleanup(func() { *wireclient.DialPrivilegedPort = old })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &wire.Server{Handler: wire.HandlerFunc(func(ctx context.Context, req wire.Message) (wire.Message, error) {
		return &wire.Status{State: wire.StateWaiting}, nil
	})}
	go srv.Serve(ln)
	defer srv.Close()
	var logs testsupport.SyncBuffer
	c := wireclient.New(transport.Addr{Scheme: transport.TCP, HostPort: ln.Addr().String()},
		&wireclient.Options{Conns: 3, PrivilegedSourcePort: true, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	defer c.Close()
	for range 6 {
		if _, err := c.Status(t.Context()); err != nil {
			t.Fatalf("status over the fallback: %v", err)
		}
	}
	waitConnects(t, c, 3)
	if n := tries.Load(); n != 1 {
		t.Errorf("tried a privileged port %d times, want once (privileges do not come back)", n)
	}
	if n := strings.Count(logs.String(), "cannot dial the enclave from a privileged source port"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "CAP_NET_BIND_SERVICE") {
		t.Errorf("the warning does not name the fix:\n%s", logs.String())
	}
}

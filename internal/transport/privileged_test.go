package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/mdlayher/vsock"
)

func TestPrivilegedPeer(t *testing.T) {
	tests := []struct {
		name string
		addr net.Addr
		want bool
	}{
		{"tcp 22", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}, true},
		{"tcp 1023", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1023}, true},
		{"tcp 1024", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1024}, false},
		{"tcp ephemeral", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, false},
		{"tcp port 0", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, false},
		{"vsock 1023", &vsock.Addr{ContextID: 3, Port: 1023}, true},
		{"vsock 1024", &vsock.Addr{ContextID: 3, Port: 1024}, false},
		{"vsock auto-bound", &vsock.Addr{ContextID: 3, Port: 51234}, false},
		{"unix", &net.UnixAddr{Name: "@", Net: "unix"}, true},
		{"udp 53", &net.UDPAddr{Port: 53}, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PrivilegedPeer(tt.addr); got != tt.want {
				t.Fatalf("PrivilegedPeer(%v) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

// TestDialFromPrivilegedPortSkipsPortsInUse drives the port loop that the
// vsock and TCP dials share with a dial that fails as the kernel would.
func TestDialFromPrivilegedPortSkipsPortsInUse(t *testing.T) {
	inUse := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	denied := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	conn, _ := net.Pipe()
	defer conn.Close()

	t.Run("skips ports in use", func(t *testing.T) {
		var tried []int
		got, err := dialFromPrivilegedPort(t.Context(), func(ctx context.Context, port int) (net.Conn, error) {
			tried = append(tried, port)
			if len(tried) < 5 {
				return nil, inUse
			}
			return conn, nil
		})
		if err != nil || got != conn {
			t.Fatalf("got %v, %v; want the conn after 4 ports in use", got, err)
		}
		seen := map[int]bool{}
		for _, p := range tried {
			if p < PrivilegedPortMin || p > PrivilegedPortMax || seen[p] {
				t.Fatalf("tried ports %v: want distinct ports in [%d, %d]", tried, PrivilegedPortMin, PrivilegedPortMax)
			}
			seen[p] = true
		}
	})
	t.Run("all in use", func(t *testing.T) {
		n := 0
		_, err := dialFromPrivilegedPort(t.Context(), func(ctx context.Context, port int) (net.Conn, error) {
			n++
			return nil, inUse
		})
		if !errors.Is(err, ErrNoPrivilegedPort) || n != PrivilegedPortMax-PrivilegedPortMin+1 {
			t.Fatalf("after %d tries: %v; want ErrNoPrivilegedPort after every port of the range", n, err)
		}
	})
	t.Run("not permitted", func(t *testing.T) {
		n := 0
		_, err := dialFromPrivilegedPort(t.Context(), func(ctx context.Context, port int) (net.Conn, error) {
			n++
			return nil, denied
		})
		if !errors.Is(err, ErrPrivilegedPortDenied) || n != 1 {
			t.Fatalf("after %d tries: %v; want ErrPrivilegedPortDenied at once", n, err)
		}
	})
	t.Run("peer refuses", func(t *testing.T) {
		n := 0
		_, err := dialFromPrivilegedPort(t.Context(), func(ctx context.Context, port int) (net.Conn, error) {
			n++
			return nil, refused
		})
		if !errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, ErrPrivilegedPortDenied) || n != 1 {
			t.Fatalf("after %d tries: %v; want the refusal as it is, at once", n, err)
		}
	})
}

// bindPrivilegedOrSkip skips a test that needs to bind ports below 1024
// when this process may not, except under CI=true, where it must.
func bindPrivilegedOrSkip(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrPrivilegedPortDenied) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run as root (or with CAP_NET_BIND_SERVICE) to test privileged source ports: %v", err)
		}
		t.Skipf("cannot bind privileged ports here: %v", err)
	}
}

// TestDialPrivilegedTCP dials a loopback listener from a privileged port,
// the path the host shim takes to signerd (vsock shares the port loop).
func TestDialPrivilegedTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := Addr{Scheme: TCP, HostPort: ln.Addr().String()}

	// Hold a few connections at once: each needs a port of its own.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 3 {
		c, err := DialPrivileged(t.Context(), addr)
		bindPrivilegedOrSkip(t, err)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		lport := c.LocalAddr().(*net.TCPAddr).Port
		if lport < PrivilegedPortMin || lport > PrivilegedPortMax {
			t.Fatalf("local port %d, want one in [%d, %d]", lport, PrivilegedPortMin, PrivilegedPortMax)
		}
		srv := <-accepted
		conns = append(conns, srv)
		if !PrivilegedPeer(srv.RemoteAddr()) {
			t.Fatalf("the listener sees %v, which PrivilegedPeer calls unprivileged", srv.RemoteAddr())
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}

	// A plain Dial comes from an ephemeral port: unprivileged.
	c, err := Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, c)
	srv := <-accepted
	conns = append(conns, srv)
	if PrivilegedPeer(srv.RemoteAddr()) {
		t.Fatalf("an ordinary dial from %v counts as privileged", srv.RemoteAddr())
	}
}

func TestDialPrivilegedUnixIsDial(t *testing.T) {
	path := fmt.Sprintf("%s/s.sock", t.TempDir())
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := DialPrivileged(t.Context(), Addr{Scheme: Unix, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

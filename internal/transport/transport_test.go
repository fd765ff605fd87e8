package transport

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"golang.org/x/net/nettest"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in   string
		want Addr
		err  bool
	}{
		{in: "vsock://3:8000", want: Addr{Scheme: Vsock, CID: 3, Port: 8000}},
		{in: "vsock://any:5005", want: Addr{Scheme: Vsock, CID: CIDAny, Port: 5005}},
		{in: "unix:///tmp/x.sock", want: Addr{Scheme: Unix, Path: "/tmp/x.sock"}},
		{in: "tcp://127.0.0.1:80", want: Addr{Scheme: TCP, HostPort: "127.0.0.1:80"}},
		{in: "tcp://[::1]:80", want: Addr{Scheme: TCP, HostPort: "[::1]:80"}},
		{in: "3:5000", err: true},
		{in: "vsock://3", err: true},
		{in: "vsock://x:1", err: true},
		{in: "vsock://3:99999999999", err: true},
		{in: "unix://", err: true},
		{in: "tcp://127.0.0.1", err: true},
		{in: "tcp://127.0.0.1:70000", err: true},
		{in: "http://127.0.0.1:80", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAddr(tt.in)
			if tt.err {
				if err == nil || !errors.Is(err, ErrBadAddr) {
					t.Fatalf("ParseAddr(%q) error = %v, want ErrBadAddr", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddr(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseAddr(%q):\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestParseHTTPAddr(t *testing.T) {
	for in, want := range map[string]Addr{
		"127.0.0.1:8080":       {Scheme: TCP, HostPort: "127.0.0.1:8080"},
		"tcp://127.0.0.1:8080": {Scheme: TCP, HostPort: "127.0.0.1:8080"},
		"unix:///run/s.sock":   {Scheme: Unix, Path: "/run/s.sock"},
	} {
		got, err := ParseHTTPAddr(in)
		if err != nil || got != want {
			t.Errorf("ParseHTTPAddr(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if _, err := ParseHTTPAddr("vsock://3:80"); err == nil {
		t.Error("ParseHTTPAddr accepted a vsock address")
	}
}

// TestConn runs the x/net conformance suite over every transport that can
// be exercised on this machine (never vsock: see the package comment).
func TestConn(t *testing.T) {
	addrs := map[string]func(t *testing.T) Addr{
		"unix": func(t *testing.T) Addr {
			return Addr{Scheme: Unix, Path: filepath.Join(t.TempDir(), "s.sock")}
		},
		"tcp": func(t *testing.T) Addr { return Addr{Scheme: TCP, HostPort: "127.0.0.1:0"} },
	}
	for name, mk := range addrs {
		t.Run(name, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				ctx := context.Background()
				a := mk(t)
				ln, err := Listen(ctx, a)
				if err != nil {
					return nil, nil, nil, err
				}
				if a.Scheme == TCP {
					a.HostPort = ln.Addr().String()
				}
				accepted := make(chan net.Conn, 1)
				go func() {
					c, _ := ln.Accept()
					accepted <- c
				}()
				c1, err = Dial(ctx, a)
				if err != nil {
					ln.Close()
					return nil, nil, nil, err
				}
				c2 = <-accepted
				stop = func() { c1.Close(); c2.Close(); ln.Close() }
				return c1, c2, stop, nil
			})
		})
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"vsock://3:8000", "vsock://any:5005", "unix:///a", "tcp://127.0.0.1:1", "x", "tcp://[::1]:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err != nil {
			if a != (Addr{}) {
				t.Fatalf("error with non-zero Addr %+v", a)
			}
			return
		}
		// A parsed address round-trips through its String form.
		b, err := ParseAddr(a.String())
		if err != nil || b != a {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v, %v", s, a, a.String(), b, err)
		}
	})
}

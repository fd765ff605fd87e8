package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/mdlayher/socket"
	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
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

// dialVsockFrom connects to addr from local vsock port port. vsock.Dial
// cannot bind before connecting, so this opens the socket itself, as
// vsock.Dial does inside, with a bind(2) in between.
func dialVsockFrom(ctx context.Context, addr Addr, port int) (net.Conn, error) {
	c, err := socket.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0, "vsock", nil)
	if err != nil {
		return nil, err
	}
	if err := c.Bind(&unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: uint32(port)}); err != nil {
		c.Close()
		return nil, err
	}
	sa := &unix.SockaddrVM{CID: addr.CID, Port: addr.Port}
	rsa, err := c.Connect(ctx, sa)
	if err != nil {
		c.Close()
		return nil, err
	}
	if rsa == nil {
		rsa = sa // as vsock.Dial: getpeername(2) may return nothing
	}
	lsa, err := c.Getsockname()
	if err != nil {
		c.Close()
		return nil, err
	}
	l, lok := lsa.(*unix.SockaddrVM)
	r, rok := rsa.(*unix.SockaddrVM)
	if !lok || !rok {
		c.Close()
		return nil, errors.New("vsock: unexpected socket address type")
	}
	return &vsockConn{
		c:      c,
		local:  &vsock.Addr{ContextID: l.CID, Port: l.Port},
		remote: &vsock.Addr{ContextID: r.CID, Port: r.Port},
	}, nil
}

// vsockConn is a connected vsock socket as a net.Conn, with the addresses
// (and *net.OpError errors) a *vsock.Conn has.
type vsockConn struct {
	c             *socket.Conn
	local, remote *vsock.Addr
}

func (v *vsockConn) opError(op string, err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	return &net.OpError{Op: op, Net: "vsock", Source: v.local, Addr: v.remote, Err: err}
}

func (v *vsockConn) Read(b []byte) (int, error) {
	n, err := v.c.Read(b)
	return n, v.opError("read", err)
}

func (v *vsockConn) Write(b []byte) (int, error) {
	n, err := v.c.Write(b)
	return n, v.opError("write", err)
}

func (v *vsockConn) Close() error                  { return v.opError("close", v.c.Close()) }
func (v *vsockConn) CloseRead() error              { return v.opError("close", v.c.CloseRead()) }
func (v *vsockConn) CloseWrite() error             { return v.opError("close", v.c.CloseWrite()) }
func (v *vsockConn) LocalAddr() net.Addr           { return v.local }
func (v *vsockConn) RemoteAddr() net.Addr          { return v.remote }
func (v *vsockConn) SetDeadline(t time.Time) error { return v.opError("set", v.c.SetDeadline(t)) }
func (v *vsockConn) SetReadDeadline(t time.Time) error {
	return v.opError("set", v.c.SetReadDeadline(t))
}
func (v *vsockConn) SetWriteDeadline(t time.Time) error {
	return v.opError("set", v.c.SetWriteDeadline(t))
}

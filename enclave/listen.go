package main

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/enclave-signer/enclave-signer/pkg/transport"
)

// socketMode is the mode of signerd's unix socket: its own user only.
// Every peer of a unix socket counts as privileged (it may provision), so
// the socket's permissions decide who can (docs/protocol.md#who-may-provision).
const socketMode fs.FileMode = 0o600

// listen opens the listener. A unix socket file left behind by a signerd
// that died is removed first, but only when nothing answers on it.
func listen(ctx context.Context, addr transport.Addr) (net.Listener, error) {
	if addr.Scheme != transport.Unix {
		ln, err := transport.Listen(ctx, addr)
		if err != nil {
			return nil, fmt.Errorf("--listen %s: %w", addr, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(addr.Path); err == nil && fi.Mode().Type() == fs.ModeSocket {
		if c, err := net.DialTimeout("unix", addr.Path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("--listen %s: another process is serving on this socket", addr)
		}
		os.Remove(addr.Path)
	}
	ln, err := listenUnixPrivate(ctx, addr.Path)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", addr, err)
	}
	return ln, nil
}

// listenUnixPrivate listens on a unix socket at path with socketMode,
// made so that no one else can connect at any moment: it is bound in a
// new directory of mode 0700 beside path, given its mode, then renamed
// into place. (Binding at path and changing the mode after would leave a
// moment in which the umask's mode lets others connect, and a connection
// made then would outlive the change.)
func listenUnixPrivate(ctx context.Context, path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".s")
	if err != nil {
		return nil, err
	}
	defer os.Remove(dir)
	tmp := filepath.Join(dir, "s")
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", tmp)
	if err != nil {
		return nil, err
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // it would unlink tmp; Close removes path
	if err := os.Chmod(tmp, socketMode); err != nil {
		ul.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ul.Close()
		os.Remove(tmp)
		return nil, err
	}
	return &unixListener{UnixListener: ul, path: path}, nil
}

// unixListener removes its socket file when closed.
type unixListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

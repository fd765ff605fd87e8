package transport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrSocketInUse is returned by ListenUnix when another process answers on
// the socket path.
var ErrSocketInUse = errors.New("another process is listening on this socket")

// ListenUnix listens on a unix socket at path whose file has the given
// mode from its first moment: connecting to a unix socket needs write
// permission on its file, so the mode decides who may connect (0600: the
// owner only; 0660: the group too). It is bound in a new directory of mode
// 0700 beside path, given its mode, then renamed into place. Binding at
// path and changing the mode afterwards would leave a moment in which the
// umask's mode lets others connect, and a connection made then outlives
// the change.
//
// A socket file left at path by a process that is gone is replaced; one
// on which a process still answers is left alone (ErrSocketInUse). Closing
// the listener removes the socket file.
func ListenUnix(ctx context.Context, path string, mode fs.FileMode) (net.Listener, error) {
	if mode&^fs.ModePerm != 0 {
		return nil, fmt.Errorf("unix socket %s: mode %v: want permission bits only", path, mode)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == fs.ModeSocket {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("unix socket %s: %w", path, ErrSocketInUse)
		}
		os.Remove(path)
	}
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
	if err := os.Chmod(tmp, mode); err != nil {
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

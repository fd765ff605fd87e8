//go:build unix

package transport

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestListenUnix: the socket has the mode asked for whatever the umask
// (here 0, which would make it 0777), a stale socket file is replaced, a
// live one refused, and Close removes the file and leaves nothing beside
// it.
func TestListenUnix(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	for _, mode := range []fs.FileMode{0o600, 0o660} {
		path := filepath.Join(dir, "s.sock")
		ln, err := ListenUnix(context.Background(), path, mode)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != mode {
			t.Fatalf("socket after ListenUnix(%v): %v, %v", mode, fi.Mode(), err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		if _, err := ListenUnix(context.Background(), path, mode); !errors.Is(err, ErrSocketInUse) || !strings.Contains(err.Error(), path) {
			t.Errorf("a second listener on a live socket: %v, want ErrSocketInUse naming the path", err)
		}
		ln.Close()
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Close the socket file is still there: %v", err)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, de := range entries {
		t.Errorf("left behind: %s", de.Name())
	}

	// A socket file nobody answers on (a process that died) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	ln, err := ListenUnix(context.Background(), stale, 0o600)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	ln.Close()

	if _, err := ListenUnix(context.Background(), filepath.Join(dir, "x.sock"), fs.ModeSetuid|0o600); err == nil {
		t.Error("a mode beyond permission bits was accepted")
	}
}

//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// devLock is signer dev's hold on its directory: flock(2) on DIR/lock,
// held as long as the process lives. The kernel releases it when the
// process ends, however it ends, so a lock file left behind is no
// obstacle. The file holds the holder's pid, for the message a second
// signer dev prints. The descriptor is close-on-exec: the children never
// hold the lock.
type devLock struct{ f *os.File }

// lockDevDir takes the lock on dir, or fails at once, having changed
// nothing, if another signer dev holds it.
func lockDevDir(dir string) (*devLock, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by signer dev (%s); stop it or use --dir", dir, lockHolder(path))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &devLock{f: f}, nil
}

// lockHolder names the process holding the lock at path: "pid N". The
// holder writes its pid just after taking the lock, so an empty file is
// read again for a moment.
func lockHolder(path string) string {
	for range 20 {
		b, _ := os.ReadFile(path)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return "pid " + strconv.Itoa(pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "pid unknown: " + path + " names none"
}

// release gives the lock up. The file stays: removing it would let a
// third signer dev lock a new file while a second still holds the old one.
func (l *devLock) release() {
	if l != nil {
		l.f.Close()
	}
}

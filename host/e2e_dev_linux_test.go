package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// assertChildrenGone checks, within bound, that every child has ended and
// that nothing answers any longer on the stack's sockets and address.
func assertChildrenGone(t *testing.T, p *devProc, bound time.Duration, after string) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for name, pid := range p.pids {
		for !gone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s (pid %d) still runs %s later", after, name, pid, bound)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A process whose main thread is a zombie may still be closing its
	// descriptors in its other threads: wait for the sockets too.
	answering := func() string {
		for _, sock := range []string{"kms-proxy.sock", "signerd.sock"} {
			if socketReady(filepath.Join(p.dir, sock))() {
				return sock
			}
		}
		if code, err := p.getJSON("/v1/status", new(map[string]any)); err == nil || code != 0 {
			return p.url
		}
		return ""
	}
	for what := answering(); what != ""; what = answering() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s still answers %s later", after, what, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDevChildrenDieWithIt: signer dev's children never outlive it. A
// hangup (the terminal closed) stops them as Ctrl-C does, exit 0; SIGKILL,
// which signer dev cannot handle, takes them too (the kernel's
// parent-death signal). A start after the SIGKILL finds the lock and the
// stale sockets no obstacle.
func TestDevChildrenDieWithIt(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(30 * time.Second); code != 0 || !strings.Contains(p.out.String(), "signer dev: stopping") {
		t.Errorf("after SIGHUP: exit %d, output:\n%s\nwant a clean stop, exit 0", code, p.out.String())
	}
	assertChildrenGone(t, p, 5*time.Second, "after SIGHUP")

	p = startDev(t, dir)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.waitExit(10 * time.Second)
	assertChildrenGone(t, p, 10*time.Second, "after SIGKILL")

	p = startDev(t, dir)
	if code, _, body := p.sign("dev-ed25519", "message", []byte("after the kill")); code != 200 {
		t.Fatalf("a start after SIGKILL does not sign: %d %s", code, body)
	}
}

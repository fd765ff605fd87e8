//go:build unix

package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests of signer dev's own behaviour: one per directory,
// what it refuses to start with, and its supervision of the children.
// Bounds are generous (a loaded 2-core machine): they catch a hang, not
// slowness.

// gone reports whether pid no longer runs: no such process, or (where
// /proc tells) a zombie, which an orphan whose new parent does not reap
// stays; it holds no socket.
func gone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(after, "Z")
}

// fileSums hashes the files of dir that a second signer dev would rewrite
// (a missing file hashes as empty).
func fileSums(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	for _, f := range []string{"kms-endpoint", "shim.json", "policy.json", "identity.enc", "recipient.txt", "keyring.age", "kms-state.json", "lock"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		sums[f] = sha256.Sum256(b)
	}
	return sums
}

func sameFiles(t *testing.T, dir string, before map[string][32]byte, after string) {
	t.Helper()
	for f, sum := range fileSums(t, dir) {
		if sum != before[f] {
			t.Errorf("%s: %s changed", after, f)
		}
	}
	for _, sock := range []string{"kms-proxy.sock", "signerd.sock"} {
		if !socketReady(filepath.Join(dir, sock))() {
			t.Errorf("%s: %s no longer answers", after, sock)
		}
	}
}

// TestDevOnePerDirectory: a second signer dev on a directory in use exits
// at once, non-zero, naming the first one's pid, and touches nothing (no
// file rewritten, no socket removed); one on another directory but the
// same --http address refuses too, instead of printing Ready against the
// first one's shim.
func TestDevOnePerDirectory(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	before := fileSums(t, dir)

	code, out := runDevToExit(t, dir, 20*time.Second, "--http", "127.0.0.1:0")
	want := dir + " is in use by signer dev (pid " + strconv.Itoa(p.cmd.Process.Pid) + "); stop it or use --dir"
	if code == 0 || !strings.Contains(out, want) {
		t.Errorf("second signer dev on %s: exit %d, output:\n%s\nwant non-zero and %q", dir, code, out, want)
	}
	if strings.Contains(out, "Ready") {
		t.Errorf("the second signer dev printed Ready:\n%s", out)
	}
	sameFiles(t, dir, before, "after a second signer dev on the same directory")

	addr := strings.TrimPrefix(p.url, "http://")
	code, out = runDevToExit(t, t.TempDir(), 30*time.Second, "--http", addr)
	if code == 0 || strings.Contains(out, "Ready") || !strings.Contains(out, addr) || !strings.Contains(out, "another process already listens there") {
		t.Errorf("signer dev on a taken --http %s: exit %d, output:\n%s\nwant non-zero, no Ready, and the address named as taken", addr, code, out)
	}
	sameFiles(t, dir, before, "after a signer dev on the same address")
	if c, _, body := p.sign("dev-p256", "message", []byte("still mine")); c != 200 {
		t.Fatalf("the first stack no longer signs: %d %s", c, body)
	}
}

// TestDevRefusesSocketInUse: a process that is not this signer dev's
// (an orphan of an earlier one) answering on DIR/signerd.sock stops the
// start at once, naming the socket (and the process, on Linux), instead
// of a stack that talks to it.
func TestDevRefusesSocketInUse(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "signerd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	code, out := runDevToExit(t, dir, 20*time.Second, "--http", "127.0.0.1:0")
	if code == 0 || strings.Contains(out, "Ready") || !strings.Contains(out, sock+" answers, but this signer dev has started nothing yet") {
		t.Fatalf("exit %d, output:\n%s\nwant a refusal naming %s", code, out, sock)
	}
	if socketOwner(sock) > 0 && !strings.Contains(out, "process "+strconv.Itoa(os.Getpid())+" listens there") {
		t.Errorf("the refusal does not name this test's pid %d:\n%s", os.Getpid(), out)
	}
	if _, err := os.Stat(filepath.Join(dir, "kms-state.json")); err == nil {
		t.Errorf("the refused start created kms-state.json")
	}
}

// TestDevRefusesBrokenIdentitySet: deleting identity.enc (or kms-state.json)
// beside the files that belong with it is refused, naming the files to
// remove together; recipient.txt and keyring.age are left as they were.
func TestDevRefusesBrokenIdentitySet(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	p.stop()
	for _, tc := range []struct{ gone, want string }{
		{"identity.enc", "rm " + filepath.Join(dir, "recipient.txt") + " " + filepath.Join(dir, "keyring.age") + ")"},
		{"kms-state.json", "rm " + filepath.Join(dir, "identity.enc") + " " + filepath.Join(dir, "recipient.txt") + " " + filepath.Join(dir, "keyring.age") + ")"},
	} {
		path := filepath.Join(dir, tc.gone)
		saved, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(path)
		before := map[string][]byte{}
		for _, f := range []string{"identity.enc", "recipient.txt", "keyring.age", "kms-state.json"} {
			before[f], _ = os.ReadFile(filepath.Join(dir, f))
		}
		code, out := runDevToExit(t, dir, 20*time.Second, "--http", "127.0.0.1:0")
		if code == 0 || !strings.Contains(out, path+" is missing") || !strings.Contains(out, tc.want) || !strings.Contains(out, "rm -rf "+dir) {
			t.Errorf("without %s: exit %d, output:\n%s\nwant a refusal saying %q", tc.gone, code, out, tc.want)
		}
		for f, b := range before {
			now, _ := os.ReadFile(filepath.Join(dir, f))
			if string(now) != string(b) {
				t.Errorf("without %s: signer dev rewrote %s", tc.gone, f)
			}
		}
		os.WriteFile(path, saved, 0o600)
	}
	// Restored, the directory starts again.
	startDev(t, dir).stop()
}

// TestDevEmptyKeyring: a --keyring of 0 bytes is refused at once, naming
// it, saying it holds no keys and how to make one (it used to end in "no
// ready or failed enclave after 20s").
func TestDevEmptyKeyring(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(t.TempDir(), "mine.age")
	os.WriteFile(empty, nil, 0o600)
	code, out := runDevToExit(t, dir, 15*time.Second, "--http", "127.0.0.1:0", "--keyring", empty)
	for _, want := range []string{"--keyring " + empty + " is empty (0 bytes), so it holds no keys", "signer keyring new --recipient-file " + filepath.Join(dir, "recipient.txt")} {
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output:\n%s\nwant non-zero and %q", code, out, want)
		}
	}
}

var restartedLine = regexp.MustCompile(`signer dev: signerd restarted \(pid (\d+)\)`)

// TestDevChildDeathEndsStack: the emulator, the TLS front or the shim
// dying ends the stack with a message naming it and its log; every other
// child is stopped.
func TestDevChildDeathEndsStack(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"kms-emulator", "tls-front", "shim"} {
		p := startDev(t, dir)
		if err := syscall.Kill(p.pids[name], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		code := p.waitExit(30 * time.Second)
		out := p.out.String()
		if code == 0 || !strings.Contains(out, "the "+name+" exited (signal: killed), and the stack cannot run without it") ||
			!strings.Contains(out, filepath.Join(dir, "logs", name+".log")) {
			t.Errorf("%s killed: exit %d, output:\n%s", name, code, out)
		}
		if strings.Contains(out, "signerd restarted") {
			t.Errorf("%s killed: signerd was restarted", name)
		}
		for child, pid := range p.pids {
			if child != name && !gone(pid) {
				t.Errorf("%s killed: %s (pid %d) still runs after signer dev exited", name, child, pid)
			}
		}
	}
}

// restartedPids returns the pids of the restarted signerds signer dev has
// announced so far, in order.
func (p *devProc) restartedPids() []int {
	var pids []int
	for _, m := range restartedLine.FindAllStringSubmatch(p.out.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		pids = append(pids, n)
	}
	return pids
}

// waitRestart waits for the n-th restart of signerd (1-based) and returns
// its pid.
func (p *devProc) waitRestart(n int, bound time.Duration) int {
	p.t.Helper()
	deadline := time.Now().Add(bound)
	for {
		if pids := p.restartedPids(); len(pids) >= n {
			return pids[n-1]
		}
		if time.Now().After(deadline) || p.hasExited() {
			p.t.Fatalf("no restart %d of signerd within %s; output:\n%s", n, bound, p.out.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// signResult is one request of the load.
type signResult struct {
	start, end time.Time
	code       int
	errCode    string
	err        error
}

// TestDevSignerdKilledUnderLoad is the fault test: signerd killed with
// SIGKILL under load in signer dev. Every request in flight is answered
// (200, or 503 not_ready), none hangs past its deadline, and signing works
// again within 3 s of the restart, as signer dev supervises signerd and
// the shim provisions the new one by itself. Three kills in a row; the
// times are logged (docs/operations.md, restart recovery).
func TestDevSignerdKilledUnderLoad(t *testing.T) {
	const (
		workers         = 8
		kills           = 3
		requestDeadline = 15 * time.Second // the shim's own request_timeout is 5 s
		signingAgain    = 3 * time.Second  // the bound, from the restart
	)
	dir := t.TempDir()
	p := startDev(t, dir)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()

	var mu sync.Mutex
	var results []signResult
	stop := make(chan struct{})
	var wg sync.WaitGroup
	keys := []string{"dev-ed25519", "dev-p256", "dev-secp256k1"}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := signResult{start: time.Now()}
				ctx, cancel := context.WithTimeout(context.Background(), requestDeadline)
				body := `{"message":"` + base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("load %d/%d", w, i))) + `"}`
				req, _ := http.NewRequestWithContext(ctx, "POST", p.url+"/v1/keys/"+keys[(w+i)%len(keys)]+"/sign", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					var e struct{ Error struct{ Code string } }
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					json.Unmarshal(b, &e)
					r.code, r.errCode, err = resp.StatusCode, e.Error.Code, rerr
				}
				cancel()
				r.end, r.err = time.Now(), err
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				if r.code != 200 {
					time.Sleep(5 * time.Millisecond) // as a client would, rather than spin
				}
			}
		}()
	}
	// firstSuccess returns the end of the first 200 to a request started
	// after t0, waiting for one up to bound.
	firstSuccess := func(t0 time.Time, bound time.Duration) time.Time {
		deadline := time.Now().Add(bound)
		for {
			mu.Lock()
			var first time.Time
			for _, r := range results {
				if r.code == 200 && r.start.After(t0) && (first.IsZero() || r.end.Before(first)) {
					first = r.end
				}
			}
			mu.Unlock()
			if !first.IsZero() {
				return first
			}
			if time.Now().After(deadline) {
				t.Fatalf("no successful signature within %s after %s", bound, t0.Format(time.StampMicro))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	pid := p.pids["signerd"]
	firstSuccess(time.Now(), 30*time.Second) // the load is signing
	for k := 1; k <= kills; k++ {
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		pid = p.waitRestart(k, 30*time.Second)
		restarted := time.Now() // when the test saw the restart line: at or after the restart
		signed := firstSuccess(killed, 30*time.Second)
		t.Logf("kill %d: restart seen %v after the kill; signing again %v after the restart (%v after the kill)",
			k, restarted.Sub(killed).Round(time.Millisecond), max(signed.Sub(restarted), 0).Round(time.Millisecond), signed.Sub(killed).Round(time.Millisecond))
		if signed.Sub(restarted) > signingAgain {
			t.Errorf("kill %d: signing again %v after signerd's restart, want within %v", k, signed.Sub(restarted), signingAgain)
		}
		time.Sleep(200 * time.Millisecond) // load on the new signerd before the next kill
	}
	close(stop)
	wg.Wait()

	counts := map[string]int{}
	for _, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("a request started at %s got no answer: %v (after %v)", r.start.Format(time.StampMicro), r.err, r.end.Sub(r.start))
		case r.code == 200:
			counts["200"]++
		case r.code == 503 && r.errCode == "not_ready":
			counts["503 not_ready"]++
		default:
			t.Errorf("a request got %d %s, want 200 or 503 not_ready", r.code, r.errCode)
		}
		if took := r.end.Sub(r.start); took > requestDeadline {
			t.Errorf("a request took %v, past its deadline", took)
		}
	}
	t.Logf("%d requests from %d goroutines: %v", len(results), workers, counts)
	if counts["200"] == 0 {
		t.Fatal("no request succeeded: the load proves nothing")
	}
	log, _ := os.ReadFile(filepath.Join(dir, "logs", "signerd.log"))
	if n := strings.Count(string(log), "signer dev: signerd restarted"); n != kills {
		t.Errorf("logs/signerd.log tells %d restarts, want %d", n, kills)
	}
	if p.hasExited() {
		t.Fatalf("signer dev exited; output:\n%s", p.out.String())
	}
}

// TestDevSignerdRestartLimit: a signerd that keeps dying is restarted at
// most five times a minute, with growing pauses; the sixth exit ends the
// stack with a message saying so.
func TestDevSignerdRestartLimit(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	pid := p.pids["signerd"]
	for k := 1; k <= maxSignerdRestarts; k++ {
		syscall.Kill(pid, syscall.SIGKILL)
		pid = p.waitRestart(k, 30*time.Second)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	code := p.waitExit(30 * time.Second)
	out := p.out.String()
	want := "signerd exited " + strconv.Itoa(maxSignerdRestarts+1) + " times within a minute, so signer dev stopped restarting it"
	if code == 0 || !strings.Contains(out, want) || !strings.Contains(out, filepath.Join(dir, "logs", "signerd.log")) {
		t.Fatalf("exit %d, output:\n%s\nwant non-zero and %q", code, out, want)
	}
	for _, delay := range []string{"restarting it now", "restarting it in 250ms", "restarting it in 500ms", "restarting it in 1s", "restarting it in 2s"} {
		if !strings.Contains(out, delay) {
			t.Errorf("no %q in the output: the pauses do not grow as documented", delay)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/fakeenclave"
	"github.com/enclave-signer/enclave-signer/internal/testsupport"
)

// serveShim runs `signer serve` in-process against a fake enclave, with
// the HTTP API on a unix socket, and returns the endpoint.
func serveShim(t *testing.T, extra string) (*fakeenclave.Enclave, string) {
	t.Helper()
	for k, v := range map[string]string{
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ACCESS_KEY_ID":           "AKIDHOSTTEST",
		"AWS_SECRET_ACCESS_KEY":       "host-test-secret",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	} {
		t.Setenv(k, v)
	}
	fe := fakeenclave.Start(t)
	dir, err := os.MkdirTemp("", "shimhost")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, f := range []string{"identity.enc", "keyring.age"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("ciphertext stand-in"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "shim.sock")
	cfg := fmt.Sprintf(`{"enclave": %q, "listen": %q, "region": "eu-west-1", "identity": %q, "keyrings": [%q], "status_interval": "50ms", "log_format": "text"%s}`,
		fe.Addr.String(), "unix://"+sock, filepath.Join(dir, "identity.enc"), filepath.Join(dir, "keyring.age"), extra)
	cfgPath := filepath.Join(dir, "shim.json")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stderr testsupport.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgPath}, strings.NewReader(""), &bytes.Buffer{}, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("signer serve exited %d after its context ended, want 0\n%s", code, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("signer serve did not stop")
		}
		if t.Failed() {
			t.Logf("signer serve stderr:\n%s", stderr.String())
		}
	})
	endpoint := "unix://" + sock
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, out, _ := signer(t, "", "status", "--endpoint", endpoint)
		if code == 0 && strings.Contains(out, `"state": "ready"`) {
			return fe, endpoint
		}
		select {
		case code := <-done:
			t.Fatalf("signer serve exited %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shim is not ready after 5s: %s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeAndClientCommands(t *testing.T) {
	fe, ep := serveShim(t, "")
	dir := t.TempDir()

	code, out, errOut := signer(t, "", "keys", "--endpoint", ep)
	if code != 0 || !strings.Contains(out, `"algorithm": "ed25519"`) || !strings.Contains(out, fakeenclave.EthereumAddress) {
		t.Fatalf("signer keys: exit %d\n%s\n%s", code, out, errOut)
	}

	msg := []byte("sign me")
	msgFile := filepath.Join(dir, "msg")
	os.WriteFile(msgFile, msg, 0o600)
	var ans struct {
		KeyID, Algorithm string
		Signature        []byte
	}
	code, out, errOut = signer(t, "", "sign", "--key", "ed", "--message-file", msgFile, "--endpoint", ep)
	if code != 0 || json.Unmarshal([]byte(out), &ans) != nil || !ed25519.Verify(fe.Ed25519, msg, ans.Signature) {
		t.Fatalf("signer sign --message-file: exit %d\n%s\n%s", code, out, errOut)
	}
	// Flags after positionals and stdin.
	code, out, _ = signer(t, string(msg), "sign", "--endpoint", ep, "--message-file", "-", "--key", "ed")
	if code != 0 || json.Unmarshal([]byte(out), &ans) != nil || !ed25519.Verify(fe.Ed25519, msg, ans.Signature) {
		t.Fatalf("signer sign --message-file -: exit %d\n%s", code, out)
	}
	d := sha256.Sum256(msg)
	code, out, _ = signer(t, "", "sign", "--key", "p256", "--digest", hex.EncodeToString(d[:]), "--endpoint", ep)
	if code != 0 || json.Unmarshal([]byte(out), &ans) != nil || !ecdsa.VerifyASN1(fe.P256, d[:], ans.Signature) {
		t.Fatalf("signer sign --digest: exit %d\n%s", code, out)
	}

	// An error answer: the body on stdout, the code on stderr, exit 1.
	code, out, errOut = signer(t, "", "sign", "--key", "nope", "--digest", hex.EncodeToString(d[:]), "--endpoint", ep)
	if code != 1 || !strings.Contains(out, `"code": "unknown_key"`) || !strings.Contains(errOut, "404 unknown_key") {
		t.Fatalf("signer sign with an unknown key: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	code, _, errOut = signer(t, "", "sign", "--key", "ed", "--digest", hex.EncodeToString(d[:]), "--endpoint", ep)
	if code != 1 || !strings.Contains(errOut, "422 digest_not_allowed") {
		t.Fatalf("signer sign digest with ed25519: exit %d\n%s", code, errOut)
	}

	docFile := filepath.Join(dir, "doc.cose")
	code, out, _ = signer(t, "", "attest", "--nonce", "6e6f6e6365", "--out", docFile, "--endpoint", ep)
	doc, _ := os.ReadFile(docFile)
	if code != 0 || !strings.Contains(out, `"document"`) || !bytes.Contains(doc, []byte("nonce=nonce|")) {
		t.Fatalf("signer attest: exit %d\n%s\nfile %q", code, out, doc)
	}

	n := len(fe.Provisions())
	code, out, _ = signer(t, "", "provision", "--endpoint", ep)
	if code != 0 || !strings.Contains(out, `"state": "ready"`) || len(fe.Provisions()) != n+1 {
		t.Fatalf("signer provision: exit %d, %d provisions (was %d)\n%s", code, len(fe.Provisions()), n, out)
	}
	p := fe.Provisions()[n]
	if p.Credentials.AccessKeyID != "AKIDHOSTTEST" || string(p.Credentials.SecretAccessKey) != "host-test-secret" || p.Region != "eu-west-1" {
		t.Errorf("provisioned with %v in %s; want the environment's credentials", p.Credentials, p.Region)
	}

	code, out, _ = signer(t, "", "status", "--endpoint", ep)
	if code != 0 || !strings.Contains(out, `"attestation": "simulated"`) {
		t.Fatalf("signer status: exit %d\n%s", code, out)
	}

	// The enclave restarts: signer serve provisions it again by itself.
	if err := fe.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := fe.WaitProvisions(n+2, 5*time.Second); err != nil {
		t.Fatalf("after an enclave restart: %v", err)
	}
}

func TestClientCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"sign", "--digest", "00"},
		{"sign", "--key", "ed"},
		{"sign", "--key", "ed", "--digest", "00", "--message-file", "f"},
		{"sign", "--key", "ed", "--digest", "zz"},
		{"sign", "--key", "ed", "--digest", "00", "extra"},
		{"keys", "--endpoint", "ftp://x"},
		{"status", "--endpoint", "unix://"},
		{"attest", "--nonce", "xyz"},
		{"provision", "now"},
		{"serve"},
		{"serve", "--config", "a", "b"},
	} {
		if code, _, errOut := signer(t, "", args...); code != 2 {
			t.Errorf("signer %q: exit %d, want 2 (usage)\n%s", args, code, errOut)
		}
	}
}

func TestClientUnreachable(t *testing.T) {
	code, _, errOut := signer(t, "", "status", "--endpoint", "unix:///nonexistent/shim.sock")
	if code != 1 || !strings.Contains(errOut, "hint: is `signer serve` running") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
}

func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"enclave":"vsock://16:5005","listen":"0.0.0.0:8080","region":"eu-west-1","identity":"i","keyrings":["k"]}`), 0o600)
	code, _, errOut := signer(t, "", "serve", "--config", bad)
	if code != 1 || !strings.Contains(errOut, "config: listen:") || !strings.Contains(errOut, "allow_public_listen") || !strings.Contains(errOut, "hint: docs/shim.md") {
		t.Fatalf("public listen: exit %d\n%s", code, errOut)
	}
	code, _, errOut = signer(t, "", "serve", "--config", filepath.Join(dir, "missing.json"))
	if code != 1 || !strings.Contains(errOut, "missing.json") {
		t.Fatalf("missing config: exit %d\n%s", code, errOut)
	}
}

// TestServeUnixSocketMode: on a unix socket, who may sign is who may
// connect: the socket is the shim's user's alone unless listen_mode says
// otherwise, whatever the umask.
func TestServeUnixSocketMode(t *testing.T) {
	old := syscall.Umask(0) // would make the socket 0777
	defer syscall.Umask(old)
	for extra, want := range map[string]fs.FileMode{"": 0o600, `, "listen_mode": "0660"`: 0o660} {
		_, ep := serveShim(t, extra)
		fi, err := os.Lstat(strings.TrimPrefix(ep, "unix://"))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("config%s: socket mode %v (%v), want %v", extra, fi.Mode(), err, want)
		}
	}
}

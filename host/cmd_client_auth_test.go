package main

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// TestSignAsClient: signer sign --client --client-secret signs its request:
// the enclave receives it unchanged, with a credential that verifies under
// the secret for the audience status reports.
func TestSignAsClient(t *testing.T) {
	fe, ep := serveShim(t, "")
	fe.SetAuthStatus(&wire.AuthStatus{Policed: true, Audiences: []string{"dev"}})
	dir := t.TempDir()
	secret := strings.Repeat("a5", 32)
	secretFile := filepath.Join(dir, "app1.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil { // a fixed test secret, the file the command reads
		t.Fatal(err)
	}
	msgFile := filepath.Join(dir, "msg")
	if err := os.WriteFile(msgFile, []byte("pay bob"), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := signer(t, "", "sign", "--endpoint", ep, "--key", "ed", "--message-file", msgFile, "--client", "app1", "--client-secret", secretFile)
	var ans struct{ Signature []byte }
	if code != 0 || json.Unmarshal([]byte(out), &ans) != nil || !ed25519.Verify(fe.Ed25519, []byte("pay bob"), ans.Signature) {
		t.Fatalf("signer sign --client: exit %d\n%s\n%s", code, out, errOut)
	}
	got := fe.AuthSigns()
	if len(got) != 1 {
		t.Fatalf("%d auth_sign_requests, want 1", len(got))
	}
	r := got[0]
	c, err := signreq.ParseAuthorization(r.Authorization)
	if err != nil {
		t.Fatal(err)
	}
	if err := signreq.Verify(&c, [][]byte{mustHexBytes(t, secret)}, "dev", r.Method, r.Path, r.Body); err != nil || c.Client != "app1" || r.Path != "/v1/keys/ed/sign" {
		t.Fatalf("forwarded %+v: %v", r, err)
	}
	// --audience wins over status.
	code, _, _ = signer(t, "", "sign", "--endpoint", ep, "--key", "ed", "--message-file", msgFile, "--client", "app1", "--client-secret", secretFile, "--audience", "other")
	r = fe.AuthSigns()[1]
	c, _ = signreq.ParseAuthorization(r.Authorization)
	if code != 0 || signreq.Verify(&c, [][]byte{mustHexBytes(t, secret)}, "other", r.Method, r.Path, r.Body) != nil {
		t.Fatalf("--audience other: exit %d, the credential is not for it", code)
	}
	// The enclave refuses: the hint says what to do.
	fe.SetAuthError(wire.NewError(wire.CodeUnauthenticated, "mac does not match"))
	code, _, errOut = signer(t, "", "sign", "--endpoint", ep, "--key", "ed", "--message-file", msgFile, "--client", "app1", "--client-secret", secretFile)
	if code != 1 || !strings.Contains(errOut, "401 unauthenticated: mac does not match") || !strings.Contains(errOut, "within 60 s") {
		t.Fatalf("a refused credential: exit %d\n%s", code, errOut)
	}
	// Usage errors, and a bad secret file, which is not quoted.
	if err := os.WriteFile(filepath.Join(dir, "bad.secret"), []byte(secret[:60]+"zzzz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--client", "app1"}, 2, "go together"},
		{[]string{"--client-secret", secretFile}, 2, "go together"},
		{[]string{"--audience", "x"}, 2, "goes with --client"},
		{[]string{"--client", "app1", "--client-secret", filepath.Join(dir, "bad.secret")}, 1, "at position 61"},
		{[]string{"--client", "app1", "--client-secret", filepath.Join(dir, "missing")}, 1, "no such file"},
	} {
		args := append([]string{"sign", "--endpoint", ep, "--key", "ed", "--message-file", msgFile}, tc.args...)
		code, _, errOut := signer(t, "", args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, secret[:60]) {
			t.Errorf("signer %q: exit %d, want %d with %q\n%s", tc.args, code, tc.code, tc.want, errOut)
		}
	}
}

func mustHexBytes(t *testing.T, s string) []byte {
	t.Helper()
	b, err := signreq.ParseSecret([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

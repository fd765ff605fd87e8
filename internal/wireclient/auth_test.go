package wireclient_test

import (
	"bytes"
	"crypto/ed25519"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

var testClientSecret = bytes.Repeat([]byte{0x5c}, 32)

// verifyForwarded checks that r carries a credential of client app1 under
// testClientSecret for audience, over exactly its method, path and body.
func verifyForwarded(t *testing.T, r wire.AuthSignRequest, audience string) {
	t.Helper()
	c, err := signreq.ParseAuthorization(r.Authorization)
	if err != nil {
		t.Fatal(err)
	}
	if c.Client != "app1" {
		t.Errorf("client %q, want app1", c.Client)
	}
	if err := signreq.Verify(&c, [][]byte{testClientSecret}, audience, r.Method, r.Path, r.Body); err != nil {
		t.Errorf("the credential does not verify: %v (%+v)", err, r)
	}
}

// TestClientCredentials: with Credentials, Sign sends auth_sign_requests
// whose MAC covers what the shim would forward, learning the audience
// from the enclave's status when none is given.
func TestClientCredentials(t *testing.T) {
	for _, aud := range []string{"", "payments-prod"} {
		creds := &wireclient.Credentials{Client: "app1", Secret: append([]byte(nil), testClientSecret...), Audience: aud}
		fe, c := newReady(t, &wireclient.Options{Credentials: creds})
		fe.SetAuthStatus(&wire.AuthStatus{Policed: true, Audiences: []string{"payments-prod"}})
		clear(creds.Secret) // the Client keeps its own copy
		resp, err := c.SignMessage(t.Context(), "e/d", []byte("hello"))
		// The fake signs with the key the path names: "e/d" is no key.
		if err == nil || !strings.Contains(err.Error(), "e/d") {
			t.Fatalf("SignMessage(e/d) = %v, %v", resp, err)
		}
		resp, err = c.SignMessage(t.Context(), "ed", []byte("hello"))
		if err != nil || !ed25519.Verify(fe.Ed25519, []byte("hello"), resp.Signature) {
			t.Fatalf("SignMessage = %+v, %v", resp, err)
		}
		if _, err := c.SignDigest(t.Context(), "p256", make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		got := fe.AuthSigns()
		if len(got) != 3 {
			t.Fatalf("%d auth_sign_requests, want 3", len(got))
		}
		want := []struct{ path, body string }{
			{"/v1/keys/e%2Fd/sign", `{"message":"aGVsbG8="}`},
			{"/v1/keys/ed/sign", `{"message":"aGVsbG8="}`},
			{"/v1/keys/p256/sign", `{"digest":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`},
		}
		for i, r := range got {
			if r.Method != "POST" || r.Path != want[i].path || string(r.Body) != want[i].body {
				t.Errorf("request %d: %s %s %s, want POST %s %s", i, r.Method, r.Path, r.Body, want[i].path, want[i].body)
			}
			verifyForwarded(t, r, "payments-prod")
		}
	}
}

func TestClientCredentialsAmbiguousAudience(t *testing.T) {
	fe, c := newReady(t, &wireclient.Options{Credentials: &wireclient.Credentials{Client: "app1", Secret: testClientSecret}})
	fe.SetAuthStatus(&wire.AuthStatus{Policed: true, Audiences: []string{"a", "b"}})
	_, err := c.SignMessage(t.Context(), "ed", []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "[a, b]") || !strings.Contains(err.Error(), "Credentials.Audience") {
		t.Fatalf("two audiences: %v, want an error naming both and the fix", err)
	}
	if len(fe.AuthSigns()) != 0 {
		t.Fatal("a request was sent without an audience")
	}
}

func TestRequestSigner(t *testing.T) {
	if _, err := wireclient.NewRequestSigner(wireclient.Credentials{Client: "app1", Secret: testClientSecret}); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Fatalf("no audience: %v", err)
	}
	rs, err := wireclient.NewRequestSigner(wireclient.Credentials{Client: "app1", Secret: testClientSecret, Audience: "aud"})
	if err != nil {
		t.Fatal(err)
	}
	body := wireclient.SignBody([]byte("hi"), false)
	req, _ := http.NewRequest("POST", "http://127.0.0.1:8080/v1/keys/a%2Fb/sign", bytes.NewReader(body))
	if err := rs.Authorize(req, body); err != nil {
		t.Fatal(err)
	}
	verifyForwarded(t, wire.AuthSignRequest{Method: "POST", Path: "/v1/keys/a%2Fb/sign", Body: body, Authorization: req.Header.Get("Authorization")}, "aud")
	if s := rs.String(); strings.Contains(s, "5c5c") {
		t.Errorf("String prints the secret: %s", s)
	}

	path := filepath.Join(t.TempDir(), "app1.secret")
	os.WriteFile(path, []byte(strings.Repeat("5c", 32)+"\n"), 0o600)
	s, err := wireclient.ReadSecretFile(path)
	if err != nil || !bytes.Equal(s, testClientSecret) {
		t.Fatalf("ReadSecretFile = %x, %v", s, err)
	}
}

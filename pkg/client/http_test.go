package client_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/pkg/client"
)

// A RequestSigner's Authorization verifies as the shim and signerd verify
// it, over exactly the request sent, and it never prints the secret.
func TestRequestSigner(t *testing.T) {
	secret := bytes.Repeat([]byte{0x5c}, 32)
	if _, err := client.NewRequestSigner(client.Credentials{Client: "app1", Secret: secret}); err == nil || !strings.Contains(err.Error(), "audience is empty") {
		t.Fatalf("NewRequestSigner without an audience: error = %v, want one saying the audience is empty", err)
	}
	rs, err := client.NewRequestSigner(client.Credentials{Client: "app1", Secret: secret, Audience: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Destroy()
	body := client.SignBody([]byte("hi"), false)
	if string(body) != `{"message":"aGk="}` {
		t.Fatalf("SignBody = %s", body)
	}
	req, err := http.NewRequest("POST", "http://127.0.0.1:8080/v1/keys/ed/sign", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Authorize(req, body); err != nil {
		t.Fatal(err)
	}
	c, err := signreq.ParseAuthorization(req.Header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	if err := signreq.Verify(&c, [][]byte{secret}, "payments", "POST", "/v1/keys/ed/sign", body); err != nil {
		t.Fatalf("the Authorization does not verify: %v", err)
	}
	if err := signreq.Verify(&c, [][]byte{secret}, "payments", "POST", "/v1/keys/ed/sign", client.SignBody([]byte("hj"), false)); err == nil {
		t.Fatal("the Authorization verifies over another body")
	}
	for _, s := range []string{rs.String(), fmt.Sprintf("%v %+v %#v", rs, rs, rs)} {
		if strings.Contains(s, "5c5c") || strings.Contains(s, "\\\\") {
			t.Fatalf("printing the signer gives %q, which shows the secret", s)
		}
	}
}

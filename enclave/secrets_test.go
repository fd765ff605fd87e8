package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// TestNoSecretsInLogsOrErrors runs failed and successful provisionings and
// signatures with every log line captured (debug level) and checks that no
// secret appears in any log line or any error text a client sees.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	e := start(t)
	c := e.dial()
	keys := []testKey{newKey(t, "ed", keyring.Ed25519), newKey(t, "p256", keyring.ECDSAP256), newKey(t, "eth", keyring.ECDSASecp256k1)}
	var texts []string // every error text and status message the client got
	record := func(err error) {
		if err != nil {
			texts = append(texts, err.Error())
		}
	}
	recordStatus := func(st *wire.Status, err error) {
		record(err)
		if st != nil && st.Error != nil {
			texts = append(texts, st.Error.Message, st.Error.KMSMessage, st.Error.KMSCode)
		}
	}

	// KMS refuses the credentials.
	req := e.request(e.keyringFor("k.age", keys...))
	req.Credentials.SessionToken = "wrong-" + testToken
	recordStatus(call[*wire.Status](t.Context(), c, req))
	// KMS denies the attestation.
	e.kms.mu.Lock()
	e.kms.answer = func(w http.ResponseWriter, _ decryptBody) { kmsError(w, "AccessDeniedException", "denied") }
	e.kms.mu.Unlock()
	recordStatus(call[*wire.Status](t.Context(), c, e.request(e.keyringFor("k.age", keys...))))
	e.kms.mu.Lock()
	e.kms.answer = nil
	e.kms.mu.Unlock()
	// A keyring whose PEM is damaged in the middle, and one with a key of
	// the wrong algorithm: parse errors must not quote the PEM.
	damaged := keys[1]
	damaged.pem = strings.Replace(damaged.pem, "\n", "\n!!", 2)
	wrongAlg := keys[2]
	wrongAlg.alg = keyring.ECDSAP256
	recordStatus(call[*wire.Status](t.Context(), c, e.request(e.keyringFor("damaged.age", damaged))))
	recordStatus(call[*wire.Status](t.Context(), c, e.request(e.keyringFor("wrong.age", wrongAlg))))
	// Success, then signatures and refusals.
	recordStatus(call[*wire.Status](t.Context(), c, e.request(e.keyringFor("k.age", keys...))))
	for _, k := range keys {
		_, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: k.id, Data: []byte("message")})
		if err != nil {
			t.Fatalf("Sign %s: %v", k.id, err)
		}
		_, err = call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: k.id, Data: []byte("short"), IsDigest: true})
		record(err)
	}
	_, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "missing", Data: []byte("m")})
	record(err)
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}

	logs := e.logs.String()
	if len(texts) < 8 || !strings.Contains(logs, "provisioned") || !strings.Contains(logs, "provisioning failed") {
		t.Fatalf("the run did not exercise what it should: %d error texts; logs:\n%s", len(texts), logs)
	}
	secrets := map[string]string{
		"age identity":        e.identity.String(),
		"secret access key":   testSecretKey,
		"session token":       testToken,
		"identity key file":   string(identityFile(e.identity)),
		"identity ciphertext": hex.EncodeToString(e.identityBlob),
	}
	for _, k := range keys {
		secrets[k.id+" secret hex"] = hex.EncodeToString(k.secret)
		secrets[k.id+" secret base64"] = base64.StdEncoding.EncodeToString(k.secret)[:40]
		secrets[k.id+" secret base64url"] = base64.RawURLEncoding.EncodeToString(k.secret)[:40]
		secrets[k.id+" DER base64"] = base64.StdEncoding.EncodeToString(k.der)[:40]
		secrets[k.id+" DER hex"] = hex.EncodeToString(k.der)
		block, _ := pem.Decode([]byte(k.pem))
		if block == nil {
			t.Fatal("test key PEM")
		}
		// Each line of the PEM body, as it would appear quoted.
		for i, line := range strings.Split(k.pem, "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				secrets[k.id+" PEM line "+string(rune('0'+i))] = line
			}
		}
	}
	all := strings.ToLower(logs + "\n" + strings.Join(texts, "\n"))
	for name, s := range secrets {
		if strings.Contains(all, strings.ToLower(s)) {
			t.Errorf("the %s appears in the logs or an error text", name)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
	if !strings.Contains(logs, `"secret_access_key":"REDACTED"`) {
		t.Errorf("the provisioning request is not logged in redacted form:\n%s", logs)
	}
}

// TestNoClientSecretsInLogsOrErrors: the client secrets of a policed
// keyring appear in no log line (debug level) and in no error text or
// status, through provisioning, signatures and every kind of refusal.
func TestNoClientSecretsInLogsOrErrors(t *testing.T) {
	a := startAuth(t)
	var texts []string
	send := func(r *wire.AuthSignRequest) {
		if _, err := a.sign(r); err != nil {
			texts = append(texts, err.Error())
		}
	}
	p := func(client, path string, body []byte) signreq.Params {
		return signreq.Params{Audience: testAudience, Client: client, Path: path, Body: body}
	}
	send(authRequest(t, a.app1.secrets[0], p("app1", "/v1/keys/k1/sign", messageBody("ok"))))
	send(authRequest(t, a.app1.secrets[1], p("app1", "/v1/keys/k1/sign", messageBody("ok, old secret"))))
	send(authRequest(t, a.app2.secrets[0], p("app1", "/v1/keys/k1/sign", messageBody("wrong secret"))))
	send(authRequest(t, a.app1.secrets[0], p("app1", "/v1/keys/k2/sign", messageBody("forbidden"))))
	send(authRequest(t, a.app1.secrets[0], p("app9", "/v1/keys/k1/sign", messageBody("unknown client"))))
	r := authRequest(t, a.app1.secrets[0], p("app1", "/v1/keys/k1/sign", messageBody("replayed")))
	send(r)
	send(r)
	if st, err := call[*wire.Status](t.Context(), a.c, &wire.StatusRequest{}); err == nil {
		b, _ := json.Marshal(st)
		texts = append(texts, string(b))
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if len(texts) < 5 {
		t.Fatalf("the run did not exercise what it should: %d error texts", len(texts))
	}
	all := strings.ToLower(a.logs.String() + "\n" + strings.Join(texts, "\n"))
	for _, c := range []testClient{a.app1, a.app2} {
		for i, s := range c.secrets {
			for form, v := range map[string]string{
				"hex": hex.EncodeToString(s), "base64": base64.StdEncoding.EncodeToString(s)[:40],
				"base64url": base64.RawURLEncoding.EncodeToString(s)[:40], "half hex": hex.EncodeToString(s[:16]),
			} {
				if strings.Contains(all, strings.ToLower(v)) {
					t.Errorf("client %s's secret %d appears in the logs or an error text (%s)", c.id, i+1, form)
				}
			}
		}
	}
}

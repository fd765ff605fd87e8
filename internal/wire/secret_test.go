package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestProvisionRequestRedactsSecrets(t *testing.T) {
	req := sampleOf(t, TypeProvisionRequest).(*ProvisionRequest)
	secrets := []string{testSecretKey, testSessionToken}

	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		fmt.Fprintf(&out, verb+"\n", req)
		fmt.Fprintf(&out, verb+"\n", *req)
		fmt.Fprintf(&out, verb+"\n", req.Credentials)
		fmt.Fprintf(&out, verb+"\n", req.Credentials.SecretAccessKey)
		fmt.Fprintf(&out, verb+"\n", []any{req.Credentials.SessionToken})
	}
	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		log := slog.New(h)
		log.Info("provision", "req", req, "value", *req, "creds", req.Credentials, "secret", req.Credentials.SecretAccessKey)
	}
	j, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)

	text := out.String()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("a secret appears in printed or logged output:\n%s", text)
		}
	}
	for _, want := range []string{"REDACTED", "eu-west-1", "ASIAEXAMPLEKEYID0001", "keyring.age"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}

	// The wire itself must still carry them.
	body, err := Marshal(1, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if !bytes.Contains(body, []byte(s)) {
			t.Errorf("the encoded frame lacks a secret; redaction leaked into the encoding")
		}
	}
}

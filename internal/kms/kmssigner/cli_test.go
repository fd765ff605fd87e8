package kmssigner_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/kms/kmsemu"
	"github.com/enclave-signer/enclave-signer/internal/kms/kmssigner"
)

// tool finds an outside program. Missing tools fail the test under CI and
// skip it elsewhere.
func tool(t *testing.T, name string, probe ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil && len(probe) > 0 {
		if out, perr := exec.Command(path, probe...).CombinedOutput(); perr != nil {
			err = perr
			t.Logf("%s %v: %s", name, probe, out)
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI: %v", name, err)
		}
		t.Skipf("%s is not available (%v); CI fails instead of skipping", name, err)
	}
	return path
}

// TestSignerInteroperates: what the Signer signs, aws kms verify and
// openssl (against aws kms get-public-key) accept; what aws kms sign
// signs, crypto/ecdsa accepts under the Signer's Public key.
func TestSignerInteroperates(t *testing.T) {
	awsCLI := tool(t, "aws", "--version")
	openssl := tool(t, "openssl", "version")
	url := emulator(t, &kmsemu.Server{})
	c := client(url, "test", "test")
	arn := signingKey(t, c, "alias/operator", nil)
	s, err := kmssigner.New(t.Context(), c, "alias/operator")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	none := filepath.Join(dir, "none")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+none, "AWS_SHARED_CREDENTIALS_FILE="+none, "AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=")
	awsKMS := func(wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command(awsCLI, append([]string{"--endpoint-url", url, "--output", "json", "kms"}, args...)...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if (err == nil) != wantOK {
			t.Fatalf("aws kms %v: err %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
		}
		return stdout.String() + stderr.String()
	}
	field := func(out, name string) []byte {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		b, err := base64.StdEncoding.DecodeString(m[name].(string))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	msg := file("statement", []byte("enclave-signer keyring statement\n"))
	msgBytes, _ := os.ReadFile(msg)
	sig, err := s.Sign(t.Context(), msgBytes)
	if err != nil {
		t.Fatal(err)
	}
	sigPath := file("sig.der", sig)
	if out := awsKMS(true, "verify", "--key-id", arn, "--message", "fileb://"+msg, "--message-type", "RAW", "--signing-algorithm", "ECDSA_SHA_256", "--signature", "fileb://"+sigPath); !strings.Contains(out, `"SignatureValid": true`) {
		t.Fatalf("aws kms verify: %s", out)
	}
	pubDER := file("pub.der", field(awsKMS(true, "get-public-key", "--key-id", arn), "PublicKey"))
	pubPEM := filepath.Join(dir, "pub.pem")
	if out, err := exec.Command(openssl, "pkey", "-pubin", "-inform", "DER", "-in", pubDER, "-out", pubPEM).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey: %v\n%s", err, out)
	}
	if out, err := exec.Command(openssl, "dgst", "-sha256", "-verify", pubPEM, "-signature", sigPath, msg).CombinedOutput(); err != nil || !strings.Contains(string(out), "Verified OK") {
		t.Fatalf("openssl dgst -verify of the Signer's signature: %v\n%s", err, out)
	}
	other := file("other", []byte("another statement\n"))
	if out := awsKMS(false, "verify", "--key-id", arn, "--message", "fileb://"+other, "--signing-algorithm", "ECDSA_SHA_256", "--signature", "fileb://"+sigPath); !strings.Contains(out, "KMSInvalidSignatureException") {
		t.Errorf("aws kms verify of another message: %s", out)
	}

	cliSig := field(awsKMS(true, "sign", "--key-id", "alias/operator", "--message", "fileb://"+msg, "--message-type", "RAW", "--signing-algorithm", "ECDSA_SHA_256"), "Signature")
	d := sha256.Sum256(msgBytes)
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], cliSig) {
		t.Fatal("aws kms sign's signature does not verify under the Signer's Public key")
	}
}

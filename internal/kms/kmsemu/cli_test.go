package kmsemu

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tool finds an outside client. Missing tools fail the test under CI and
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

// clientEnv is the environment of an outside AWS client: the process's
// own, without any AWS setting, plus the emulator's credentials, no config
// files and no instance metadata.
func clientEnv(t *testing.T) []string {
	none := filepath.Join(t.TempDir(), "none")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+none, "AWS_SHARED_CREDENTIALS_FILE="+none,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=",
	)
}

func TestAWSCLI(t *testing.T) {
	t.Parallel()
	aws := tool(t, "aws", "--version")
	e := start(t, &Server{})
	dir := t.TempDir()
	env := clientEnv(t)
	run := func(wantOK bool, args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(aws, append([]string{"--endpoint-url", e.url, "--region", "us-east-1", "--output", "json", "kms"}, args...)...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if (err == nil) != wantOK {
			t.Fatalf("aws kms %v: err %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	out, _ := run(true, "create-key", "--description", "from the aws cli")
	var ck struct {
		KeyMetadata struct{ KeyId, Arn, Description string }
	}
	if err := json.Unmarshal([]byte(out), &ck); err != nil || !isUUID(ck.KeyMetadata.KeyId) || ck.KeyMetadata.Description != "from the aws cli" {
		t.Fatalf("create-key output %s: %v", out, err)
	}
	id := ck.KeyMetadata.KeyId

	msg := []byte("plaintext from the aws cli")
	out, _ = run(true, "encrypt", "--key-id", id, "--plaintext", "fileb://"+file("pt", msg), "--encryption-context", "purpose=cli")
	var enc struct{ CiphertextBlob, KeyId string }
	if err := json.Unmarshal([]byte(out), &enc); err != nil || enc.KeyId != ck.KeyMetadata.Arn {
		t.Fatalf("encrypt output %s: %v", out, err)
	}
	ct, err := base64.StdEncoding.DecodeString(enc.CiphertextBlob)
	if err != nil {
		t.Fatal(err)
	}
	ctFile := "fileb://" + file("ct", ct)
	out, _ = run(true, "decrypt", "--ciphertext-blob", ctFile, "--encryption-context", "purpose=cli")
	var dec struct{ Plaintext, KeyId string }
	if err := json.Unmarshal([]byte(out), &dec); err != nil {
		t.Fatalf("decrypt output %s: %v", out, err)
	}
	if pt, _ := base64.StdEncoding.DecodeString(dec.Plaintext); !bytes.Equal(pt, msg) {
		t.Fatalf("decrypt: %q, want %q", pt, msg)
	}
	_, stderr := run(false, "decrypt", "--ciphertext-blob", ctFile, "--encryption-context", "purpose=other")
	if !strings.Contains(stderr, "InvalidCiphertextException") {
		t.Errorf("decrypt with the wrong context: stderr %q", stderr)
	}
	// Naming the key (as a pinned signerd does): its own ARN decrypts,
	// another key's is refused with IncorrectKeyException, AWS's code and
	// message for a KeyId that is not the ciphertext's key.
	run(true, "decrypt", "--ciphertext-blob", ctFile, "--encryption-context", "purpose=cli", "--key-id", ck.KeyMetadata.Arn)
	out, _ = run(true, "create-key", "--description", "another key")
	var ck2 struct{ KeyMetadata struct{ Arn string } }
	if err := json.Unmarshal([]byte(out), &ck2); err != nil {
		t.Fatal(err)
	}
	_, stderr = run(false, "decrypt", "--ciphertext-blob", ctFile, "--encryption-context", "purpose=cli", "--key-id", ck2.KeyMetadata.Arn)
	if want := "An error occurred (IncorrectKeyException) when calling the Decrypt operation: The key ID in the request does not identify a KMS key that can perform this operation."; !strings.Contains(stderr, want) {
		t.Errorf("decrypt naming another key: stderr %q, want %q", stderr, want)
	}

	pol := strings.ReplaceAll(DefaultKeyPolicy("000000000000"), `"Sid":"Enable IAM User Permissions"`, `"Sid":"FromCLI"`)
	run(true, "put-key-policy", "--key-id", id, "--policy-name", "default", "--policy", "file://"+file("policy.json", []byte(pol)))
	out, _ = run(true, "get-key-policy", "--key-id", id, "--policy-name", "default")
	var gp struct{ Policy string }
	if err := json.Unmarshal([]byte(out), &gp); err != nil || gp.Policy != pol {
		t.Fatalf("get-key-policy: %s (%v), want policy %s", out, err, pol)
	}
	_, stderr = run(false, "put-key-policy", "--key-id", id, "--policy-name", "default", "--policy", "{")
	if !strings.Contains(stderr, "MalformedPolicyDocumentException") {
		t.Errorf("put-key-policy of a malformed policy: stderr %q", stderr)
	}
}

const boto3Script = `
import json, os, sys
import boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1")
key = kms.create_key(Description="boto3")["KeyMetadata"]
ct = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"from boto3", EncryptionContext={"via": "boto3"})["CiphertextBlob"]
pt = kms.decrypt(CiphertextBlob=ct, EncryptionContext={"via": "boto3"})
err = ""
try:
    kms.decrypt(CiphertextBlob=ct)
except kms.exceptions.InvalidCiphertextException as e:
    err = e.response["Error"]["Code"]
print(json.dumps({"key_id": key["KeyId"], "plaintext": pt["Plaintext"].decode(), "decrypt_key": pt["KeyId"], "wrong_context_error": err}))
`

func TestBoto3(t *testing.T) {
	t.Parallel()
	py := tool(t, "python3", "-c", "import boto3")
	e := start(t, &Server{})
	cmd := exec.Command(py, "-c", boto3Script, e.url)
	cmd.Env = clientEnv(t)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("boto3 script: %v\n%s", err, stderr)
	}
	var got struct {
		KeyID             string `json:"key_id"`
		Plaintext         string `json:"plaintext"`
		DecryptKey        string `json:"decrypt_key"`
		WrongContextError string `json:"wrong_context_error"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("boto3 output %q: %v", out, err)
	}
	if got.Plaintext != "from boto3" || got.DecryptKey != "arn:aws:kms:us-east-1:000000000000:key/"+got.KeyID || got.WrongContextError != "InvalidCiphertextException" {
		t.Fatalf("boto3 round trip: %+v", got)
	}
}

// sessionEnv is clientEnv with session credentials in place of test/test.
func sessionEnv(t *testing.T, akid, secret, token string) []string {
	var env []string
	for _, kv := range clientEnv(t) {
		if !strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID=") && !strings.HasPrefix(kv, "AWS_SECRET_ACCESS_KEY=") {
			env = append(env, kv)
		}
	}
	return append(env, "AWS_ACCESS_KEY_ID="+akid, "AWS_SECRET_ACCESS_KEY="+secret, "AWS_SESSION_TOKEN="+token)
}

// TestOutsideClientsSignRequiredHeaders: the AWS CLI and boto3, with
// session credentials (as the instance role has), sign content-type,
// x-amz-target and x-amz-security-token, so the emulator's refusal of
// unsigned ones never refuses them.
func TestOutsideClientsSignRequiredHeaders(t *testing.T) {
	t.Parallel()
	awsCLI := tool(t, "aws", "--version")
	py := tool(t, "python3", "-c", "import boto3")
	const token = "FwoGZXIvYXdzEXAMPLE/session+token=="
	e := start(t, &Server{Credentials: []Credential{{AccessKeyID: "ASIASESSION", SecretAccessKey: "session-secret", SessionToken: token, Principal: otherPrincipal}}})
	env := sessionEnv(t, "ASIASESSION", "session-secret", token)

	cmd := exec.Command(awsCLI, "--endpoint-url", e.url, "--output", "json", "kms", "generate-random", "--number-of-bytes", "8")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Plaintext") {
		t.Fatalf("aws kms generate-random with a session token: %v\n%s", err, out)
	}
	cmd = exec.Command(py, "-c", `
import sys, boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1")
key = kms.create_key()["KeyMetadata"]["KeyId"]
assert kms.list_keys()["Keys"][0]["KeyId"] == key
`, e.url)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("boto3 with a session token: %v\n%s", err, out)
	}
	if strings.Contains(e.logs.String(), "IncompleteSignatureException") {
		t.Fatalf("an outside client's request was refused as unsigned:\n%s", e.logs.String())
	}
}

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/kms/kmsemu"
	"github.com/enclave-signer/enclave-signer/internal/policy"
)

var recipientRE = regexp.MustCompile(`^age1[02-9ac-hj-np-z]{58}\n$`)

// decryptSealed decrypts a sealed identity as test/test (allowed by the
// default key policy) and checks it is an age-keygen key file for
// recipient. It returns the key file's secret line, for leak checks.
func decryptSealed(t *testing.T, k *testKMS, blob []byte, encCtx map[string]string, recipient string) string {
	t.Helper()
	dec, err := k.client("test", "test").Decrypt(t.Context(), &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: encCtx})
	if err != nil {
		t.Fatalf("Decrypt of the sealed identity: %v", err)
	}
	defer clear(dec.Plaintext)
	lines := strings.Split(strings.TrimSuffix(string(dec.Plaintext), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "# created: ") || lines[1] != "# public key: "+recipient || !strings.HasPrefix(lines[2], "AGE-SECRET-KEY-1") {
		t.Fatalf("sealed plaintext is not an age-keygen key file for %s (%d lines)", recipient, len(lines))
	}
	created, err := time.Parse(time.RFC3339, strings.TrimPrefix(lines[0], "# created: "))
	if err != nil || time.Since(created) > time.Hour || time.Until(created) > time.Minute {
		t.Errorf("created line %q: %v, want RFC 3339 now", lines[0], err)
	}
	id, err := keyring.ParseIdentity(dec.Plaintext)
	if err != nil {
		t.Fatalf("keyring.ParseIdentity of the sealed identity: %v", err)
	}
	if r := id.Recipients(); len(r) != 1 || r[0] != recipient {
		t.Fatalf("sealed identity's recipients %q, want the printed %q", r, recipient)
	}
	return lines[2]
}

func TestSeal(t *testing.T) {
	setAWSTestEnv(t)
	k := newTestKMS(t)
	keyID := k.createKey(t, "")
	dir := t.TempDir()
	out := filepath.Join(dir, "identity.enc")

	code, stdout, stderr := signer(t, "", "seal", "--key-id", keyID, "--endpoint-url", k.url,
		"--encryption-context", "purpose=enclave-signer", "--encryption-context", "env=test=1", "--out", out)
	if code != 0 {
		t.Fatalf("signer seal: exit %d\n%s", code, stderr)
	}
	if !recipientRE.MatchString(stdout) {
		t.Fatalf("stdout %q, want one age1… recipient line", stdout)
	}
	recipient := strings.TrimSpace(stdout)
	for _, w := range []string{"sealed a new age identity under arn:aws:kms:us-east-1:000000000000:key/" + keyID, "encryption context env=test=1,purpose=enclave-signer", "next: signer keyring new --recipient " + recipient} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("--out file: %v, %v; want mode 0644", fi, err)
	}
	blob, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only identity.enc (no temporary file left)", len(entries))
	}

	encCtx := map[string]string{"purpose": "enclave-signer", "env": "test=1"}
	secret := decryptSealed(t, k, blob, encCtx, recipient)
	if strings.Contains(stdout+stderr+k.logs.String(), secret) || bytes.Contains(blob, []byte(secret)) {
		t.Fatal("the age secret key appears in stdout, stderr, the KMS log or the ciphertext file")
	}

	// The encryption context is bound: without it, or with another, KMS refuses.
	for _, c := range []map[string]string{nil, {"purpose": "enclave-signer"}, {"purpose": "other", "env": "test=1"}} {
		_, err := k.client("test", "test").Decrypt(t.Context(), &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: c})
		if !strings.Contains(errString(err), "InvalidCiphertextException") {
			t.Errorf("Decrypt with encryption context %v: %v, want InvalidCiphertextException", c, err)
		}
	}

	// An existing file is not replaced without --force.
	code, stdout, stderr = signer(t, "", "seal", "--key-id", keyID, "--endpoint-url", k.url, "--out", out)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "identity.enc already exists: not replacing it (pass --force") {
		t.Fatalf("seal over an existing file: exit %d, stdout %q, stderr:\n%s\nwant exit 1 refusing", code, stdout, stderr)
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(again, blob) {
		t.Fatal("the existing identity.enc changed")
	}
	code, stdout, stderr = signer(t, "", "seal", "--key-id", keyID, "--endpoint-url", k.url, "--out", out, "--force")
	if code != 0 || !recipientRE.MatchString(stdout) || strings.TrimSpace(stdout) == recipient {
		t.Fatalf("seal --force: exit %d, stdout %q (old recipient %s)\n%s", code, stdout, recipient, stderr)
	}
	blob2, _ := os.ReadFile(out)
	decryptSealed(t, k, blob2, nil, strings.TrimSpace(stdout))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestSealDefaultsAndEnv seals through AWS_ENDPOINT_URL_KMS (no flag) to the
// default --out in the working directory, and by alias.
func TestSealDefaultsAndEnv(t *testing.T) {
	setAWSTestEnv(t)
	k := newTestKMS(t)
	keyID := k.createKey(t, "")
	if _, err := k.client("test", "test").CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/signer"), TargetKeyId: aws.String(keyID)}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ENDPOINT_URL_KMS", k.url)
	t.Chdir(t.TempDir())
	code, stdout, stderr := signer(t, "", "seal", "--key-id", "alias/signer")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	blob, err := os.ReadFile("identity.enc")
	if err != nil {
		t.Fatalf("default --out: %v", err)
	}
	decryptSealed(t, k, blob, nil, strings.TrimSpace(stdout))
}

func TestSealUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"seal"}, "--key-id is required"},
		{[]string{"seal", "--key-id", "k", "extra"}, `unexpected argument "extra"`},
		{[]string{"seal", "--key-id", "k", "--encryption-context", "novalue"}, `"novalue": want KEY=VALUE`},
		{[]string{"seal", "--key-id", "k", "--encryption-context", "=v"}, `"=v": want KEY=VALUE`},
		{[]string{"seal", "--key-id", "k", "--encryption-context", "a=1", "--encryption-context", "a=2"}, `key "a" given twice`},
		{[]string{"seal", "--key-id", "k", "--endpoint-url", "localhost:4566"}, "--endpoint-url: want http://HOST[:PORT]"},
		{[]string{"seal", "--key-id", "k", "--out", ""}, "--out must name a file"},
		{[]string{"seal", "--nope"}, "flag provided but not defined"},
	} {
		code, stdout, stderr := signer(t, "", tc.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("signer %q: exit %d, stdout %q, stderr:\n%s\nwant exit 2 with %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

// TestSealAccessDenied: a principal the key policy doesn't let encrypt
// gets a message naming it and the action, and no file.
func TestSealAccessDenied(t *testing.T) {
	setAWSTestEnv(t)
	k := newTestKMS(t, kmsemu.DefaultCredential,
		kmsemu.Credential{AccessKeyID: "AKIAOPS", SecretAccessKey: "opssecret", Principal: "arn:aws:sts::000000000000:assumed-role/ops/alice"})
	pol := renderTestPolicy(t, "arn:aws:iam::000000000000:role/enclave", policy.ZeroPCR[:95]+"1")
	keyID := k.createKey(t, pol)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAOPS")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "opssecret")
	out := filepath.Join(t.TempDir(), "identity.enc")
	code, stdout, stderr := signer(t, "", "seal", "--key-id", keyID, "--endpoint-url", k.url, "--out", out)
	if code != 1 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, want 1 and nothing", code, stdout)
	}
	for _, w := range []string{"access denied: arn:aws:sts::000000000000:assumed-role/ops/alice may not call kms:Encrypt on arn:aws:kms:us-east-1:000000000000:key/" + keyID,
		"hint: sealing needs kms:Encrypt: the key policy's AllowEncrypt statement (signer policy render --encrypt-role) must name arn:aws:iam::000000000000:role/ops"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("--out exists after a failed seal: %v", err)
	}
}

// renderTestPolicy renders the guide's policy: enclaveRole may decrypt only
// from an enclave presenting pcr0 (or, as the debug statement, all zeros),
// test/test's role dev may encrypt and administer the key.
func renderTestPolicy(t *testing.T, enclaveRole, pcr0 string) string {
	t.Helper()
	p, _, err := policy.Render(policy.RenderOptions{
		ImageSha384: []string{pcr0},
		EnclaveRole: enclaveRole,
		EncryptRole: kmsemu.DefaultCredential.Principal,
		AdminRole:   kmsemu.DefaultCredential.Principal,
		Debug:       true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(p.Marshal())
}

// TestSealAWSCLIDecryptsNothing is the point: the AWS CLI, as the
// very role the key policy lets decrypt, gets AccessDeniedException for the
// sealed identity, because it has no attestation document to send.
func TestSealAWSCLIDecryptsNothing(t *testing.T) {
	awsCLI, err := exec.LookPath("aws")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the AWS CLI (v1, pip install awscli) is not on PATH; CI must provide it: %v", err)
		}
		t.Skipf("the AWS CLI is not on PATH (pip install awscli): %v", err)
	}
	setAWSTestEnv(t)
	enclaveRole := "arn:aws:iam::000000000000:role/enclave"
	k := newTestKMS(t, kmsemu.DefaultCredential,
		kmsemu.Credential{AccessKeyID: "AKIAENCLAVE", SecretAccessKey: "enclavesecret", Principal: "arn:aws:sts::000000000000:assumed-role/enclave/i-0123456789abcdef0"})
	keyID := k.createKey(t, renderTestPolicy(t, enclaveRole, strings.Repeat("ab", 48)))
	dir := t.TempDir()
	out := filepath.Join(dir, "identity.enc")
	if code, _, stderr := signer(t, "", "seal", "--key-id", keyID, "--endpoint-url", k.url, "--out", out); code != 0 {
		t.Fatalf("seal: exit %d\n%s", code, stderr)
	}

	awsRun := func(akid, secret string, args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), awsCLI, append([]string{"--endpoint-url", k.url, "--region", "us-east-1", "--output", "json"}, args...)...)
		// The AWS CLI takes an empty AWS_PROFILE for a profile named "":
		// pass on only the AWS variables setAWSTestEnv gave a value.
		var environ []string
		for _, kv := range os.Environ() {
			if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") && (v == "" || k == "AWS_ACCESS_KEY_ID" || k == "AWS_SECRET_ACCESS_KEY") {
				continue
			}
			environ = append(environ, kv)
		}
		cmd.Env = append(environ, "AWS_ACCESS_KEY_ID="+akid, "AWS_SECRET_ACCESS_KEY="+secret)
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		return b.String(), err
	}
	// The CLI works against the emulator: the admin role reads the policy.
	if o, err := awsRun("test", "test", "kms", "get-key-policy", "--key-id", keyID, "--policy-name", "default"); err != nil || !strings.Contains(o, policy.SidEnclaveDecrypt) {
		t.Fatalf("aws kms get-key-policy: %v\n%s", err, o)
	}
	// The enclave's own role, without an attestation document: refused.
	o, err := awsRun("AKIAENCLAVE", "enclavesecret", "kms", "decrypt", "--ciphertext-blob", "fileb://"+out)
	if err == nil || !strings.Contains(o, "AccessDeniedException") || !strings.Contains(o, "kms:Decrypt") {
		t.Fatalf("aws kms decrypt as the enclave role without attestation: %v\n%s\nwant AccessDeniedException", err, o)
	}
	t.Logf("aws kms decrypt as %s: %s", enclaveRole, strings.TrimSpace(o))
	if strings.Contains(o, "AGE-SECRET-KEY") || strings.Contains(o, "Plaintext") {
		t.Fatalf("aws kms decrypt printed plaintext:\n%s", o)
	}
}

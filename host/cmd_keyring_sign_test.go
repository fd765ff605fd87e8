package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
)

// needCLI returns a tool's path; it skips without it, except in CI.
func needCLI(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not on PATH; CI must install it (apt-get install -y %s)", name, name)
		}
		t.Skipf("%s not on PATH (apt-get install -y %s)", name, name)
	}
	return p
}

func runCLI(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// genKey writes a private key as openssl genpkey does (ed25519 or P-256)
// and returns its path and pin value, computed from openssl's DER public
// key, not by the code under test.
func genKey(t *testing.T, dir, name, alg string) (path, pin string) {
	t.Helper()
	needCLI(t, "openssl")
	path = filepath.Join(dir, name+".pem")
	args := []string{"genpkey", "-out", path, "-algorithm", "ed25519"}
	label := "ed25519"
	if alg == "p256" {
		args = []string{"genpkey", "-out", path, "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}
		label = "ecdsa-p256"
	}
	runCLI(t, "openssl", args...)
	der := runCLI(t, "openssl", "pkey", "-in", path, "-pubout", "-outform", "DER")
	return path, label + ":" + base64.StdEncoding.EncodeToString(der)
}

type keyringVerifyOutput struct {
	Valid          bool     `json:"valid"`
	KeyringID      string   `json:"keyring_id"`
	KeyringVersion uint64   `json:"keyring_version"`
	NotBefore      string   `json:"not_before"`
	NotAfter       string   `json:"not_after"`
	Recipients     []string `json:"recipients"`
	SHA256         string   `json:"sha256"`
	Signatures     []string `json:"signatures"`
	Verified       []string `json:"verified_signers"`
	Error          string   `json:"error"`
}

func verifyKeyring(t *testing.T, file string, args ...string) (int, keyringVerifyOutput, string) {
	t.Helper()
	code, stdout, stderr := signer(t, "", append(append([]string{"keyring", "verify"}, args...), file)...)
	var out keyringVerifyOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil && code != 2 {
		t.Fatalf("keyring verify: exit %d, stdout not JSON: %v\n%s\n%s", code, err, stdout, stderr)
	}
	return code, out, stderr
}

// ageKeyring makes a keyring by hand with the age CLI, as an operator
// might: a format 2 plaintext, encrypted to the recipients.
func ageKeyring(t *testing.T, dir, name string, plaintext []byte, recipients ...string) string {
	t.Helper()
	ageCLI := needCLI(t, "age")
	out := filepath.Join(dir, name)
	args := []string{"-o", out}
	for _, r := range recipients {
		args = append(args, "-r", r)
	}
	cmd := exec.CommandContext(t.Context(), ageCLI, args...)
	cmd.Stdin = bytes.NewReader(plaintext)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("age: %v\n%s", err, b)
	}
	return out
}

// v2Plaintext is a format 2 keyring of one new ed25519 key.
func v2Plaintext(t *testing.T, id string, version uint64) []byte {
	t.Helper()
	p, err := keyring.Generate(keyring.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(map[string]any{"version": 2, "keyring_id": id, "keyring_version": version,
		"keys": []map[string]string{{"id": id + "-key", "algorithm": "ed25519", "private_key_pem": string(p)}}})
	return doc
}

func TestKeyringSignerKey(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []string{"ed25519", "p256"} {
		path, want := genKey(t, dir, alg, alg)
		code, stdout, stderr := signer(t, "", "keyring", "signer-key", "file:"+path)
		if code != 0 || stdout != want+"\n" {
			t.Errorf("signer-key file:%s: exit %d, %q (stderr %s), want %q", alg, code, stdout, stderr, want)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"nope"}, 2, "want kms:KEY"},
		{[]string{"file:"}, 2, "want kms:KEY"},
		{[]string{}, 2, "want one SIGNER"},
		{[]string{"file:" + filepath.Join(dir, "missing.pem")}, 1, "no such file"},
	} {
		code, _, stderr := signer(t, "", append([]string{"keyring", "signer-key"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("signer-key %q: exit %d, %s; want %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}

// TestKeyringSignVerify: a keyring made by hand with the age CLI, signed
// with signer keyring sign by two operators in turn (M-of-N), verified as
// signerd would verify it; every mistake refused.
func TestKeyringSignVerify(t *testing.T) {
	dir := t.TempDir()
	aPath, aPin := genKey(t, dir, "a", "ed25519")
	bPath, bPin := genKey(t, dir, "b", "p256")
	_, cPin := genKey(t, dir, "c", "p256")
	x, _ := age.GenerateX25519Identity()
	backup, _ := age.GenerateX25519Identity()
	rcpt, bk := x.Recipient().String(), backup.Recipient().String()
	file := ageKeyring(t, dir, "payments.age", v2Plaintext(t, "payments", 3), rcpt, bk)
	// No output of sign ever holds a line of a signer's private key.
	var secretLines []string
	for _, path := range []string{aPath, bPath} {
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			if len(l) > 16 && !strings.HasPrefix(l, "-----") {
				secretLines = append(secretLines, l[:16])
			}
		}
	}
	sign := func(args ...string) (int, string, string) {
		t.Helper()
		code, stdout, stderr := signer(t, "", append(append([]string{"keyring", "sign"}, args...), file)...)
		for _, l := range secretLines {
			if strings.Contains(stdout+stderr, l) {
				t.Fatalf("keyring sign %q printed a line of a private key", args)
			}
		}
		return code, stdout, stderr
	}

	// Mistakes first; nothing is written.
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no signer", []string{"--id", "payments", "--version", "3", "--recipient", rcpt}, "want --sign-with"},
		{"no id", []string{"--sign-with", "file:" + aPath, "--version", "3", "--recipient", rcpt}, "--id ID and --version N are required"},
		{"bad version", []string{"--sign-with", "file:" + aPath, "--id", "payments", "--version", "-1", "--recipient", rcpt}, "want an unsigned integer"},
		{"no recipient", []string{"--sign-with", "file:" + aPath, "--id", "payments", "--version", "3"}, "want --recipient"},
		{"one recipient of two", []string{"--sign-with", "file:" + aPath, "--id", "payments", "--version", "3", "--recipient", rcpt}, "is encrypted to 2 recipients, and the statement would name 1"},
		{"both window ends", []string{"--sign-with", "file:" + aPath, "--id", "payments", "--version", "3", "--recipient", rcpt, "--recipient", bk, "--not-after", "2030-01-01T00:00:00Z", "--valid-for", "3d"}, "not both"},
		{"bad signer key", []string{"--sign-with", "file:" + file, "--id", "payments", "--version", "3", "--recipient", rcpt, "--recipient", bk}, "no PEM block"},
	} {
		code, _, stderr := sign(tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%s: exit %d, %s; want %q", tc.name, code, stderr, tc.msg)
		}
		if _, err := os.Stat(file + ".sig"); err == nil {
			t.Fatalf("%s: %s.sig written", tc.name, file)
		}
	}
	code, unsigned, _ := verifyKeyring(t, file, "--keyring-signer", aPin)
	if code != 1 || unsigned.Valid || !strings.Contains(unsigned.Error, "no signature file "+file+".sig") {
		t.Errorf("verify of an unsigned keyring: exit %d, %+v", code, unsigned)
	}

	// Operator A signs.
	code, stdout, stderr := sign("--sign-with", "file:"+aPath, "--id", "payments", "--version", "3", "--recipient", bk, "--recipient", rcpt, "--valid-for", "30d")
	if code != 0 {
		t.Fatalf("keyring sign: exit %d\n%s", code, stderr)
	}
	var signed keyringVerifyOutput
	if err := json.Unmarshal([]byte(stdout), &signed); err != nil || signed.KeyringID != "payments" || signed.KeyringVersion != 3 || len(signed.Signatures) != 1 || signed.Signatures[0] != aPin {
		t.Fatalf("keyring sign output: %v\n%s", err, stdout)
	}
	nb, _ := time.Parse(time.RFC3339, signed.NotBefore)
	na, _ := time.Parse(time.RFC3339, signed.NotAfter)
	if d := time.Since(nb); d < 9*time.Minute || d > 11*time.Minute || na.Sub(nb) != 30*24*time.Hour {
		t.Errorf("window %s to %s, want from 10 minutes ago for 30 days", signed.NotBefore, signed.NotAfter)
	}

	code, v, _ := verifyKeyring(t, file, "--keyring-signer", aPin)
	if code != 0 || !v.Valid || len(v.Verified) != 1 || v.Verified[0] != aPin {
		t.Errorf("verify with A pinned: exit %d, %+v", code, v)
	}
	code, v, _ = verifyKeyring(t, file, "--keyring-signer", cPin)
	if code != 1 || v.Valid || !strings.Contains(v.Error, "signed by "+aPin+", not a pinned keyring signer") {
		t.Errorf("verify with only C pinned: exit %d, %+v", code, v)
	}
	code, v, _ = verifyKeyring(t, file, "--keyring-signer", aPin, "--keyring-signer", bPin, "--keyring-threshold", "2")
	if code != 1 || !strings.Contains(v.Error, "want 2 of the pinned keyring signers") {
		t.Errorf("verify 2-of-2 with one signature: exit %d, %+v", code, v)
	}
	code, v, _ = verifyKeyring(t, file, "--keyring-signer", aPin, "--at", na.Add(time.Second).Format(time.RFC3339))
	if code != 1 || !strings.Contains(v.Error, "expired") {
		t.Errorf("verify after the window: exit %d, %+v", code, v)
	}
	other, _ := age.GenerateX25519Identity()
	code, v, _ = verifyKeyring(t, file, "--keyring-signer", aPin, "--recipient", other.Recipient().String())
	if code != 1 || !strings.Contains(v.Error, "signed for another identity") {
		t.Errorf("verify for another recipient: exit %d, %+v", code, v)
	}

	// Operator B co-signs the same statement: the window is taken from
	// the file; a different id, version or window is refused.
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--id", "payments", "--version", "4"}, "states keyring payments version 3, not payments version 4"},
		{[]string{"--id", "payments", "--version", "3", "--valid-for", "31d"}, "states the window"},
		{[]string{"--id", "payments", "--version", "3", "--recipient", rcpt}, "names the recipients"},
	} {
		code, _, stderr := sign(append([]string{"--sign-with", "file:" + bPath}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("co-sign %q: exit %d, %s; want %q", tc.args, code, stderr, tc.msg)
		}
	}
	if code, _, stderr := sign("--sign-with", "file:"+aPath, "--id", "payments", "--version", "3"); code == 0 || !strings.Contains(stderr, "already carries a signature of "+aPin) {
		t.Errorf("A signing twice: exit %d, %s", code, stderr)
	}
	if code, _, stderr := sign("--sign-with", "file:"+bPath, "--id", "payments", "--version", "3"); code != 0 {
		t.Fatalf("co-sign: exit %d, %s", code, stderr)
	}
	code, v, _ = verifyKeyring(t, file, "--keyring-signer", aPin, "--keyring-signer", bPin, "--keyring-threshold", "2", "--recipient", rcpt)
	if code != 0 || len(v.Verified) != 2 || len(v.Signatures) != 2 || v.NotAfter != signed.NotAfter {
		t.Errorf("verify 2-of-2: exit %d, %+v", code, v)
	}

	// The keyring changes: the signatures no longer hold.
	ct, _ := os.ReadFile(file)
	ct[len(ct)-1] ^= 1
	os.WriteFile(file, ct, 0o644)
	code, v, _ = verifyKeyring(t, file, "--keyring-signer", aPin)
	if code != 1 || !strings.Contains(v.Error, "about another file") {
		t.Errorf("verify of a changed keyring: exit %d, %+v", code, v)
	}
	if code, _, stderr := sign("--sign-with", "file:"+aPath, "--id", "payments", "--version", "3"); code == 0 || !strings.Contains(stderr, "holds a statement about another file") {
		t.Errorf("signing a changed keyring over the old statement: exit %d, %s", code, stderr)
	}
}

// TestKeyringStatementOnly: the statement written alone, signed outside
// signer (openssl here, aws kms sign in the end-to-end test), the line
// appended with echo, verified.
func TestKeyringStatementOnly(t *testing.T) {
	dir := t.TempDir()
	keyPath, pin := genKey(t, dir, "op", "p256")
	x, _ := age.GenerateX25519Identity()
	file := ageKeyring(t, dir, "k.age", v2Plaintext(t, "k", 1), x.Recipient().String())
	code, _, stderr := signer(t, "", "keyring", "sign", "--statement-only", "--id", "k", "--version", "1", "--recipient", x.Recipient().String(), file)
	if code != 0 || !strings.Contains(stderr, "append a line") {
		t.Fatalf("--statement-only: exit %d, %s", code, stderr)
	}
	code, v, _ := verifyKeyring(t, file, "--keyring-signer", pin)
	if code != 1 || !strings.Contains(v.Error, "carries a statement but no signature") {
		t.Errorf("verify of a statement alone: %+v", v)
	}
	sigFile, _ := os.ReadFile(file + ".sig")
	var stmtB64 string
	for _, line := range strings.Split(string(sigFile), "\n") {
		if s, ok := strings.CutPrefix(line, "statement "); ok {
			stmtB64 = s
		}
	}
	stmt, err := base64.StdEncoding.DecodeString(stmtB64)
	if err != nil || !bytes.HasPrefix(stmt, []byte("enclave-signer keyring statement v1\n")) {
		t.Fatalf("statement line: %v", err)
	}
	stmtPath := filepath.Join(dir, "statement")
	os.WriteFile(stmtPath, stmt, 0o644)
	sig := runCLI(t, "openssl", "dgst", "-sha256", "-sign", keyPath, stmtPath)
	f, _ := os.OpenFile(file+".sig", os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("signature " + pin + " " + base64.StdEncoding.EncodeToString(sig) + "\n")
	f.Close()
	if code, v, _ := verifyKeyring(t, file, "--keyring-signer", pin); code != 0 || !v.Valid {
		t.Errorf("verify after appending openssl's signature: %+v", v)
	}
}

// TestKeyringNewSigned: keyring new --sign-with writes a format 2 keyring
// and its signature file, which verifies; a stale signature file is never
// left next to a new keyring.
func TestKeyringNewSigned(t *testing.T) {
	dir := t.TempDir()
	keyPath, pin := genKey(t, dir, "op", "ed25519")
	_, x, id := memIdentity(t)
	out := filepath.Join(dir, "k.age")
	code, _, stderr := signer(t, "", "keyring", "new", "--recipient", x.Recipient().String(), "--key", "a:ed25519", "--out", out,
		"--sign-with", "file:"+keyPath, "--id", "ring", "--version", "9", "--not-before", "2026-01-01T00:00:00Z", "--not-after", "2036-01-01T00:00:00Z")
	if code != 0 || !strings.Contains(stderr, "signed it as keyring ring version 9, valid 2026-01-01T00:00:00Z to 2036-01-01T00:00:00Z") {
		t.Fatalf("keyring new --sign-with: exit %d\n%s", code, stderr)
	}
	code, v, _ := verifyKeyring(t, out, "--keyring-signer", pin, "--recipient", x.Recipient().String())
	if code != 0 || v.KeyringID != "ring" || v.KeyringVersion != 9 || len(v.Recipients) != 1 {
		t.Errorf("verify: exit %d, %+v", code, v)
	}
	ct, _ := os.ReadFile(out)
	kr, err := keyring.DecryptKeyring(id, "k.age", ct)
	if err != nil || kr.FormatVersion() != keyring.Format2 || kr.KeyringID() != "ring" || kr.KeyringVersion() != 9 {
		t.Fatalf("the keyring's plaintext: %v", err)
	}
	kr.Destroy()

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--sign-with", "file:" + keyPath}, "--sign-with needs --id ID and --version N"},
		{[]string{"--id", "ring"}, "give --id and --version together"},
		{[]string{"--valid-for", "3d"}, "they need --sign-with"},
		{[]string{"--force"}, "k.age.sig would not match the new keyring"},
		{[]string{"--force", "--id", "ring", "--version", "10", "--sign-with", "file:" + filepath.Join(dir, "nope.pem")}, "nope.pem"},
	} {
		before, _ := os.ReadFile(out)
		code, _, stderr := signer(t, "", append([]string{"keyring", "new", "--recipient", x.Recipient().String(), "--key", "a:ed25519", "--out", out}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("keyring new %q: exit %d, %s; want %q", tc.args, code, stderr, tc.msg)
		}
		if after, _ := os.ReadFile(out); !bytes.Equal(before, after) {
			t.Errorf("keyring new %q replaced the keyring", tc.args)
		}
	}
}

// TestKeyringKMSSigner: kms:KEY signers against the KMS emulator: the pin
// is the key GetPublicKey answers; keyring sign and keyring new sign with
// it; a symmetric key, or a key the caller may not use, is refused with
// KMS's reason.
func TestKeyringKMSSigner(t *testing.T) {
	setAWSTestEnv(t)
	k := newTestKMS(t)
	c := k.client("test", "test")
	out, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{KeySpec: kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(out.KeyMetadata.Arn)
	if _, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/keyring-signer"), TargetKeyId: out.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	pub, err := c.GetPublicKey(t.Context(), &kms.GetPublicKeyInput{KeyId: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	wantPin := "ecdsa-p256:" + base64.StdEncoding.EncodeToString(pub.PublicKey)
	for _, key := range []string{arn, "alias/keyring-signer"} {
		code, stdout, stderr := signer(t, "", "keyring", "signer-key", "--endpoint-url", k.url, "kms:"+key)
		if code != 0 || stdout != wantPin+"\n" {
			t.Errorf("signer-key kms:%s: exit %d, %q %s; want %s", key, code, stdout, stderr, wantPin)
		}
	}

	dir := t.TempDir()
	_, x, id := memIdentity(t)
	file := filepath.Join(dir, "k.age")
	code, _, stderr := signer(t, "", "keyring", "new", "--endpoint-url", k.url, "--recipient", x.Recipient().String(), "--key", "a:ecdsa-p256",
		"--out", file, "--id", "k", "--version", "1", "--sign-with", "kms:alias/keyring-signer")
	if code != 0 {
		t.Fatalf("keyring new --sign-with kms: exit %d\n%s", code, stderr)
	}
	if code, v, _ := verifyKeyring(t, file, "--keyring-signer", wantPin, "--recipient", x.Recipient().String()); code != 0 || v.Verified[0] != wantPin {
		t.Errorf("verify: exit %d, %+v", code, v)
	}
	ct, _ := os.ReadFile(file)
	if kr, err := keyring.DecryptKeyring(id, "k.age", ct); err != nil || kr.KeyringID() != "k" {
		t.Errorf("the keyring: %v", err)
	}

	// A symmetric key cannot sign; an unknown key is not found; nothing
	// is written.
	sym := k.createKey(t, "")
	other := filepath.Join(dir, "other.age")
	for _, tc := range []struct{ key, msg string }{
		{sym, "not an asymmetric signing key"},
		{"alias/nope", "NotFoundException"},
	} {
		code, _, stderr := signer(t, "", "keyring", "new", "--endpoint-url", k.url, "--recipient", x.Recipient().String(), "--key", "a:ed25519",
			"--out", other, "--id", "k", "--version", "1", "--sign-with", "kms:"+tc.key)
		if code != 1 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("--sign-with kms:%s: exit %d, %s; want %q", tc.key, code, stderr, tc.msg)
		}
		if _, err := os.Stat(other); err == nil {
			t.Fatalf("--sign-with kms:%s: the keyring was written", tc.key)
		}
	}
}

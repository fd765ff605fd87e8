//go:build unix

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The end-to-end tests of signed keyrings (docs/keyring.md) run the real
// binaries: signer dev (signerd pinned to the emulator's keyring signer),
// signer keyring sign and verify, the age CLI, the AWS CLI and openssl.

// devTools is a shell for the e2e keyring tests: the built signer, the
// AWS CLI against the stack's emulator with credentials test/test, and
// files in a work directory.
type devTools struct {
	t        *testing.T
	p        *devProc
	work     string
	signer   string
	aws      string
	openssl  string
	endpoint string
	env      []string
}

func newDevTools(t *testing.T, p *devProc) *devTools {
	t.Helper()
	d := &devTools{t: t, p: p, work: t.TempDir(), signer: filepath.Join(builtBinaries(t), "signer"),
		aws: tool(t, "aws"), openssl: tool(t, "openssl")}
	d.endpoint = strings.TrimSpace(d.read(filepath.Join(p.dir, "kms-endpoint")))
	none := filepath.Join(d.work, "none")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			d.env = append(d.env, kv)
		}
	}
	d.env = append(d.env, "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+none, "AWS_SHARED_CREDENTIALS_FILE="+none, "AWS_PAGER=")
	return d
}

func (d *devTools) read(path string) string {
	d.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		d.t.Fatal(err)
	}
	return string(b)
}

func (d *devTools) write(name string, b []byte) string {
	d.t.Helper()
	p := filepath.Join(d.work, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		d.t.Fatal(err)
	}
	return p
}

// run runs a program with the tools' environment; wantOK says whether it
// must succeed. It returns stdout and stderr together.
func (d *devTools) run(wantOK bool, name string, args ...string) string {
	d.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = d.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if (err == nil) != wantOK {
		d.t.Fatalf("%s %s: err %v (want success %v)\nstdout: %s\nstderr: %s", filepath.Base(name), strings.Join(args, " "), err, wantOK, stdout.String(), stderr.String())
	}
	return stdout.String() + stderr.String()
}

func (d *devTools) awsKMS(wantOK bool, args ...string) string {
	d.t.Helper()
	return d.run(wantOK, d.aws, append([]string{"--endpoint-url", d.endpoint, "--output", "json", "kms"}, args...)...)
}

// jsonBytes is a base64 field of the AWS CLI's JSON answer.
func (d *devTools) jsonBytes(out, field string) []byte {
	d.t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		d.t.Fatalf("%s: %v", out, err)
	}
	b, err := base64.StdEncoding.DecodeString(m[field].(string))
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

// statementAndSignature takes a signature file apart: the statement's
// bytes and the first signature line's signer and signature.
func statementAndSignature(t *testing.T, sigFile string) (stmt []byte, signer string, sig []byte) {
	t.Helper()
	for _, line := range strings.Split(sigFile, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "statement":
			stmt, _ = base64.StdEncoding.DecodeString(f[1])
		case len(f) == 3 && f[0] == "signature" && sig == nil:
			signer = f[1]
			sig, _ = base64.StdEncoding.DecodeString(f[2])
		}
	}
	if stmt == nil || sig == nil {
		t.Fatalf("no statement or signature in:\n%s", sigFile)
	}
	return stmt, signer, sig
}

// provisionError provisions through the shim and returns the enclave's
// state and error step and message afterwards.
func (p *devProc) provisionError() (state, step, message string) {
	p.t.Helper()
	p.do("POST", "/v1/provision", nil)
	st := p.status()
	var e struct{ Step, Message string }
	if len(st.Error) > 0 {
		json.Unmarshal(st.Error, &e)
	}
	return st.State, e.Step, e.Message
}

// kmsDecrypts counts the KMS Decrypt calls (made or failed) in signerd's
// log.
func kmsDecrypts(t *testing.T, dir string) int {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "logs", "signerd.log"))
	return len(regexp.MustCompile(`"msg":"kms call(?: failed)?","component":"kms","op":"Decrypt"`).FindAll(b, -1))
}

// TestDevSignedKeyrings is issue 10's demonstration: a keyring encrypted
// to the real recipient.txt with the age CLI is refused unsigned (before
// anything is decrypted), refused signed by a key signerd does not pin,
// accepted signed with signer keyring sign --sign-with kms:… by the
// pinned key; a lower version than the loaded one is refused, the same
// version accepted again. aws kms sign's signature of a statement
// verifies with signer keyring verify, and signer keyring sign's with aws
// kms verify and with openssl against aws kms get-public-key.
func TestDevSignedKeyrings(t *testing.T) {
	ageCLI := tool(t, "age")
	dir := t.TempDir()
	p := startDev(t, dir) // recipient.txt, keyring-signer
	d := newDevTools(t, p)
	signerSpec := strings.TrimSpace(d.read(filepath.Join(dir, "keyring-signer")))
	if !strings.HasPrefix(signerSpec, "kms:arn:aws:kms:us-east-1:000000000000:key/") {
		t.Fatalf("keyring-signer holds %q, want kms:ARN", signerSpec)
	}
	arn := strings.TrimPrefix(signerSpec, "kms:")
	pin := strings.TrimSpace(d.run(true, d.signer, "keyring", "signer-key", "--endpoint-url", d.endpoint, signerSpec))
	if !strings.Contains(p.out.String(), "signerd pins "+pin) {
		t.Fatalf("the summary does not name the pinned signer %s:\n%s", pin, p.out.String())
	}
	recipientFile := filepath.Join(dir, "recipient.txt")
	p.stop()
	decrypts := kmsDecrypts(t, dir) // the dev keyring's provisioning

	// A keyring made by hand: an openssl key in a format 2 plaintext,
	// encrypted to recipient.txt with the age CLI.
	keyPEM := d.run(true, d.openssl, "genpkey", "-algorithm", "ed25519")
	plaintext := func(version int) []byte {
		b, _ := json.Marshal(map[string]any{"version": 2, "keyring_id": "hand", "keyring_version": version,
			"keys": []map[string]string{{"id": "hand-ed25519", "algorithm": "ed25519", "private_key_pem": keyPEM}}})
		return b
	}
	encrypt := func(name string, pt []byte) string {
		out := filepath.Join(d.work, name)
		cmd := exec.Command(ageCLI, "-R", recipientFile, "-o", out)
		cmd.Stdin = bytes.NewReader(pt)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("age -R: %v\n%s", err, b)
		}
		return out
	}
	hand := encrypt("hand.age", plaintext(2))
	sign := func(file string, version string, signer string, extra ...string) string {
		t.Helper()
		args := append([]string{"keyring", "sign", "--endpoint-url", d.endpoint, "--sign-with", signer, "--id", "hand", "--version", version,
			"--recipient-file", recipientFile, "--force"}, extra...)
		return d.run(true, d.signer, append(args, file)...)
	}

	// 1. Unsigned: the stack starts, and provisioning fails at
	// keyring_signature without KMS decrypting anything, the identity
	// included.
	p = startDev(t, dir, "--keyring", hand)
	d.endpoint = strings.TrimSpace(d.read(filepath.Join(dir, "kms-endpoint"))) // the emulator's port of this start
	if state, step, msg := p.provisionError(); state != "failed" || step != "keyring_signature" || !strings.Contains(msg, "no signature") {
		t.Fatalf("unsigned: %s at %s: %s", state, step, msg)
	}
	if n := kmsDecrypts(t, dir) - decrypts; n != 0 {
		t.Fatalf("%d KMS Decrypt calls while an unsigned keyring was offered; want none", n)
	}

	// 2. Signed by a key signerd does not pin: another emulator signing
	// key, through signer keyring sign.
	sign(hand, "2", "kms:"+createSigningKey(t, d))
	if state, step, msg := p.provisionError(); state != "failed" || step != "keyring_signature" || !strings.Contains(msg, "not a pinned keyring signer") {
		t.Fatalf("signed by an unpinned key: %s at %s: %s", state, step, msg)
	}
	if n := kmsDecrypts(t, dir) - decrypts; n != 0 {
		t.Fatalf("%d KMS Decrypt calls while a keyring signed by an unpinned key was offered; want none", n)
	}

	// 3. Signed by the pinned key: accepted; the key signs.
	sign(hand, "2", signerSpec)
	if state, step, msg := p.provisionError(); state != "ready" || step != "" {
		t.Fatalf("signed by the pinned key: %s at %s: %s", state, step, msg)
	}
	if code, _, body := p.sign("hand-ed25519", "message", []byte("hello")); code != 200 {
		t.Fatalf("sign with the hand-made key: %d %s", code, body)
	}
	v2, v2sig := d.read(hand), d.read(hand+".sig")

	// 4. Version 1 after version 2: refused, naming both; the keys loaded
	// keep serving.
	os.WriteFile(hand, []byte(d.read(encrypt("hand-v1.age", plaintext(1)))), 0o600)
	sign(hand, "1", signerSpec)
	if state, step, msg := p.provisionError(); state != "ready" || step != "keyring_version" || !strings.Contains(msg, "version 1 is lower than version 2") {
		t.Fatalf("a lower version: %s at %s: %s", state, step, msg)
	}
	if code, _, body := p.sign("hand-ed25519", "message", []byte("still here")); code != 200 {
		t.Fatalf("sign after the refused rollback: %d %s", code, body)
	}

	// 5. Version 2 again, the same file: accepted.
	os.WriteFile(hand, []byte(v2), 0o600)
	os.WriteFile(hand+".sig", []byte(v2sig), 0o600)
	if state, step, msg := p.provisionError(); state != "ready" || step != "" {
		t.Fatalf("the same version again: %s at %s: %s", state, step, msg)
	}

	// 6. signer keyring sign's signature verifies with aws kms verify, and
	// with openssl against aws kms get-public-key.
	stmt, sigSigner, sig := statementAndSignature(t, v2sig)
	if sigSigner != pin {
		t.Fatalf("the signature file names signer %s, want %s", sigSigner, pin)
	}
	stmtPath, sigPath := d.write("statement.bin", stmt), d.write("sig.der", sig)
	if out := d.awsKMS(true, "verify", "--key-id", arn, "--message", "fileb://"+stmtPath, "--message-type", "RAW",
		"--signing-algorithm", "ECDSA_SHA_256", "--signature", "fileb://"+sigPath); !strings.Contains(out, `"SignatureValid": true`) {
		t.Fatalf("aws kms verify: %s", out)
	}
	pubDER := d.jsonBytes(d.awsKMS(true, "get-public-key", "--key-id", arn), "PublicKey")
	if want := "ecdsa-p256:" + base64.StdEncoding.EncodeToString(pubDER); pin != want {
		t.Errorf("signer keyring signer-key printed %s; aws kms get-public-key gives %s", pin, want)
	}
	pubPEM := filepath.Join(d.work, "pub.pem")
	d.run(true, d.openssl, "pkey", "-pubin", "-inform", "DER", "-in", d.write("pub.der", pubDER), "-out", pubPEM)
	if out := d.run(true, d.openssl, "dgst", "-sha256", "-verify", pubPEM, "-signature", sigPath, stmtPath); !strings.Contains(out, "Verified OK") {
		t.Fatalf("openssl dgst -verify: %s", out)
	}

	// 7. aws kms sign's signature of a statement verifies with signer
	// keyring verify, and signerd accepts it.
	d.run(true, d.signer, "keyring", "sign", "--statement-only", "--force", "--id", "hand", "--version", "2", "--recipient-file", recipientFile, hand)
	var stmt2 []byte
	for _, line := range strings.Split(d.read(hand+".sig"), "\n") {
		if s, ok := strings.CutPrefix(line, "statement "); ok {
			stmt2, _ = base64.StdEncoding.DecodeString(s)
		}
	}
	if !bytes.HasPrefix(stmt2, []byte("enclave-signer keyring statement v1\n")) || strings.Contains(d.read(hand+".sig"), "\nsignature ") {
		t.Fatalf("--statement-only wrote:\n%s", d.read(hand+".sig"))
	}
	cliSig := d.jsonBytes(d.awsKMS(true, "sign", "--key-id", arn, "--message", "fileb://"+d.write("statement2.bin", stmt2),
		"--message-type", "RAW", "--signing-algorithm", "ECDSA_SHA_256"), "Signature")
	f, _ := os.OpenFile(hand+".sig", os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("signature " + pin + " " + base64.StdEncoding.EncodeToString(cliSig) + "\n")
	f.Close()
	if out := d.run(true, d.signer, "keyring", "verify", "--keyring-signer", pin, "--recipient-file", recipientFile, hand); !strings.Contains(out, `"valid": true`) {
		t.Fatalf("signer keyring verify of aws kms sign's signature: %s", out)
	}
	if state, step, msg := p.provisionError(); state != "ready" || step != "" {
		t.Fatalf("the statement signed by aws kms sign: %s at %s: %s", state, step, msg)
	}
}

// createSigningKey makes another ECC_NIST_P256 signing key in the
// emulator with the AWS CLI and returns its ARN.
func createSigningKey(t *testing.T, d *devTools) string {
	t.Helper()
	var out struct{ KeyMetadata struct{ Arn string } }
	if err := json.Unmarshal([]byte(d.awsKMS(true, "create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY")), &out); err != nil || out.KeyMetadata.Arn == "" {
		t.Fatalf("create-key: %v", err)
	}
	return out.KeyMetadata.Arn
}

// TestDevKeepsItsKeyringSigned: signer dev signs keyring.age again, keys
// unchanged, when its statement's window is ending; and makes a new one
// when keyring.age.sig is not the keyring signer's (a directory from
// before signed keyrings).
func TestDevKeepsItsKeyringSigned(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	d := newDevTools(t, p)
	keys := p.keys()
	signerSpec := strings.TrimSpace(d.read(filepath.Join(dir, "keyring-signer")))
	kr := filepath.Join(dir, "keyring.age")
	// The same statement, with a window that ends in an hour.
	d.run(true, d.signer, "keyring", "sign", "--endpoint-url", d.endpoint, "--force", "--sign-with", signerSpec, "--id", "dev", "--version", "1",
		"--recipient-file", filepath.Join(dir, "recipient.txt"), "--valid-for", "1h", kr)
	p.stop()

	p = startDev(t, dir)
	if !strings.Contains(p.out.String(), "keyring.age.sig (signed again: its window was ending)") || p.status().State != "ready" {
		t.Fatalf("a keyring whose window ends within a day:\n%s", p.out.String())
	}
	if p.keys()["dev-p256"].PublicKeyPEM != keys["dev-p256"].PublicKeyPEM {
		t.Error("re-signing changed the keys")
	}
	d.endpoint = strings.TrimSpace(d.read(filepath.Join(dir, "kms-endpoint")))
	if out := d.run(true, d.signer, "keyring", "verify", "--keyring-signer", strings.TrimSpace(d.run(true, d.signer, "keyring", "signer-key", "--endpoint-url", d.endpoint, signerSpec)),
		"--at", "2027-06-01T00:00:00Z", kr); !strings.Contains(out, `"valid": true`) {
		t.Errorf("the re-signed statement is not valid for a year: %s", out)
	}
	p.stop()

	os.Remove(kr + ".sig")
	p = startDev(t, dir)
	if !strings.Contains(p.out.String(), "keyring.age (dev-ed25519, dev-p256, dev-secp256k1; keyring dev version 1) anew: the old one was not signed by the keyring signer") || p.status().State != "ready" {
		t.Fatalf("a keyring without a signature file:\n%s", p.out.String())
	}
	if p.keys()["dev-p256"].PublicKeyPEM == keys["dev-p256"].PublicKeyPEM {
		t.Error("the keyring was not made anew")
	}
}

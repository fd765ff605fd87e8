//go:build unix

package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	ethcrypto "github.com/ethereum/go-ethereum/crypto"
	"golang.org/x/crypto/sha3"

	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/policy"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

type statusJSON struct {
	State     string            `json:"state"`
	DebugMode bool              `json:"debug_mode"`
	PCRs      map[string]string `json:"pcrs"`
	Keys      int               `json:"keys"`
	Error     json.RawMessage   `json:"error"`
}

func (p *devProc) status() statusJSON {
	var st statusJSON
	if code, err := p.getJSON("/v1/status", &st); code != 200 || err != nil {
		p.t.Fatalf("GET /v1/status: %d %v", code, err)
	}
	return st
}

func TestDevDebugMode(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir, "--debug-mode")
	st := p.status()
	zero := strings.Repeat("0", 96)
	if st.State != "ready" || !st.DebugMode || st.PCRs["0"] != zero || st.PCRs["4"] == zero {
		t.Fatalf("debug-mode status: %+v", st)
	}
	// The generated policy admits only a debug enclave's all-zero PCR0.
	b, err := os.ReadFile(filepath.Join(dir, "policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	simPCR0 := hex.EncodeToString(nsmsim.DefaultPCRs("")[0])
	if !strings.Contains(string(b), zero) || strings.Contains(string(b), simPCR0) {
		t.Fatalf("debug policy does not pin only the zero PCR0:\n%s", b)
	}
	for _, pcr0 := range []struct {
		v  string
		ok bool
	}{{zero, true}, {simPCR0, false}} {
		d := pol.Evaluate(policy.Request{Principal: devPrincipal, Action: "kms:Decrypt", Resource: "*",
			Context: map[string][]string{"kms:RecipientAttestation:ImageSha384": {pcr0.v}}})
		if d.Allowed != pcr0.ok {
			t.Errorf("debug policy, PCR0 %s…: allowed %v, want %v", pcr0.v[:8], d.Allowed, pcr0.ok)
		}
	}
	if !strings.Contains(p.out.String(), "debug-mode enclave, PCR0 "+zero) {
		t.Errorf("signer dev does not print the debug PCR0:\n%s", p.out.String())
	}
}

// TestDevPolicyFixedWithoutRestart: a policy pinning another PCR0 leaves
// signerd failed with AccessDenied and the PCR0 it presented; fixing the
// policy with the AWS CLI and POST /v1/provision make it ready, nothing
// restarted.
func TestDevPolicyFixedWithoutRestart(t *testing.T) {
	awsCLI := tool(t, "aws")
	dir := t.TempDir()
	render := func(pcr0 string) string {
		p, _, err := policy.Render(policy.RenderOptions{ImageSha384: []string{pcr0}, EnclaveRole: devPrincipal, EncryptRole: devPrincipal, AdminRole: devPrincipal})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "policy.json")
		os.WriteFile(path, p.Marshal(), 0o644)
		return path
	}
	simPCR0 := hex.EncodeToString(nsmsim.DefaultPCRs("")[0])
	p := startDev(t, dir, "--policy", render(strings.Repeat("ab", 48)))
	st := p.status()
	if st.State != "failed" || !strings.Contains(string(st.Error), "AccessDeniedException") || !strings.Contains(string(st.Error), simPCR0) {
		t.Fatalf("status with a policy pinning another PCR0: %+v %s", st, st.Error)
	}
	code, body := p.do("GET", "/readyz", nil)
	if code != 503 || !strings.Contains(string(body), `"not_ready"`) {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	// signer dev says what to fix: the policy, the PCRs presented, and the
	// doctor command for the key KMS named; it does not guess which PCR.
	out := p.out.String()
	for _, want := range []string{"NOT READY", "to fix: the key policy does not admit this enclave", "PCR0 " + simPCR0, "signer doctor --key-id arn:aws:kms:us-east-1:000000000000:key/"} {
		if !strings.Contains(out, want) {
			t.Errorf("signer dev's NOT READY line lacks %q:\n%s", want, out)
		}
	}

	endpoint, _ := os.ReadFile(filepath.Join(dir, "kms-endpoint"))
	aws := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(awsCLI, append([]string{"--endpoint-url", strings.TrimSpace(string(endpoint)), "--region", "us-east-1", "kms"}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_DISABLED=true",
			"AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws kms %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	keyID := aws("describe-key", "--key-id", devKeyAlias, "--query", "KeyMetadata.KeyId", "--output", "text")
	aws("put-key-policy", "--key-id", keyID, "--policy-name", "default", "--policy", "file://"+render(simPCR0))

	code, body = p.do("POST", "/v1/provision", nil)
	var after statusJSON
	json.Unmarshal(body, &after)
	if code != 200 || after.State != "ready" {
		t.Fatalf("POST /v1/provision after fixing the policy: %d %s", code, body)
	}
	if code, _ := p.do("GET", "/readyz", nil); code != 200 {
		t.Fatalf("/readyz after the fix: %d", code)
	}
}

// TestDevHandMadeKeyrings: keys made with openssl, a keyring JSON
// encrypted with the age CLI to recipient.txt, signed with the command
// signer dev's summary prints, loaded with --keyring.
func TestDevHandMadeKeyrings(t *testing.T) {
	openssl, ageCLI := tool(t, "openssl"), tool(t, "age")
	dir := t.TempDir()
	p := startDev(t, dir) // creates recipient.txt and the keyring signer
	d := newDevTools(t, p)

	keyDir := t.TempDir() // throwaway test keys, for openssl
	gen := func(name string, args ...string) string {
		out, err := exec.Command(openssl, args...).Output()
		if err != nil {
			t.Fatalf("openssl %v: %v", args, err)
		}
		os.WriteFile(filepath.Join(keyDir, name), out, 0o600)
		return string(out)
	}
	keys := []struct{ id, alg, pem string }{
		{"hand-ed25519", "ed25519", gen("ed", "genpkey", "-algorithm", "ed25519")},
		{"hand-p256", "ecdsa-p256", gen("p256", "ecparam", "-name", "prime256v1", "-genkey")},
		{"hand-k1", "ecdsa-secp256k1", gen("k1", "ecparam", "-name", "secp256k1", "-genkey", "-noout")},
		{"hand-k1-params", "ecdsa-secp256k1", gen("k1p", "ecparam", "-name", "secp256k1", "-genkey")},
	}
	var kr struct {
		Version        int                 `json:"version"`
		KeyringID      string              `json:"keyring_id"`
		KeyringVersion int                 `json:"keyring_version"`
		Keys           []map[string]string `json:"keys"`
	}
	kr.Version, kr.KeyringID, kr.KeyringVersion = 2, "hand", 1
	for _, k := range keys {
		kr.Keys = append(kr.Keys, map[string]string{"id": k.id, "algorithm": k.alg, "private_key_pem": k.pem})
	}
	plain, _ := json.Marshal(kr)
	recipient, _ := os.ReadFile(filepath.Join(dir, "recipient.txt"))
	extra := filepath.Join(t.TempDir(), "hand.age")
	cmd := exec.Command(ageCLI, "-r", strings.TrimSpace(string(recipient)), "-o", extra)
	cmd.Stdin = bytes.NewReader(plain)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("age -r: %v\n%s", err, out)
	}
	// The summary's command, as printed, in a shell.
	m := regexp.MustCompile(`(?m)^    (AWS_ACCESS_KEY_ID=test .*signer keyring sign .*) --id ID --version N (--recipient-file \S+) FILE$`).FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("the summary does not say how to sign a hand-made keyring:\n%s", p.out.String())
	}
	line := strings.Replace(m[1], "signer keyring sign", d.signer+" keyring sign", 1) + " --id hand --version 1 " + m[2] + " " + extra
	if out, err := exec.Command("sh", "-c", line).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	p.stop()

	p = startDev(t, dir, "--keyring", extra)
	if st := p.status(); st.State != "ready" || st.Keys != 7 {
		t.Fatalf("with the extra keyring: %+v %s", st, st.Error)
	}
	listed := p.keys()
	msg := []byte("signed by a key made with openssl")
	for _, k := range keys {
		code, s, body := p.sign(k.id, "message", msg)
		if code != 200 {
			t.Fatalf("sign %s: %d %s", k.id, code, body)
		}
		sig, _ := base64.StdEncoding.DecodeString(s.Signature)
		opensslVerify(t, k.alg, listed[k.id].PublicKeyPEM, msg, sig)
		// Our public key is openssl's.
		pub, _ := exec.Command(openssl, "pkey", "-in", filepath.Join(keyDir, map[string]string{"hand-ed25519": "ed", "hand-p256": "p256", "hand-k1": "k1", "hand-k1-params": "k1p"}[k.id]), "-pubout").Output()
		if string(pub) != listed[k.id].PublicKeyPEM {
			t.Errorf("%s: /v1/keys public key differs from openssl pkey -pubout", k.id)
		}
	}

	// secp256k1: signature_rsv over a Keccak-256 digest recovers the key's
	// ethereum_address (go-ethereum, as a wallet would check it).
	h := sha3.NewLegacyKeccak256()
	h.Write([]byte("an Ethereum transaction"))
	digest := h.Sum(nil)
	code, s, body := p.sign("hand-k1", "digest", digest)
	if code != 200 || s.RecoveryID == nil {
		t.Fatalf("sign digest: %d %s", code, body)
	}
	rsv, _ := base64.StdEncoding.DecodeString(s.SignatureRSV)
	pub, err := ethcrypto.SigToPub(digest, rsv)
	if err != nil {
		t.Fatal(err)
	}
	if got := ethcrypto.PubkeyToAddress(*pub).Hex(); got != listed["hand-k1"].EthereumAddress {
		t.Fatalf("recovered address %s, /v1/keys says %s", got, listed["hand-k1"].EthereumAddress)
	}
	if int(rsv[64]) != *s.RecoveryID {
		t.Fatalf("v = %d, recovery_id = %d", rsv[64], *s.RecoveryID)
	}

	// No private key appears in any log or output of the whole stack.
	var logs bytes.Buffer
	logs.WriteString(p.out.String())
	files, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		logs.Write(b)
	}
	for _, k := range keys {
		rest := []byte(k.pem)
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if !strings.Contains(block.Type, "PRIVATE KEY") {
				continue
			}
			for _, form := range []string{hex.EncodeToString(block.Bytes), base64.StdEncoding.EncodeToString(block.Bytes)[:40]} {
				if strings.Contains(logs.String(), form) {
					t.Fatalf("%s private key material appears in the stack's logs", k.id)
				}
			}
			for _, line := range strings.Split(k.pem, "\n") {
				if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(logs.String(), line) {
					t.Fatalf("a line of %s's PEM appears in the stack's logs", k.id)
				}
			}
		}
	}
	if logs.Len() < 200 {
		t.Fatalf("suspiciously little log output (%d bytes): the scan proves nothing", logs.Len())
	}
}

// TestDevBadInput: each bad request gets its HTTP code and error code, and
// the service keeps serving; so does signerd after bad frames on its socket.
func TestDevBadInput(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	stillSigns := func(after string) {
		t.Helper()
		if code, _, body := p.sign("dev-p256", "message", []byte("ok")); code != 200 {
			t.Fatalf("after %s, signing fails: %d %s", after, code, body)
		}
	}
	d32 := sha256.Sum256([]byte("x"))
	cases := []struct {
		name, path string
		body       []byte
		code       int
		errCode    string
	}{
		{"malformed JSON", "/v1/keys/dev-p256/sign", []byte(`{"message":`), 400, "malformed_request"},
		{"unknown key", "/v1/keys/nope/sign", []byte(`{"message":"aGk="}`), 404, "unknown_key"},
		{"digest for ed25519", "/v1/keys/dev-ed25519/sign", []byte(`{"digest":"` + base64.StdEncoding.EncodeToString(d32[:]) + `"}`), 422, "digest_not_allowed"},
		{"33-byte digest", "/v1/keys/dev-p256/sign", []byte(`{"digest":"` + base64.StdEncoding.EncodeToString(make([]byte, 33)) + `"}`), 422, "invalid_digest"},
		{"body over the limit", "/v1/keys/dev-p256/sign", []byte(`{"message":"` + strings.Repeat("A", 1<<20+100) + `"}`), 413, "too_large"},
	}
	for _, c := range cases {
		code, body := p.do("POST", c.path, c.body)
		var e struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(body, &e)
		if code != c.code || e.Error.Code != c.errCode || e.Error.Message == "" {
			t.Errorf("%s: %d %s, want %d %s", c.name, code, body, c.code, c.errCode)
		}
		stillSigns(c.name)
	}

	// Straight to signerd's socket: a malformed frame, and an oversized one.
	sock := filepath.Join(dir, "signerd.sock")
	for name, frame := range map[string][]byte{
		"malformed frame": append([]byte{0, 0, 0, 5}, 0xff, 0xff, 0xff, 0xff, 0xff),
		"oversized frame": {0xff, 0xff, 0xff, 0xff},
	} {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write(frame)
		body, err := wire.ReadFrame(conn, nil)
		if err != nil {
			t.Fatalf("%s: no error frame: %v", name, err)
		}
		_, m, err := wire.Unmarshal(body)
		var we *wire.Error
		if err != nil || !errors.As(asError(m), &we) {
			t.Fatalf("%s: answer %T %v, want an error frame", name, m, err)
		}
		// Then the connection is closed.
		if _, err := wire.ReadFrame(conn, nil); err == nil {
			t.Fatalf("%s: connection still open after the error frame", name)
		}
		conn.Close()
		stillSigns(name + " on signerd's socket")
	}
	_ = binary.BigEndian
}

func asError(m wire.Message) error {
	if e, ok := m.(*wire.Error); ok {
		return e
	}
	return nil
}

// TestDevRefusesWebPages: issue 9's request, as a page in a browser on the
// host sends it through DNS rebinding, gets a JSON refusal from the real
// stack; the README's curl lines, signer dev's printed one, the CLI
// clients (with --endpoint and SIGNER_ENDPOINT) keep working.
func TestDevRefusesWebPages(t *testing.T) {
	curl := tool(t, "curl")
	dir := t.TempDir()
	p := startDev(t, dir)
	addr := strings.TrimPrefix(p.url, "http://")
	d := sha256.Sum256([]byte("a transaction"))
	body := `{"digest":"` + base64.StdEncoding.EncodeToString(d[:]) + `"}`
	send := func(hdr map[string]string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", p.url+"/v1/keys/dev-secp256k1/sign", strings.NewReader(body))
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(b, &e)
		if resp.StatusCode != 200 && (resp.Header.Get("Content-Type") != "application/json" || e.Error.Message == "") {
			t.Errorf("refusal %d %q is not a JSON error (Content-Type %q)", resp.StatusCode, b, resp.Header.Get("Content-Type"))
		}
		return resp.StatusCode, e.Error.Code, string(b)
	}
	for _, c := range []struct {
		name   string
		hdr    map[string]string
		status int
		code   string
	}{
		{"issue 9's request", map[string]string{"Host": "attacker.example:8080", "Origin": "http://attacker.example:8080", "Content-Type": "text/plain"}, 403, "forbidden_origin"},
		{"another site's Origin", map[string]string{"Origin": "http://attacker.example", "Content-Type": "application/json"}, 403, "forbidden_origin"},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403, "forbidden_origin"},
		{"a text/plain form", map[string]string{"Content-Type": "text/plain"}, 415, "unsupported_media_type"},
		{"a JSON request", map[string]string{"Content-Type": "application/json"}, 200, ""},
	} {
		if status, code, b := send(c.hdr); status != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, b, c.status, c.code)
		}
	}

	// The README's curl lines, on this stack's port.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	pub := p.keys()["dev-ed25519"].PublicKeyPEM
	blk, _ := pem.Decode([]byte(pub))
	key, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var ran int
	runCurl := func(where, line string) {
		t.Helper()
		line = strings.Replace(line, "curl ", curl+" ", 1)
		out, err := exec.Command("bash", "-c", line).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %s: %v\n%s", where, line, err, out)
		}
		ran++
		if !strings.Contains(line, "/sign") {
			if !strings.Contains(string(out), `"keys"`) {
				t.Errorf("%s: %s: %s", where, line, out)
			}
			return
		}
		var s signJSON
		json.Unmarshal(out, &s)
		sig, _ := base64.StdEncoding.DecodeString(s.Signature)
		if s.KeyID != "dev-ed25519" || !ed25519.Verify(key.(ed25519.PublicKey), []byte("hello"), sig) {
			t.Errorf("%s: %s: %s; want an ed25519 signature of hello", where, line, out)
		}
	}
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "curl ") && strings.Contains(line, "127.0.0.1:8080") {
			runCurl("README.md", strings.ReplaceAll(line, "127.0.0.1:8080", addr))
		}
	}
	// signer dev's own Sign: line.
	out := p.out.String()
	if i := strings.Index(out, "Sign:\n"); i >= 0 {
		line, _, _ := strings.Cut(strings.TrimSpace(out[i+len("Sign:\n"):]), "\n")
		runCurl("signer dev's summary", line)
	}
	if ran != 3 {
		t.Errorf("ran %d curl lines, want 2 from README.md and 1 from signer dev's summary", ran)
	}

	// The CLI clients, by flag and by environment.
	bin := filepath.Join(builtBinaries(t), "signer")
	msg := filepath.Join(dir, "msg")
	os.WriteFile(msg, []byte("hello"), 0o600)
	for _, args := range [][]string{
		{"sign", "--key", "dev-ed25519", "--message-file", msg, "--endpoint", addr},
		{"sign", "--key", "dev-secp256k1", "--digest", hex.EncodeToString(d[:]), "--endpoint", p.url},
		{"keys", "--endpoint", p.url},
		{"status", "--endpoint", p.url},
		{"attest", "--nonce", "0011", "--endpoint", p.url},
		{"provision", "--endpoint", p.url},
		{"status"}, // SIGNER_ENDPOINT
	} {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SIGNER_ENDPOINT="+p.url)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("signer %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

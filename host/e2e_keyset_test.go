//go:build unix

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// docBlock returns the first ```sh block after marker in a document.
func docBlock(t *testing.T, file, marker string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), marker)
	if !ok {
		t.Fatalf("%s has no %q", file, marker)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	block, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatalf("%s: no sh block after %q", file, marker)
	}
	return block
}

// TestDevAttestedKeySet is issue 10's attested key set against the real
// binaries: docs/attestation.md's commands pin the signer dev enclave by
// PCR0 and key set and pass; an independent implementation (the Python in
// the same document) recomputes /v1/keys's keyset_digest, which the
// document's raw bytes carry; a key list with one key changed fails.
func TestDevAttestedKeySet(t *testing.T) {
	for _, name := range []string{"bash", "curl", "jq", "openssl", "python3"} {
		tool(t, name)
	}
	dir := t.TempDir()
	p := startDev(t, dir)
	st := p.status()
	if st.State != "ready" || st.DebugMode {
		t.Fatalf("status %+v", st)
	}
	pcr0 := st.PCRs["0"]
	root := filepath.Join(dir, "ca", "root.pem")
	bin := builtBinaries(t)
	work := t.TempDir()
	sh := func(script string) ([]byte, error) {
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		return cmd.CombinedOutput()
	}

	// The counterparty's commands, as docs/attestation.md prints them,
	// with this stack's URL, its PCR0 and the development root.
	block := docBlock(t, "../docs/attestation.md", "<!-- e2e: TestDevAttestedKeySet")
	lines := strings.Split(strings.TrimSpace(block), "\n")
	var script []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "SIGNER="):
			l = "SIGNER=" + p.url
		case strings.HasPrefix(l, "PCR0="):
			l = "PCR0=" + pcr0
		case strings.HasPrefix(l, "signer attestation verify "):
			l = strings.Replace(l, "signer attestation verify ", "signer attestation verify --root "+root+" ", 1)
		}
		script = append(script, l)
	}
	if last := script[len(script)-1]; !strings.HasPrefix(last, "jq -e '.user_data_map.pins.kms_keys") {
		t.Fatalf("the block's last line is %q, want the pins check", last)
	}
	if out, err := sh(strings.Join(script, "\n")); err != nil {
		t.Fatalf("docs/attestation.md's commands fail against signer dev: %v\n%s\nscript:\n%s", err, out, strings.Join(script, "\n"))
	}
	var verdict verifyJSON
	vb, _ := os.ReadFile(filepath.Join(work, "verdict.json"))
	if err := json.Unmarshal(vb, &verdict); err != nil || !verdict.Valid || verdict.UserDataMap == nil || verdict.PCRs["0"] != pcr0 {
		t.Fatalf("verdict %s (%v)", vb, err)
	}
	// signer dev runs pinned to its KMS key: the attested pins are the
	// ones status reports (which a verifier does not have to trust).
	var pinned struct {
		Pins struct {
			KMSKeys          []string `json:"kms_keys"`
			KeyringSigners   []string `json:"keyring_signers"`
			KeyringThreshold int      `json:"keyring_threshold"`
		} `json:"pins"`
	}
	if code, err := p.getJSON("/v1/status", &pinned); code != 200 || err != nil || len(pinned.Pins.KMSKeys) != 1 || len(pinned.Pins.KeyringSigners) != 1 {
		t.Fatalf("status pins: %d %v %+v", code, err, pinned)
	}
	if got := verdict.UserDataMap.Pins.KMSKeys; len(got) != 1 || got[0] != pinned.Pins.KMSKeys[0] {
		t.Fatalf("attested kms_keys %q, want signer dev's key %q", got, pinned.Pins.KMSKeys[0])
	}
	// And its keyring signer (signer keyring signer-key of DIR/keyring-signer).
	if got := verdict.UserDataMap.Pins; len(got.KeyringSigners) != 1 || got.KeyringSigners[0] != pinned.Pins.KeyringSigners[0] || got.KeyringThreshold != 1 || pinned.Pins.KeyringThreshold != 1 {
		t.Fatalf("attested keyring signers %q (threshold %d), want signer dev's %q", got.KeyringSigners, got.KeyringThreshold, pinned.Pins.KeyringSigners)
	}

	// The independent implementation: the Python of docs/attestation.md
	// recomputes the digest from keys.json; it is /v1/keys's
	// keyset_digest, and the document's bytes carry it as the map's
	// "keyset" (text key "keyset", a 48-byte byte string).
	py := docBlock(t, "../docs/attestation.md", "### The key set digest")
	out, err := sh(py)
	if err != nil {
		t.Fatalf("the Python digest: %v\n%s", err, out)
	}
	pyDigest := strings.TrimSpace(string(out))
	keysJSON, _ := os.ReadFile(filepath.Join(work, "keys.json"))
	var keys struct {
		Keys         []map[string]any `json:"keys"`
		KeysetDigest string           `json:"keyset_digest"`
	}
	if err := json.Unmarshal(keysJSON, &keys); err != nil {
		t.Fatal(err)
	}
	if len(pyDigest) != 96 || pyDigest != keys.KeysetDigest || len(keys.Keys) != 3 {
		t.Fatalf("Python digest %q, /v1/keys keyset_digest %q (%d keys)", pyDigest, keys.KeysetDigest, len(keys.Keys))
	}
	docB64, _ := os.ReadFile(filepath.Join(work, "doc.b64"))
	rawDoc, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(docB64)))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := hex.DecodeString(pyDigest)
	if !bytes.Contains(rawDoc, append([]byte("\x66keyset\x58\x30"), d...)) {
		t.Fatalf("the document's bytes do not carry keyset = %s", pyDigest)
	}
	if verdict.UserDataMap.KeySet != pyDigest || verdict.UserDataMap.Caller != nil {
		t.Errorf("user_data_map %+v", verdict.UserDataMap)
	}

	verify := func(wantCode int, args ...string) verifyJSON {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "signer"), append([]string{"attestation", "verify", "--root", root, "--expect-pcr", "0=" + pcr0}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != wantCode {
			t.Fatalf("signer attestation verify %q: exit %d (%v), want %d\n%s%s", args, code, err, wantCode, stdout.String(), stderr.String())
		}
		var v verifyJSON
		if err := json.Unmarshal(stdout.Bytes(), &v); err != nil {
			t.Fatalf("output: %v\n%s", err, stdout.String())
		}
		return v
	}

	// One key changed: dev-p256's public key swapped for another, with the
	// file's keyset_digest left as it was, and brought in line.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	var changed map[string]any
	json.Unmarshal(keysJSON, &changed)
	for _, k := range changed["keys"].([]any) {
		if k := k.(map[string]any); k["id"] == "dev-p256" {
			k["public_key_pem"] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		}
	}
	b, _ := json.Marshal(changed)
	kl, err := attestation.ParseKeyListJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	newDigest, _ := attestation.KeySetDigest(kl.Keys)
	stale := filepath.Join(work, "changed-stale.json")
	os.WriteFile(stale, b, 0o644)
	changed["keyset_digest"] = hex.EncodeToString(newDigest)
	b, _ = json.Marshal(changed)
	consistent := filepath.Join(work, "changed.json")
	os.WriteFile(consistent, b, 0o644)
	docFile := filepath.Join(work, "doc.b64")
	for _, f := range []string{stale, consistent} {
		v := verify(1, "--doc", docFile, "--expect-keys", f)
		if v.Valid || !strings.Contains(v.Error, "key set") || !strings.Contains(v.Error, pyDigest) || !strings.Contains(v.Error, "dev-p256 (ecdsa-p256)") {
			t.Errorf("%s: %+v, want a key set mismatch naming the attested digest and the keys", filepath.Base(f), v)
		}
	}
	verify(0, "--doc", docFile, "--expect-keys", filepath.Join(work, "keys.json"))

	// The caller's user_data rides under "caller"; its room is what the
	// map leaves, and the refusal says how much.
	post := func(userData []byte) (int, []byte) {
		body, _ := json.Marshal(map[string][]byte{"nonce": []byte("caller-nonce"), "user_data": userData})
		return p.do("POST", "/v1/attestation", body)
	}
	code, ans := post(make([]byte, 1024))
	m := regexp.MustCompile(`leaves (\d+) bytes for yours`).FindSubmatch(ans)
	if code != 400 || m == nil {
		t.Fatalf("1024 bytes of user_data: %d %s, want 400 saying the room", code, ans)
	}
	room, _ := strconv.Atoi(string(m[1]))
	if room < 64 || room > 901 {
		t.Fatalf("room %d", room)
	}
	caller := bytes.Repeat([]byte("c"), room)
	code, ans = post(caller)
	if code != 200 {
		t.Fatalf("%d bytes of user_data: %d %s", room, code, ans)
	}
	var doc struct {
		Document []byte `json:"document"`
	}
	json.Unmarshal(ans, &doc)
	os.WriteFile(filepath.Join(work, "caller.cbor"), doc.Document, 0o644)
	v := verify(0, "--doc", filepath.Join(work, "caller.cbor"), "--expect-keys", filepath.Join(work, "keys.json"), "--expect-nonce", hex.EncodeToString([]byte("caller-nonce")))
	if v.UserDataMap == nil || v.UserDataMap.Caller == nil || *v.UserDataMap.Caller != base64.StdEncoding.EncodeToString(caller) {
		t.Errorf("caller data: %+v", v.UserDataMap)
	}
	if code, ans := post(make([]byte, room+1)); code != 400 {
		t.Errorf("%d bytes of user_data: %d %s, want 400", room+1, code, ans)
	}
}

package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

const vectors = "../pkg/attestation/testdata/"

type verifyJSON struct {
	Valid       bool              `json:"valid"`
	Error       string            `json:"error"`
	ModuleID    *string           `json:"module_id"`
	Digest      string            `json:"digest"`
	Timestamp   int64             `json:"timestamp"`
	PCRs        map[string]string `json:"pcrs"`
	PublicKey   *string           `json:"public_key"`
	UserData    *string           `json:"user_data"`
	Nonce       *string           `json:"nonce"`
	DebugMode   bool              `json:"debug_mode"`
	UserDataMap *struct {
		V      int    `json:"v"`
		KeySet string `json:"keyset"`
		Pins   struct {
			KMSKeys          []string `json:"kms_keys"`
			KeyringSigners   []string `json:"keyring_signers"`
			KeyringThreshold int      `json:"keyring_threshold"`
		} `json:"pins"`
		Caller *string `json:"caller"`
	} `json:"user_data_map"`
}

func verifyCLI(t *testing.T, wantCode int, args ...string) verifyJSON {
	t.Helper()
	code, stdout, stderr := signer(t, "", append([]string{"attestation", "verify"}, args...)...)
	if code != wantCode {
		t.Fatalf("signer attestation verify %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, wantCode, stdout, stderr)
	}
	var out verifyJSON
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout)
	}
	return out
}

func TestAttestationVerifyRealDocuments(t *testing.T) {
	tests := []struct {
		file, moduleID string
		timestamp      int64
		pcr0, pcr8     string
		debug          bool
	}{
		{"att-tkhq-qos-mock_attestation_doc.b64", "i-07e25f3bada361dec-enc0181d3dff86da785", 1657117102484,
			"f8bb0133c427bc49aa39f6811a01077ce9ab7e635fa1f5439c9c8bf99754f8230e41b09426b0e595eebdc4d6ed4bc3b6", strings.Repeat("0", 96), false},
		{"att-evervault-valid-attestation-doc.b64", "i-0918f6c55e3b61d89-enc018aa8b8e2285d13", 1695049410860,
			strings.Repeat("0", 96), strings.Repeat("0", 96), true},
		{"att-evervault-beta-valid-attestation-doc.b64", "i-020b6af9246d90e92-enc0183d09086c24190", 1665651482136,
			"f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b",
			"8790eb3cce6c83d07e84b126dc61ca923333d6f66615c4a79157de48c5ab2418bdc60746ea7b7afbff03a1c6210201cb", false},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b64 := vectors + tt.file
			out := verifyCLI(t, 0, "--doc", b64, "--expect-pcr", "0="+tt.pcr0)
			if !out.Valid || out.Error != "" || *out.ModuleID != tt.moduleID || out.Timestamp != tt.timestamp || out.Digest != "SHA384" {
				t.Fatalf("got %+v", out)
			}
			if out.PCRs["0"] != tt.pcr0 || out.PCRs["8"] != tt.pcr8 || len(out.PCRs) != 16 || out.DebugMode != tt.debug {
				t.Fatalf("pcrs %v debug %v", out.PCRs, out.DebugMode)
			}
			// The same document as raw bytes.
			s, _ := os.ReadFile(b64)
			raw, _ := base64.StdEncoding.DecodeString(string(s))
			rawPath := filepath.Join(dir, tt.file+".cbor")
			os.WriteFile(rawPath, raw, 0o644)
			if out := verifyCLI(t, 0, "--doc", rawPath); *out.ModuleID != tt.moduleID {
				t.Fatalf("raw form: %+v", out)
			}

			// Each failure class gives its own error, still as JSON, exit 1.
			errs := map[string]string{}
			sig := bytes.Clone(raw)
			sig[len(sig)-1] ^= 1
			errs["signature"] = verifyFile(t, dir, sig).Error
			errs["root"] = verifyCLI(t, 1, "--doc", b64, "--root", writeOtherRoot(t, dir)).Error
			errs["expired"] = verifyCLI(t, 1, "--doc", b64, "--at", "2049-01-01T00:00:00Z").Error
			errs["truncated"] = verifyFile(t, dir, raw[:len(raw)/2]).Error
			errs["pcr"] = verifyCLI(t, 1, "--doc", b64, "--expect-pcr", "0="+strings.Repeat("ab", 48)).Error
			seen := map[string]string{}
			for what, msg := range errs {
				if msg == "" {
					t.Fatalf("%s: empty error", what)
				}
				if other, dup := seen[msg]; dup {
					t.Fatalf("%s and %s give the same error %q", what, other, msg)
				}
				seen[msg] = what
			}
			for what, want := range map[string]string{"signature": "signature", "root": "trusted root", "expired": "not valid at", "truncated": "malformed", "pcr": "PCR0"} {
				if !strings.Contains(errs[what], want) {
					t.Errorf("%s error %q does not mention %q", what, errs[what], want)
				}
			}
		})
	}
}

func verifyFile(t *testing.T, dir string, b []byte) verifyJSON {
	t.Helper()
	p := filepath.Join(dir, "doc.bin")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return verifyCLI(t, 1, "--doc", p)
}

// writeOtherRoot writes a simulator root, which the AWS documents do not
// chain to.
func writeOtherRoot(t *testing.T, dir string) string {
	t.Helper()
	caDir := filepath.Join(dir, "other-ca")
	if code, _, stderr := signer(t, "", "attestation", "simulate", "--ca-dir", caDir, "--out", filepath.Join(dir, "ignored.cbor")); code != 0 {
		t.Fatalf("simulate: %s", stderr)
	}
	return filepath.Join(caDir, "root.pem")
}

func TestAttestationSimulate(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPath := filepath.Join(dir, "pub.pem")
	os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o644)
	userPath := filepath.Join(dir, "user")
	os.WriteFile(userPath, []byte("user data"), 0o644)
	docPath := filepath.Join(dir, "doc.cbor")
	pcr0 := strings.Repeat("ab", 48)

	code, _, stderr := signer(t, "", "attestation", "simulate", "--out", docPath, "--ca-dir", caDir, "--public-key", pubPath,
		"--user-data", userPath, "--nonce", "0102", "--pcr", "0="+pcr0)
	if code != 0 {
		t.Fatalf("simulate: exit %d: %s", code, stderr)
	}
	out := verifyCLI(t, 0, "--doc", docPath, "--root", filepath.Join(caDir, "root.pem"))
	if out.PCRs["0"] != pcr0 || *out.PublicKey != base64.StdEncoding.EncodeToString(spki) || *out.UserData != base64.StdEncoding.EncodeToString([]byte("user data")) || *out.Nonce != "AQI=" || out.DebugMode {
		t.Fatalf("simulated document fields: %+v", out)
	}
	// Against the embedded AWS root, it fails.
	if out := verifyCLI(t, 1, "--doc", docPath); !strings.Contains(out.Error, "trusted root") {
		t.Fatalf("against the AWS root: %+v", out)
	}

	// Debug mode, with the same CA reused.
	code, _, stderr = signer(t, "", "attestation", "simulate", "--out", docPath, "--ca-dir", caDir, "--debug-mode")
	if code != 0 {
		t.Fatal(stderr)
	}
	out = verifyCLI(t, 0, "--doc", docPath, "--root", filepath.Join(caDir, "root.pem"), "--expect-pcr", "0="+strings.Repeat("0", 96))
	if !out.DebugMode || out.PublicKey != nil || out.UserData != nil || out.Nonce != nil || out.PCRs["4"] == strings.Repeat("0", 96) {
		t.Fatalf("debug document: %+v", out)
	}

	for _, args := range [][]string{
		{"--ca-dir", caDir},                       // no --out
		{"--out", docPath, "--pcr", "16=" + pcr0}, // not a boot PCR
		{"--out", docPath, "--pcr", "0=abc"},      // short value
		{"--out", docPath, "--nonce", "zz"},       // not hex
	} {
		if code, _, _ := signer(t, "", append([]string{"attestation", "simulate"}, args...)...); code != 2 {
			t.Errorf("simulate %q: exit %d, want 2", args, code)
		}
	}
}

// TestAttestationVerifyExpectKeys drives --expect-keys, --expect-nonce and
// --allow-debug on simulated documents whose user_data is signerd's map
// over the key set of pkg/attestation's test vector.
func TestAttestationVerifyExpectKeys(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	root := filepath.Join(caDir, "root.pem")
	keysFile := vectors + "keyset-vector.json"
	raw, err := os.ReadFile(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	kl, err := attestation.ParseKeyListJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	pins := attestation.Pins{KMSKeys: []string{"arn:aws:kms:us-east-1:111122223333:key/k1"}}
	mapFile := filepath.Join(dir, "user_data.cbor")
	ud, _ := (&attestation.UserData{KeySet: kl.ClaimedDigest, Pins: pins, Caller: []byte("order 7")}).Marshal()
	os.WriteFile(mapFile, ud, 0o644)
	pcr0 := strings.Repeat("ab", 48)
	simulate := func(name string, args ...string) string {
		t.Helper()
		doc := filepath.Join(dir, name)
		if code, _, stderr := signer(t, "", append([]string{"attestation", "simulate", "--ca-dir", caDir, "--out", doc}, args...)...); code != 0 {
			t.Fatalf("simulate: %s", stderr)
		}
		return doc
	}
	doc := simulate("doc.cbor", "--user-data", mapFile, "--nonce", "0a0b", "--pcr", "0="+pcr0)

	out := verifyCLI(t, 0, "--doc", doc, "--root", root, "--expect-pcr", "0="+pcr0, "--expect-keys", keysFile, "--expect-nonce", "0a0b")
	m := out.UserDataMap
	if !out.Valid || m == nil || m.V != 1 || m.KeySet != hex.EncodeToString(kl.ClaimedDigest) || *m.Caller != base64.StdEncoding.EncodeToString([]byte("order 7")) ||
		len(m.Pins.KMSKeys) != 1 || m.Pins.KMSKeys[0] != pins.KMSKeys[0] || m.Pins.KeyringSigners == nil || len(m.Pins.KeyringSigners) != 0 {
		t.Fatalf("the attested key set: %+v, user_data_map %+v", out, m)
	}

	// One key changed: its PEM swapped for another key's. Whether or not
	// the file's keyset_digest is brought in line, the digest recomputed
	// from the keys differs from the document's.
	var list map[string]any
	json.Unmarshal(raw, &list)
	keys := list["keys"].([]any)
	keys[1].(map[string]any)["public_key_pem"] = keys[0].(map[string]any)["public_key_pem"]
	changed := filepath.Join(dir, "changed.json")
	b, _ := json.Marshal(list)
	os.WriteFile(changed, b, 0o644)
	kl2, err := attestation.ParseKeyListJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := attestation.KeySetDigest(kl2.Keys)
	list["keyset_digest"] = hex.EncodeToString(d2)
	consistent := filepath.Join(dir, "changed-consistent.json")
	b, _ = json.Marshal(list)
	os.WriteFile(consistent, b, 0o644)
	for _, f := range []string{changed, consistent} {
		out := verifyCLI(t, 1, "--doc", doc, "--root", root, "--expect-pcr", "0="+pcr0, "--expect-keys", f)
		for _, want := range []string{"key set", hex.EncodeToString(kl.ClaimedDigest), hex.EncodeToString(d2), "Zeta (ecdsa-p256)", "payments-2 (ecdsa-secp256k1)"} {
			if out.Valid || !strings.Contains(out.Error, want) {
				t.Errorf("%s: error %q does not contain %q", filepath.Base(f), out.Error, want)
			}
		}
	}
	// The right keys under a wrong keyset_digest: the file was altered.
	list["keys"] = nil
	json.Unmarshal(raw, &list)
	list["keyset_digest"] = hex.EncodeToString(d2)
	wrongClaim := filepath.Join(dir, "wrong-claim.json")
	b, _ = json.Marshal(list)
	os.WriteFile(wrongClaim, b, 0o644)
	if out := verifyCLI(t, 1, "--doc", doc, "--root", root, "--expect-pcr", "0="+pcr0, "--expect-keys", wrongClaim); !strings.Contains(out.Error, "not the digest of its keys") {
		t.Errorf("right keys, wrong keyset_digest: %+v", out)
	}

	if out := verifyCLI(t, 1, "--doc", doc, "--root", root, "--expect-pcr", "0="+pcr0, "--expect-keys", keysFile, "--expect-nonce", "0a0c"); !strings.Contains(out.Error, "nonce: is 0a0b, expected 0a0c") {
		t.Errorf("other nonce: %+v", out)
	}
	if out := verifyCLI(t, 1, "--doc", doc, "--root", root, "--expect-pcr", "0="+strings.Repeat("cd", 48), "--expect-keys", keysFile); !strings.Contains(out.Error, "PCR0: is "+pcr0) {
		t.Errorf("other PCR0: %+v", out)
	}

	// A debug-mode document: refused with --expect-keys unless allowed.
	debugDoc := simulate("debug.cbor", "--user-data", mapFile, "--debug-mode")
	zero := "0=" + strings.Repeat("0", 96)
	if out := verifyCLI(t, 1, "--doc", debugDoc, "--root", root, "--expect-pcr", zero, "--expect-keys", keysFile); !strings.Contains(out.Error, "debug-mode") || !out.DebugMode {
		t.Errorf("debug document with --expect-keys: %+v", out)
	}
	verifyCLI(t, 0, "--doc", debugDoc, "--root", root, "--expect-pcr", zero, "--expect-keys", keysFile, "--allow-debug")

	// user_data that is not signerd's map: user_data_map null, and no key
	// set to match.
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("user data"), 0o644)
	plainDoc := simulate("plain.cbor", "--user-data", plain, "--pcr", "0="+pcr0)
	if out := verifyCLI(t, 0, "--doc", plainDoc, "--root", root); out.UserDataMap != nil {
		t.Errorf("plain user_data read as signerd's map: %+v", out.UserDataMap)
	}
	if out := verifyCLI(t, 1, "--doc", plainDoc, "--root", root, "--expect-pcr", "0="+pcr0, "--expect-keys", keysFile); !strings.Contains(out.Error, "user_data") {
		t.Errorf("plain user_data with --expect-keys: %+v", out)
	}

	// Usage errors, exit 2, before any document is read.
	badKeys := filepath.Join(dir, "bad.json")
	os.WriteFile(badKeys, []byte(`{"keys": "none"}`), 0o644)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--expect-keys", keysFile}, "needs --expect-pcr 0=HEX"},
		{[]string{"--expect-keys", keysFile, "--expect-pcr", "8=" + pcr0}, "needs --expect-pcr 0=HEX"},
		{[]string{"--expect-pcr", "0=" + pcr0, "--allow-debug"}, "only with --expect-keys"},
		{[]string{"--expect-pcr", "0=" + pcr0, "--expect-keys", badKeys}, "bad.json"},
		{[]string{"--expect-nonce", "xyz"}, "want hex"},
	} {
		code, stdout, stderr := signer(t, "", append([]string{"attestation", "verify", "--doc", doc, "--root", root}, tt.args...)...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tt.want) {
			t.Errorf("verify %q: exit %d, stdout %q, stderr %q; want 2 and %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
}

func TestPCRCommands(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"pcr", "role-arn", "arn:aws:iam::123456789012:role/Webserver"}, 0, "78fce75db17cd4e0a3fb8dad3ad128ca5e77edbb2b2c7f75329dccd99aa5f6ef4fc1f1a452e315b9e98f9e312e6921e6\n"},
		{[]string{"pcr", "instance-id", "i-1234567890abcdef0"}, 0, "08f996b5d43e047a9eb51e7f548bfee7e164fd7dc8f65541f2ac09d6545ac812719327281c401a67a10fcba87ae79ce0\n"},
		{[]string{"pcr", "role-arn", "arn:aws:sts::123456789012:assumed-role/Webserver/i-1"}, 2, ""},
		{[]string{"pcr", "instance-id"}, 2, ""},
		{[]string{"pcr", "nope", "x"}, 2, ""},
	}
	for _, tt := range tests {
		code, out, _ := signer(t, "", tt.args...)
		if code != tt.code || out != tt.out {
			t.Errorf("signer %q: exit %d output %q, want %d %q", tt.args, code, out, tt.code, tt.out)
		}
	}
}

package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const vectors = "../pkg/attestation/testdata/"

type verifyJSON struct {
	Valid     bool              `json:"valid"`
	Error     string            `json:"error"`
	ModuleID  *string           `json:"module_id"`
	Digest    string            `json:"digest"`
	Timestamp int64             `json:"timestamp"`
	PCRs      map[string]string `json:"pcrs"`
	PublicKey *string           `json:"public_key"`
	UserData  *string           `json:"user_data"`
	Nonce     *string           `json:"nonce"`
	DebugMode bool              `json:"debug_mode"`
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

package kmsemu

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kms-state.json")
	creds := []Credential{DefaultCredential, {AccessKeyID: "AKIAADMIN", SecretAccessKey: "a", Principal: adminPrincipal}}
	e1 := start(t, &Server{StatePath: path, Credentials: creds})
	c1 := e1.client("test", "test")
	ctx := t.Context()
	id := *must[*kms.CreateKeyOutput](t)(c1.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("persisted")})).KeyMetadata.KeyId
	must[*kms.CreateAliasOutput](t)(c1.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/persisted"), TargetKeyId: aws.String(id)}))
	must[*kms.PutKeyPolicyOutput](t)(c1.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(adminDecryptPolicy), BypassPolicyLockoutSafetyCheck: true}))
	ec := map[string]string{"purpose": "signer"}
	blob := must[*kms.EncryptOutput](t)(c1.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/persisted"), Plaintext: []byte("survives"), EncryptionContext: ec})).CiphertextBlob

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state directory holds %d entries, want only the state file (no temporary files left)", len(entries))
	}

	// A new server on the same file.
	e2 := start(t, &Server{StatePath: path, Credentials: creds})
	c2 := e2.client("test", "test")
	d := must[*kms.DescribeKeyOutput](t)(c2.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/persisted")}))
	if aws.ToString(d.KeyMetadata.KeyId) != id || aws.ToString(d.KeyMetadata.Description) != "persisted" {
		t.Fatalf("after restart: %+v", d.KeyMetadata)
	}
	dec := must[*kms.DecryptOutput](t)(c2.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec}))
	if string(dec.Plaintext) != "survives" {
		t.Fatalf("after restart decrypted %q", dec.Plaintext)
	}
	gp := must[*kms.GetKeyPolicyOutput](t)(e2.client("AKIAADMIN", "a").GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(id)}))
	if aws.ToString(gp.Policy) != adminDecryptPolicy {
		t.Fatalf("policy after restart:\n%s", aws.ToString(gp.Policy))
	}
	// The restored policy is enforced: GenerateDataKey is denied to dev.
	_, err = c2.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), NumberOfBytes: aws.Int32(4)})
	wantCode(t, err, CodeAccessDenied)
}

func TestLoadStateRejects(t *testing.T) {
	valid := func() map[string]any {
		return map[string]any{"version": 1, "keys": []any{map[string]any{
			"id": "0b7c1d0e-2f3a-4b5c-8d6e-7f8091a2b3c4", "account": "000000000000", "region": "us-east-1",
			"creation_date": "2026-01-01T00:00:00Z", "policy": DefaultKeyPolicy("000000000000"),
			"material": base64.StdEncoding.EncodeToString(make([]byte, 32)),
		}}, "aliases": []any{}}
	}
	key := func(m map[string]any) map[string]any { return m["keys"].([]any)[0].(map[string]any) }
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		want   string
	}{
		{"valid", func(map[string]any) {}, ""},
		{"version", func(m map[string]any) { m["version"] = 2 }, "version 2"},
		{"material", func(m map[string]any) { key(m)["material"] = "AAAA" }, "material is 3 bytes"},
		{"id", func(m map[string]any) { key(m)["id"] = "nope" }, "malformed id"},
		{"policy", func(m map[string]any) { key(m)["policy"] = "{" }, "policy"},
		{"alias", func(m map[string]any) {
			m["aliases"] = []any{map[string]any{"name": "alias/x", "target_key_id": "00000000-0000-4000-8000-000000000000"}}
		}, "unknown target key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			tc.mutate(m)
			b, _ := json.Marshal(m)
			path := filepath.Join(t.TempDir(), "s.json")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			err := (&Server{StatePath: path}).Init()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Init: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Init error:\n got  %v\n want one containing %q", err, tc.want)
			}
			// A bad key's material never appears in the error.
			if strings.Contains(err.Error(), "AAAAAAAAAAAAAAAA") {
				t.Errorf("error leaks material: %v", err)
			}
		})
	}
}

func TestInitCreatesStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.json")
	if err := (&Server{StatePath: path}).Init(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Version != stateVersion {
		t.Fatalf("new state file %q: %v", b, err)
	}
	if err := (&Server{StatePath: filepath.Join(t.TempDir(), "missing-dir", "s.json")}).Init(); err == nil {
		t.Fatal("Init with an unwritable state path succeeded")
	}
}

func TestInitRejectsBadCredentials(t *testing.T) {
	for _, creds := range [][]Credential{
		{{AccessKeyID: "a", SecretAccessKey: "", Principal: devPrincipal}},
		{{AccessKeyID: "a", SecretAccessKey: "s", Principal: "role/dev"}},
		{{AccessKeyID: "a", SecretAccessKey: "s", Principal: "arn:aws:iam::12:role/dev"}},
		{{AccessKeyID: "a", SecretAccessKey: "s", Principal: devPrincipal}, {AccessKeyID: "a", SecretAccessKey: "t", Principal: devPrincipal}},
	} {
		if err := (&Server{Credentials: creds}).Init(); err == nil {
			t.Errorf("Init(%v) succeeded", creds)
		}
	}
}

// TestLogsHoldNoKeyMaterial runs every operation and checks that neither
// key material nor data-key plaintext appears in the logs.
func TestLogsHoldNoKeyMaterial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	e := start(t, &Server{StatePath: path})
	c := e.client("test", "test")
	ctx := t.Context()
	id := *must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	dk := must[*kms.GenerateDataKeyOutput](t)(c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: "AES_256"}))
	must[*kms.DecryptOutput](t)(c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob}))
	_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: map[string]string{"a": "b"}})
	wantCode(t, err, CodeInvalidCiphertext)

	var st state
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &st); err != nil || len(st.Keys) != 1 {
		t.Fatalf("state: %v", err)
	}
	logs := e.logs.String()
	for name, secret := range map[string][]byte{"key material": st.Keys[0].Material, "data key": dk.Plaintext} {
		for _, enc := range []string{string(secret), base64.StdEncoding.EncodeToString(secret), base64.RawStdEncoding.EncodeToString(secret), hexString(secret)} {
			if strings.Contains(logs, enc) {
				t.Errorf("%s appears in the logs", name)
			}
		}
	}
	if bytes.Count([]byte(logs), []byte("\n")) < 4 {
		t.Fatalf("too few log lines to be meaningful:\n%s", logs)
	}
	if got := st.Keys[0].Material.String(); got != "REDACTED" {
		t.Errorf("material.String() = %q", got)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/policy"
)

const (
	polEnclaveRole = "arn:aws:iam::123456789012:role/NitroEnclaveInstanceRole"
	polEncryptRole = "arn:aws:iam::123456789012:role/KeyManagementRole"
	polAdminRole   = "arn:aws:iam::123456789012:role/KMSAdminRole"
	polV1          = "testdata/policy/measurements-v1.json"
	polV2          = "testdata/policy/measurements-v2.json"
	polPCR0v1      = "287b24930a9f0fe14b01a71ecdc00d8be8fad90f9834d547158854b8279c74095c43f8d7f047714e98deb7903f20e3dd"
	polPCR0v2      = "d980c72546e1ef1b507a28a468f1c8924a645df8fb379c7204f2cd28b076d2fef74342bfbcc03271cc3fae78757514aa"
)

func renderArgs(extra ...string) []string {
	return append([]string{"policy", "render", "--measurements", polV1,
		"--enclave-role", polEnclaveRole, "--encrypt-role", polEncryptRole, "--admin-role", polAdminRole}, extra...)
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPolicyRenderGuide(t *testing.T) {
	code, stdout, stderr := signer(t, "", renderArgs()...)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	want, err := os.ReadFile("testdata/policy/guide-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(want) {
		t.Errorf("stdout differs from testdata/policy/guide-policy.json (the guide's policy, placeholders filled):\n got:\n%s\nwant:\n%s", stdout, want)
	}
	if stderr != "" {
		t.Errorf("stderr for a production policy: %q", stderr)
	}
	// Render → check --production passes.
	code, out, errOut := signer(t, "", "policy", "check", "--production", writeTemp(t, "p.json", stdout))
	if code != 0 || strings.Contains(out, "error ") {
		t.Errorf("check --production of the rendered policy: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "0 errors, 2 warnings") {
		t.Errorf("check summary: %q", errOut)
	}
}

func TestPolicyRenderOptions(t *testing.T) {
	pcr1 := "aca6e62ffbf5f7deccac452d7f8cee1b94048faf62afc16c8ab68c9fed8c38010c73a669f9a36e596032f0b973d21895"
	tests := []struct {
		name       string
		args       []string
		stdout     []string // substrings
		notStdout  []string
		stderr     []string
		quietError bool // stderr must be empty
	}{
		{name: "debug", args: renderArgs("--debug"),
			stdout: []string{`"Sid": "AllowDebugEnclaveDecrypt"`, strings.Repeat("0", 96)},
			stderr: []string{"WARNING: DEVELOPMENT ONLY", "!!!!"}},
		{name: "two files after one flag", args: renderArgs(polV2),
			stdout: []string{"\"kms:RecipientAttestation:ImageSha384\": [\n            \"" + polPCR0v1 + "\",\n            \"" + polPCR0v2 + "\"\n          ]"}, quietError: true},
		{name: "repeated flag, flags after", args: append([]string{"policy", "render", "--enclave-role", polEnclaveRole, "--measurements", polV1}, "--encrypt-role", polEncryptRole, "--admin-role", polAdminRole, "--measurements", polV2),
			stdout: []string{polPCR0v1, polPCR0v2}},
		{name: "pins", args: renderArgs("--pcr", "1="+strings.ToUpper(pcr1), "--pcr3-role-arn", polEnclaveRole, "--pcr4-instance-id", "i-1234567890abcdef0"),
			stdout: []string{
				`"kms:RecipientAttestation:PCR1": "` + pcr1 + `"`,
				`"kms:RecipientAttestation:PCR3": "c76ab95fd1aec932b171f7421b7ea3bddd5d245a4a79ccf1209dc047c067b9c09e68a6ab1403cc91c85b5e30ce8176b2"`,
				`"kms:RecipientAttestation:PCR4": "08f996b5d43e047a9eb51e7f548bfee7e164fd7dc8f65541f2ac09d6545ac812719327281c401a67a10fcba87ae79ce0"`,
			}, quietError: true},
		{name: "same image twice", args: renderArgs(polV1), stdout: []string{`"kms:RecipientAttestation:ImageSha384": "` + polPCR0v1 + `"`}, stderr: []string{"signer: warning: PCR0 " + polPCR0v1 + " given twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := signer(t, "", tt.args...)
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			if _, err := policy.Parse([]byte(stdout)); err != nil {
				t.Fatalf("output does not parse: %v", err)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tt.quietError && stderr != "" {
				t.Errorf("stderr: %q", stderr)
			}
		})
	}
}

func TestPolicyRenderErrors(t *testing.T) {
	badPCR0 := writeTemp(t, "bad.json", `{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": "abc"}}`)
	zeroPCR0 := writeTemp(t, "zero.json", `{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": "`+strings.Repeat("0", 96)+`"}}`)
	noArgs := func(drop string) []string {
		var out []string
		args := renderArgs()
		for i := 0; i < len(args); i++ {
			if args[i] == drop {
				i++
				continue
			}
			out = append(out, args[i])
		}
		return out
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no measurements", noArgs("--measurements"), 2, "--measurements FILE is required"},
		{"stray argument", append(noArgs("--measurements"), polV1), 2, `unexpected argument "testdata/policy/measurements-v1.json"`},
		{"no enclave role", noArgs("--enclave-role"), 2, "--enclave-role ARN is required"},
		{"no encrypt role", noArgs("--encrypt-role"), 2, "--encrypt-role ARN is required"},
		{"no admin role", noArgs("--admin-role"), 2, "--admin-role ARN is required"},
		{"encrypt role is the enclave role", append(noArgs("--encrypt-role"), "--encrypt-role", polEnclaveRole), 2, "--encrypt-role is the enclave role " + polEnclaveRole + ": whoever may kms:Encrypt under the key can seal an identity that a signerd pinned to it accepts"},
		{"session ARN", append(noArgs("--enclave-role"), "--enclave-role", "arn:aws:sts::123456789012:assumed-role/R/i-1"), 2, "--enclave-role: \"arn:aws:sts::123456789012:assumed-role/R/i-1\" is an sts session ARN"},
		{"bad PCR3 role", renderArgs("--pcr3-role-arn", "Role"), 2, "--pcr3-role-arn: \"Role\" is not an IAM role ARN"},
		{"bad PCR4 id", renderArgs("--pcr4-instance-id", "i-XYZ"), 2, "--pcr4-instance-id: \"i-XYZ\" is not an EC2 instance id"},
		{"pin without =", renderArgs("--pcr", "1"), 2, `--pcr "1": want N=HEX`},
		{"pin PCR0", renderArgs("--pcr", "0="+polPCR0v1), 2, "PCR0 comes from --measurements"},
		{"pin PCR32", renderArgs("--pcr", "32="+polPCR0v1), 2, `PCR index "32": want a number from 1 to 31`},
		{"pin short", renderArgs("--pcr", "2=abcd"), 2, "PCR value has 4 hex characters, want 96"},
		{"pin twice", renderArgs("--pcr", "2="+polPCR0v1, "--pcr", "2="+polPCR0v2), 2, "--pcr 2 given twice"},
		{"PCR3 twice", renderArgs("--pcr", "3="+polPCR0v1, "--pcr3-role-arn", polEnclaveRole), 1, "PCR3 given both"},
		{"unknown flag", renderArgs("--bogus"), 2, "flag provided but not defined: -bogus"},
		{"missing file", renderArgs("testdata/policy/nope.json"), 1, "nope.json: no such file"},
		{"bad PCR0", renderArgs(badPCR0), 1, `measurements ` + badPCR0 + `: field "Measurements"."PCR0": PCR value has 3 hex characters, want 96`},
		{"zero PCR0", renderArgs(zeroPCR0), 1, "PCR0 is all zeros"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := signer(t, "", tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and stderr containing %q", code, stderr, tt.code, tt.stderr)
			}
			if stdout != "" {
				t.Errorf("stdout on failure: %q", stdout)
			}
		})
	}
}

func TestPolicyCheck(t *testing.T) {
	_, debugPolicy, _ := signer(t, "", renderArgs("--debug")...)
	debugFile := writeTemp(t, "debug.json", debugPolicy)
	defaultFile := writeTemp(t, "default.json", `{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}`)
	instanceFile := writeTemp(t, "instance.json", `{"Statement":[{"Sid":"Plain","Effect":"Allow","Principal":{"AWS":"`+polEnclaveRole+`"},"Action":"kms:Decrypt","Resource":"*"}]}`)
	malformed := writeTemp(t, "bad.json", `{"Statement":[{"Sid":"X","Effect":"allow"}]}`)
	_, rendered, _ := signer(t, "", renderArgs()...)
	encryptByEnclave := writeTemp(t, "enc.json", strings.Replace(rendered, `"Statement": [`, `"Statement": [{"Sid": "AllowEnclaveEncrypt", "Effect": "Allow", "Principal": {"AWS": "`+polEnclaveRole+`"}, "Action": "kms:Encrypt", "Resource": "*"},`, 1))
	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout []string
		stderr string
	}{
		{"debug in production", []string{"policy", "check", "--production", debugFile}, "", 1,
			[]string{"error   AllowDebugEnclaveDecrypt: allows the all-zero kms:RecipientAttestation:ImageSha384 (a debug-mode enclave) (", "warning AllowKeyAdministration: allows kms:CreateGrant (through kms:Create*); kms:PutKeyPolicy (through kms:Put*) ("},
			"1 error, 2 warnings"},
		{"debug in development", []string{"policy", "check", debugFile}, "", 0,
			[]string{"warning AllowDebugEnclaveDecrypt: allows the all-zero"}, "0 errors, 3 warnings"},
		{"flag after the file", []string{"policy", "check", debugFile, "--production"}, "", 1, []string{"error   AllowDebugEnclaveDecrypt"}, ""},
		{"default key policy", []string{"policy", "check", defaultFile}, "", 1,
			[]string{"error   Enable IAM User Permissions: allows kms:Decrypt, kms:GenerateDataKey, kms:GenerateDataKeyPair, kms:GenerateRandom, kms:DeriveSharedSecret, kms:ReEncryptFrom (through kms:*) without requiring a kms:RecipientAttestation condition"}, ""},
		{"decrypt without attestation", []string{"policy", "check", "--production", instanceFile}, "", 1,
			[]string{"error   Plain: allows kms:Decrypt without requiring a kms:RecipientAttestation condition", "warning no statement allows kms:PutKeyPolicy"}, ""},
		{"stdin", []string{"policy", "check", "-"}, debugPolicy, 0, []string{"warning AllowDebugEnclaveDecrypt"}, ""},
		{"encrypt by the enclave role", []string{"policy", "check", "--production", encryptByEnclave}, "", 1,
			[]string{"error   AllowEnclaveEncrypt: allows kms:Encrypt to " + polEnclaveRole + ", the role that decrypts with an attestation document", "fix: grant kms:Encrypt only to a separate sealing role (signer policy render --encrypt-role ARN)"}, ""},
		{"malformed", []string{"policy", "check", malformed}, "", 1, nil, `signer: error: policy check: ` + malformed + `: policy: Statement[0] (Sid "X"): Effect "allow": want "Allow" or "Deny"`},
		{"missing file", []string{"policy", "check", "nope.json"}, "", 1, nil, "nope.json: no such file"},
		{"no file", []string{"policy", "check"}, "", 2, nil, "want exactly one policy FILE"},
		{"two files", []string{"policy", "check", debugFile, defaultFile}, "", 2, nil, "got 2 arguments"},
		{"unknown subcommand", []string{"policy", "nope"}, "", 2, nil, `signer: policy: unknown subcommand "nope": want check, render or update (see signer policy --help)`},
		{"no subcommand", []string{"policy"}, "", 2, nil, "signer: policy: want a subcommand: check, render or update"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := signer(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, stderr)
			}
			// One finding per line.
			for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
				if line != "" && !strings.HasPrefix(line, "error   ") && !strings.HasPrefix(line, "warning ") {
					t.Errorf("stdout line is not a finding: %q", line)
				}
			}
		})
	}
}

func TestPolicyCheckJSON(t *testing.T) {
	_, debugPolicy, _ := signer(t, "", renderArgs("--debug")...)
	code, stdout, stderr := signer(t, debugPolicy, "policy", "check", "--json", "--production", "-")
	if code != 1 {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	var out struct {
		Findings []policy.Finding `json:"findings"`
		Errors   int              `json:"errors"`
		Warnings int              `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if out.Errors != 1 || out.Warnings != 2 || len(out.Findings) != 3 || out.Findings[0].Rule != policy.RuleZeroPCR || out.Findings[0].Sid != "AllowDebugEnclaveDecrypt" || out.Findings[0].Why == "" {
		t.Errorf("JSON findings = %+v", out)
	}
	// Warnings only: exit 0.
	admin := `{"Statement":[{"Sid":"A","Effect":"Allow","Principal":{"AWS":"` + polAdminRole + `"},"Action":"kms:DescribeKey","Resource":"*"}]}`
	code, stdout, _ = signer(t, admin, "policy", "check", "--json", "-")
	if code != 0 || !strings.Contains(stdout, `"rule": "lockout"`) || !strings.Contains(stdout, `"errors": 0,`) {
		t.Errorf("exit %d, JSON: %s", code, stdout)
	}
}

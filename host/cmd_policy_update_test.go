package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/enclave-signer/enclave-signer/internal/kms/kmsemu"
	"github.com/enclave-signer/enclave-signer/internal/policy"
)

const (
	updEnclaveRole = "arn:aws:iam::000000000000:role/enclave"
	updV1          = "testdata/policy/measurements-v1.json"
	updV2          = "testdata/policy/measurements-v2.json"
	updPCR0v1      = "287b24930a9f0fe14b01a71ecdc00d8be8fad90f9834d547158854b8279c74095c43f8d7f047714e98deb7903f20e3dd"
	updPCR0v2      = "d980c72546e1ef1b507a28a468f1c8924a645df8fb379c7204f2cd28b076d2fef74342bfbcc03271cc3fae78757514aa"
	updPCR2v1      = "0315f483ae1220b5e023d8c80ff1e135edcca277e70860c31f3003b36e3b2aaec5d043c9ce3a679e3bbd5b3b93b61d6f"
)

// renderFor renders the test key's policy (see renderTestPolicy) for the
// given images, as signer policy render would.
func renderFor(t *testing.T, pins map[int]string, pcr0s ...string) string {
	t.Helper()
	p, _, err := policy.Render(policy.RenderOptions{
		ImageSha384: pcr0s, EnclaveRole: updEnclaveRole,
		EncryptRole: kmsemu.DefaultCredential.Principal, AdminRole: kmsemu.DefaultCredential.Principal,
		PCRs: pins, Debug: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(p.Marshal())
}

func (k *testKMS) keyPolicy(t *testing.T, keyID string) string {
	t.Helper()
	out, err := k.client("test", "test").GetKeyPolicy(t.Context(), &kms.GetKeyPolicyInput{KeyId: aws.String(keyID), PolicyName: aws.String("default")})
	if err != nil {
		t.Fatalf("GetKeyPolicy: %v", err)
	}
	return aws.ToString(out.Policy)
}

func TestPolicyUpdate(t *testing.T) {
	setAWSTestEnv(t)
	k := newTestKMS(t)
	v1 := renderFor(t, nil, updPCR0v1)
	keyID := k.createKey(t, v1)
	base := []string{"policy", "update", "--key-id", keyID, "--endpoint-url", k.url}

	// Not confirmed: the diff is shown, nothing changes.
	for _, answer := range []string{"", "n\n", "no\n", "yes please\n"} {
		code, stdout, stderr := signer(t, answer, append(base, "--measurements", updV2)...)
		if code != 1 || !strings.Contains(stderr, "nothing was changed") || !strings.Contains(stderr, "put this key policy on "+keyID+"? [y/N]") {
			t.Fatalf("answer %q: exit %d, stderr:\n%s\nwant exit 1, nothing changed", answer, code, stderr)
		}
		wantDiff := fmt.Sprintf("--- key policy of %[1]s (current)\n+++ key policy of %[1]s (updated)\n@@ -12,7 +12,7 @@\n", keyID) +
			"       \"Resource\": \"*\",\n       \"Condition\": {\n         \"StringEqualsIgnoreCase\": {\n" +
			"-          \"kms:RecipientAttestation:ImageSha384\": \"" + updPCR0v1 + "\"\n" +
			"+          \"kms:RecipientAttestation:ImageSha384\": \"" + updPCR0v2 + "\"\n" +
			"         }\n       }\n     },\n"
		if stdout != wantDiff {
			t.Fatalf("answer %q: diff:\n%s\nwant:\n%s", answer, stdout, wantDiff)
		}
		if got := k.keyPolicy(t, keyID); got != v1 {
			t.Fatalf("answer %q: the key policy changed:\n%s", answer, got)
		}
	}

	// --yes: applied; the result is exactly what policy render makes for v2,
	// the debug statement untouched.
	code, stdout, stderr := signer(t, "", append(base, "--measurements", updV2, "--yes")...)
	if code != 0 || !strings.Contains(stdout, "+          \"kms:RecipientAttestation:ImageSha384\": \""+updPCR0v2) {
		t.Fatalf("--yes: exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "updated the key policy of "+keyID+": AllowEnclaveDecrypt now allow PCR0 "+updPCR0v2) ||
		!strings.Contains(stderr, "policy check: warning AllowDebugEnclaveDecrypt") {
		t.Errorf("--yes stderr:\n%s", stderr)
	}
	if got, want := k.keyPolicy(t, keyID), renderFor(t, nil, updPCR0v2); got != want {
		t.Fatalf("policy after --yes:\n%s\nwant:\n%s", got, want)
	}

	// The same again: nothing to do, exit 0, no diff.
	code, stdout, stderr = signer(t, "", append(base, "--measurements", updV2)...)
	if code != 0 || stdout != "" || !strings.Contains(stderr, "already allows exactly PCR0 "+updPCR0v2+": nothing to change") {
		t.Fatalf("no-op update: exit %d, stdout %q\n%s", code, stdout, stderr)
	}

	// Blue-green with --add, confirmed with y on stdin, through an alias.
	if _, err := k.client("test", "test").CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/signer"), TargetKeyId: aws.String(keyID)}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = signer(t, "y\n", "policy", "update", "--key-id", "alias/signer", "--endpoint-url", k.url, "--add", "--measurements", updV1)
	if code != 0 {
		t.Fatalf("--add with y: exit %d\n%s", code, stderr)
	}
	if got, want := k.keyPolicy(t, keyID), renderFor(t, nil, updPCR0v2, updPCR0v1); got != want {
		t.Fatalf("policy after --add:\n%s\nwant:\n%s", got, want)
	}

	// Several files replace the list (order of the files); then one file
	// ends the rollout.
	code, _, stderr = signer(t, "Y\n", append(base, "--measurements", updV1, updV2)...)
	if code != 0 {
		t.Fatalf("two files: exit %d\n%s", code, stderr)
	}
	if got, want := k.keyPolicy(t, keyID), renderFor(t, nil, updPCR0v1, updPCR0v2); got != want {
		t.Fatalf("policy after two files:\n%s\nwant:\n%s", got, want)
	}
	code, stdout, stderr = signer(t, "", append(base, "--measurements", updV2, "--yes")...)
	if code != 0 || !strings.Contains(stdout, "-            \""+updPCR0v1+"\",\n") {
		t.Fatalf("back to one: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got, want := k.keyPolicy(t, keyID), renderFor(t, nil, updPCR0v2); got != want {
		t.Fatalf("policy after the rollout:\n%s\nwant:\n%s", got, want)
	}
}

func TestPolicyUpdateRefusals(t *testing.T) {
	setAWSTestEnv(t)
	k := newTestKMS(t, kmsemu.DefaultCredential,
		kmsemu.Credential{AccessKeyID: "AKIAOPS", SecretAccessKey: "opssecret", Principal: "arn:aws:sts::000000000000:assumed-role/ops/alice"})

	t.Run("default key policy has no enclave statement", func(t *testing.T) {
		keyID := k.createKey(t, "")
		code, stdout, stderr := signer(t, "", "policy", "update", "--key-id", keyID, "--endpoint-url", k.url, "--measurements", updV2, "--yes")
		if code != 1 || stdout != "" || !strings.Contains(stderr, "no statement of the key policy pins kms:RecipientAttestation:ImageSha384") || !strings.Contains(stderr, "hint: render a policy") {
			t.Fatalf("exit %d, stdout %q\n%s", code, stdout, stderr)
		}
	})
	t.Run("only the debug statement", func(t *testing.T) {
		p, err := policy.Parse([]byte(renderFor(t, nil, updPCR0v1)))
		if err != nil {
			t.Fatal(err)
		}
		p.Statements = slices.DeleteFunc(p.Statements, func(s *policy.Statement) bool { return s.Sid == policy.SidEnclaveDecrypt })
		keyID := k.createKey(t, string(p.Marshal()))
		code, _, stderr := signer(t, "", "policy", "update", "--key-id", keyID, "--endpoint-url", k.url, "--measurements", updV2, "--yes")
		if code != 1 || !strings.Contains(stderr, "only the all-zero debug value") {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
	})
	t.Run("not an administrator", func(t *testing.T) {
		keyID := k.createKey(t, renderFor(t, nil, updPCR0v1))
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIAOPS")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "opssecret")
		code, _, stderr := signer(t, "", "policy", "update", "--key-id", keyID, "--endpoint-url", k.url, "--measurements", updV2, "--yes")
		if code != 1 || !strings.Contains(stderr, "arn:aws:sts::000000000000:assumed-role/ops/alice may not call kms:GetKeyPolicy") ||
			!strings.Contains(stderr, "AllowKeyAdministration statement (signer policy render --admin-role) must name arn:aws:iam::000000000000:role/ops") {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
	})
	t.Run("errors already there are shown, not blocking", func(t *testing.T) {
		p, err := policy.Parse([]byte(renderFor(t, nil, updPCR0v1)))
		if err != nil {
			t.Fatal(err)
		}
		p.Statements = append(p.Statements, &policy.Statement{Sid: "Oops", Effect: policy.Allow,
			Principal: &policy.Principal{Entries: []policy.PrincipalEntry{{Type: "AWS", Values: policy.One(kmsemu.DefaultCredential.Principal)}}},
			Action:    policy.One("kms:Decrypt"), Resource: policy.One("*")})
		keyID := k.createKey(t, string(p.Marshal()))
		code, _, stderr := signer(t, "", "policy", "update", "--key-id", keyID, "--endpoint-url", k.url, "--measurements", updV2, "--yes")
		if code != 0 || !strings.Contains(stderr, "policy check: error   Oops: allows kms:Decrypt without requiring") || !strings.Contains(stderr, "the current key policy already has the errors above") {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
	})
	t.Run("pinned PCR2 warns", func(t *testing.T) {
		keyID := k.createKey(t, renderFor(t, map[int]string{2: updPCR2v1}, updPCR0v1))
		code, _, stderr := signer(t, "", "policy", "update", "--key-id", keyID, "--endpoint-url", k.url, "--measurements", updV2)
		if code != 1 || !strings.Contains(stderr, "warning: AllowEnclaveDecrypt also pins PCR2 to "+updPCR2v1+", but the image with PCR0 "+updPCR0v2+" has PCR2 3fc769c5") {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
	})
}

func TestPolicyUpdateUsage(t *testing.T) {
	zero := filepath.Join(t.TempDir(), "zero.json")
	if err := os.WriteFile(zero, []byte(`{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": "`+policy.ZeroPCR+`"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--measurements", updV2}, "--key-id is required"},
		{[]string{"--key-id", "k"}, "--measurements FILE is required"},
		{[]string{"--key-id", "k", updV2}, `unexpected argument "testdata/policy/measurements-v2.json"`},
		{[]string{"--key-id", "k", "--measurements", zero}, "a PCR0 of all zeros is what debug-mode enclaves present"},
		{[]string{"--key-id", "k", "--measurements", updV2, "--endpoint-url", "nope"}, "--endpoint-url: want http://HOST[:PORT]"},
	} {
		code, stdout, stderr := signer(t, "", append([]string{"policy", "update"}, tc.args...)...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("policy update %q: exit %d, stdout %q, stderr:\n%s\nwant exit 2 with %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

func TestUpdateImageSha384Statements(t *testing.T) {
	doc := `{"Version": "2012-10-17", "Statement": [
	  {"Sid": "Mixed", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/e"}, "Action": "kms:Decrypt", "Resource": "*",
	   "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": ["` + policy.ZeroPCR + `", "` + updPCR0v1 + `"]}}},
	  {"Sid": "DenyOthers", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
	   "Condition": {"StringNotEqualsIgnoreCase": {"kms:recipientattestation:imagesha384": "` + updPCR0v1 + `"}}},
	  {"Sid": "Like", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/e"}, "Action": "kms:Decrypt", "Resource": "*",
	   "Condition": {"StringLike": {"kms:RecipientAttestation:ImageSha384": "287b*"}}},
	  {"Sid": "Revoked", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
	   "Condition": {"StringEquals": {"kms:RecipientAttestation:ImageSha384": "` + strings.Repeat("ee", 48) + `"}}}
	]}`
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	before := string(p.Marshal())
	upd, res, err := updateImageSha384(p, []string{updPCR0v2}, false)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Marshal()) != before {
		t.Fatal("updateImageSha384 modified its input")
	}
	if !slices.Equal(res.updated, []string{"Mixed", "DenyOthers"}) {
		t.Errorf("updated %q, want Mixed and DenyOthers", res.updated)
	}
	if len(res.skipped) != 2 || !strings.Contains(res.skipped[0], "Like: left its StringLike condition") || !strings.Contains(res.skipped[1], "Revoked: left its StringEquals condition") {
		t.Errorf("skipped:\n%s", strings.Join(res.skipped, "\n"))
	}
	vals := func(i int) []string { return upd.Statements[i].Condition[0].Keys[0].Values.List }
	if got := vals(0); !slices.Equal(got, []string{policy.ZeroPCR, updPCR0v2}) {
		t.Errorf("Mixed: %q, want the zero value kept and v2", got)
	}
	if got := vals(1); !slices.Equal(got, []string{updPCR0v2}) || !upd.Statements[1].Condition[0].Keys[0].Values.Single {
		t.Errorf("DenyOthers: %q, want v2 as a single string", got)
	}
	if got := vals(2); !slices.Equal(got, []string{"287b*"}) {
		t.Errorf("Like changed: %q", got)
	}
	upd, _, err = updateImageSha384(p, []string{updPCR0v2, strings.ToUpper(updPCR0v1)}, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := vals(0); !slices.Equal(got, []string{policy.ZeroPCR, updPCR0v1, updPCR0v2}) {
		t.Errorf("--add: %q, want zero, v1, v2 (v1 not repeated in another case)", got)
	}
}

func TestUnifiedDiff(t *testing.T) {
	a := strings.Split("a b c d e f g h i j k l m", " ")
	b := strings.Split("a b X d e f g h i j k l m n", " ")
	want := "--- old\n+++ new\n@@ -1,6 +1,6 @@\n a\n b\n-c\n+X\n d\n e\n f\n@@ -11,3 +11,4 @@\n k\n l\n m\n+n\n"
	if got := unifiedDiff("old", "new", a, b, 3); got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}
	if got := unifiedDiff("old", "new", a, a, 3); got != "" {
		t.Errorf("diff of equal inputs: %q", got)
	}
	if got, want := unifiedDiff("o", "n", nil, []string{"x"}, 3), "--- o\n+++ n\n@@ -0,0 +1,1 @@\n+x\n"; got != want {
		t.Errorf("diff from empty:\n%q\nwant\n%q", got, want)
	}

	// Property: the hunks applied to a give b, for random edits.
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		a := randomLines(r, r.IntN(30))
		b := slices.Clone(a)
		for range r.IntN(6) {
			switch i := r.IntN(len(b) + 1); r.IntN(3) {
			case 0:
				b = slices.Insert(b, i, "new"+strconv.Itoa(r.IntN(5)))
			case 1:
				if i < len(b) {
					b = slices.Delete(b, i, i+1)
				}
			default:
				if i < len(b) {
					b[i] = "changed" + strconv.Itoa(r.IntN(5))
				}
			}
		}
		d := unifiedDiff("a", "b", a, b, r.IntN(4))
		got, err := applyUnified(a, d)
		if err != nil || !slices.Equal(got, b) {
			t.Fatalf("case %d: patch(a, diff) = %q, %v\n want %q\na = %q\ndiff:\n%s", n, got, err, b, a, d)
		}
	}
}

func randomLines(r *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "line" + strconv.Itoa(r.IntN(8))
	}
	return out
}

// applyUnified applies a unified diff to a, checking every context and
// removed line and every hunk header's counts.
func applyUnified(a []string, diff string) ([]string, error) {
	if diff == "" {
		return slices.Clone(a), nil
	}
	lines := strings.Split(strings.TrimSuffix(diff, "\n"), "\n")[2:]
	var out []string
	pos := 0 // next line of a to copy
	for i := 0; i < len(lines); {
		var as, al, bs, bl int
		if _, err := fmt.Sscanf(lines[i], "@@ -%d,%d +%d,%d @@", &as, &al, &bs, &bl); err != nil {
			return nil, fmt.Errorf("hunk header %q: %v", lines[i], err)
		}
		i++
		start := as - 1
		if al == 0 {
			start = as
		}
		if start < pos {
			return nil, fmt.Errorf("hunk at %d overlaps", as)
		}
		out = append(out, a[pos:start]...)
		if bl > 0 && bs != len(out)+1 || bl == 0 && bs != len(out) {
			return nil, fmt.Errorf("hunk +%d: output is at line %d", bs, len(out)+1)
		}
		pos = start
		gotA, gotB := 0, 0
		for ; i < len(lines) && !strings.HasPrefix(lines[i], "@@"); i++ {
			kind, text := lines[i][0], lines[i][1:]
			switch kind {
			case ' ', '-':
				if pos >= len(a) || a[pos] != text {
					return nil, fmt.Errorf("line %d: want %q", pos+1, text)
				}
				pos++
				gotA++
				if kind == ' ' {
					out = append(out, text)
					gotB++
				}
			case '+':
				out = append(out, text)
				gotB++
			}
		}
		if gotA != al || gotB != bl {
			return nil, fmt.Errorf("hunk -%d,%d +%d,%d has %d and %d lines", as, al, bs, bl, gotA, gotB)
		}
	}
	return append(out, a[pos:]...), nil
}

// TestPolicyUpdatePinWarnings: policy update warns when the policy it
// writes lets an image unseal that may not pin its KMS key: a new image
// whose measurements record no pins or empty ones, one pinned to other
// keys, and a PCR0 kept from before (--add), whose pins it cannot know.
// An image pinned to this key, replacing the old one, draws no warning.
func TestPolicyUpdatePinWarnings(t *testing.T) {
	setAWSTestEnv(t)
	k := newTestKMS(t)
	keyID := k.createKey(t, renderFor(t, nil, updPCR0v1))
	keyARN := "arn:aws:kms:us-east-1:000000000000:key/" + keyID
	v2 := string(readTestdata(t, "measurements-v2-describe-eif.json"))
	withPins := func(pins string) string {
		i := strings.LastIndex(v2, "}")
		return writeTemp(t, "m.json", v2[:i]+`, "ImageID": "sha256:00", "Pins": `+pins+"}\n")
	}
	const unknown = "whose pins signer does not know"
	for _, tc := range []struct {
		name     string
		args     []string
		want     []string
		wantNone bool
	}{
		{"pinned to this key", []string{withPins(`{"KMSKeys": ["` + keyARN + `"], "KeyringSigners": []}`)}, nil, true},
		{"pinned, old image kept", []string{withPins(`{"KMSKeys": ["` + keyARN + `"], "KeyringSigners": []}`)},
			[]string{"the policy keeps allowing PCR0 " + updPCR0v1 + ", an image " + unknown + " (not among --measurements): if it is unpinned (built before pinning, or without KMS_KEYS), an unpinned image accepts an identity sealed under any KMS key, so it can unseal and sign with keys of the host's choosing"}, false},
		{"no pins recorded", []string{updV2}, []string{updV2 + " (PCR0 " + updPCR0v2 + ") does not record the image's pins", "keys of the host's choosing"}, false},
		{"unpinned image", []string{withPins(`{"KMSKeys": [], "KeyringSigners": []}`)}, []string{"pins no KMS key: an unpinned image accepts", "make image KMS_KEYS="}, false},
		{"pinned to another key", []string{withPins(`{"KMSKeys": ["arn:aws:kms:us-east-1:000000000000:key/00000000-0000-4000-8000-000000000000"], "KeyringSigners": []}`)},
			[]string{"but not " + keyID + ", whose policy this is: it will refuse an identity sealed under this key"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"policy", "update", "--key-id", keyID, "--endpoint-url", k.url}
			if strings.Contains(tc.name, "kept") {
				args = append(args, "--add")
			}
			args = append(append(args, "--measurements"), tc.args...)
			_, _, stderr := signer(t, "n\n", args...)
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if tc.wantNone && (strings.Contains(stderr, "pins") || strings.Contains(stderr, unknown)) {
				t.Errorf("a warning about pins for an image pinned to this key:\n%s", stderr)
			}
		})
	}
}

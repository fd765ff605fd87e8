package policy

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const (
	account     = "123456789012"
	enclaveRole = "arn:aws:iam::123456789012:role/NitroEnclaveInstanceRole"
	encryptRole = "arn:aws:iam::123456789012:role/KeyManagementRole"
	adminRole   = "arn:aws:iam::123456789012:role/KMSAdminRole"
	// The guide's example measurements.
	guidePCR0 = "287b24930a9f0fe14b01a71ecdc00d8be8fad90f9834d547158854b8279c74095c43f8d7f047714e98deb7903f20e3dd"
	guidePCR1 = "aca6e62ffbf5f7deccac452d7f8cee1b94048faf62afc16c8ab68c9fed8c38010c73a669f9a36e596032f0b973d21895"
	guidePCR2 = "0315f483ae1220b5e023d8c80ff1e135edcca277e70860c31f3003b36e3b2aaec5d043c9ce3a679e3bbd5b3b93b61d6f"
	// PCR0 of testdata/measurements-v2-describe-eif.json.
	v2PCR0 = "d980c72546e1ef1b507a28a468f1c8924a645df8fb379c7204f2cd28b076d2fef74342bfbcc03271cc3fae78757514aa"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// guide returns a JSON block of the operator guide with its placeholders
// filled for the test account, roles and measurements.
func guide(t testing.TB, name string) []byte {
	t.Helper()
	r := strings.NewReplacer(
		"ACCOUNT_ID", account,
		"YOUR_PCR0_VALUE_HERE", guidePCR0,
		"YOUR_PCR0_VALUE", guidePCR0,
		// The guide computes PCR3 as a bare sha384sum of the ARN, which no
		// enclave presents; the right value is pcr.RoleARN's.
		"YOUR_PCR3_VALUE", hex.EncodeToString(pcr.RoleARN(enclaveRole)),
		"PCR0_VALUE_VERSION_1", guidePCR0,
		"PCR0_VALUE_VERSION_2", v2PCR0,
	)
	return []byte(r.Replace(string(readFile(t, "zh-guide/"+name))))
}

func measurementsPCR0(t testing.TB, files ...string) []string {
	t.Helper()
	var out []string
	for _, f := range files {
		m, err := ParseMeasurements(f, readFile(t, f))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.PCRs[0])
	}
	return out
}

func baseOptions(t testing.TB) RenderOptions {
	return RenderOptions{
		ImageSha384: measurementsPCR0(t, "measurements-v1.json"),
		EnclaveRole: enclaveRole,
		EncryptRole: encryptRole,
		AdminRole:   adminRole,
	}
}

func mustRender(t testing.TB, o RenderOptions) (*Policy, []string) {
	t.Helper()
	p, warnings, err := Render(o)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return p, warnings
}

// semantic decodes JSON into generic values for a comparison that ignores
// layout and key order.
func semantic(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, b)
	}
	return v
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendered policy (run with -update to accept):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// statement returns the statement with the given Sid, as JSON.
func statementJSON(t testing.TB, p *Policy, sid string) []byte {
	t.Helper()
	for _, s := range p.Statements {
		if s.Sid == sid {
			var b bytes.Buffer
			writeJSON(&b, s.tree(), 0)
			return b.Bytes()
		}
	}
	t.Fatalf("no statement %q", sid)
	return nil
}

func TestRenderGoldenGuide(t *testing.T) {
	p, warnings := mustRender(t, baseOptions(t))
	got := p.Marshal()
	if !reflect.DeepEqual(semantic(t, got), semantic(t, guide(t, "policy.json"))) {
		t.Errorf("rendered policy differs from the guide's:\n got:\n%s\nwant:\n%s", got, guide(t, "policy.json"))
	}
	// Same layout as the guide, byte for byte.
	if !bytes.Equal(got, guide(t, "policy.json")) {
		t.Errorf("rendered policy is laid out differently from the guide's:\n got:\n%s\nwant:\n%s", got, guide(t, "policy.json"))
	}
	checkGolden(t, "guide-policy.json", got)
	if len(warnings) != 0 {
		t.Errorf("warnings for a plain policy: %q", warnings)
	}
}

func TestRenderGoldenDebug(t *testing.T) {
	o := baseOptions(t)
	o.Debug = true
	p, warnings := mustRender(t, o)
	got := statementJSON(t, p, SidDebugEnclaveDecrypt)
	if want := guide(t, "debug-statement.json"); !reflect.DeepEqual(semantic(t, got), semantic(t, want)) {
		t.Errorf("debug statement differs from the guide's:\n got:\n%s\nwant:\n%s", got, want)
	}
	checkGolden(t, "guide-policy-debug.json", p.Marshal())
	if len(warnings) != 1 || !strings.Contains(warnings[0], "DEVELOPMENT ONLY") {
		t.Errorf("warnings = %q, want one DEVELOPMENT ONLY warning", warnings)
	}
	// The rest of the policy is the guide's.
	if n := len(p.Statements); n != 5 || p.Statements[1].Sid != SidDebugEnclaveDecrypt {
		t.Errorf("debug policy has %d statements, debug second? %v", n, p.Statements[1].Sid)
	}
}

func TestRenderGoldenMultiVersion(t *testing.T) {
	o := baseOptions(t)
	o.ImageSha384 = measurementsPCR0(t, "measurements-v1.json", "measurements-v2-describe-eif.json")
	p, _ := mustRender(t, o)
	got := statementJSON(t, p, SidEnclaveDecrypt)
	// The guide names this statement AllowMultipleEnclaveVersions; Render
	// keeps one Sid so that updates find the statement.
	want := bytes.Replace(guide(t, "multi-version-statement.json"), []byte("AllowMultipleEnclaveVersions"), []byte(SidEnclaveDecrypt), 1)
	if !reflect.DeepEqual(semantic(t, got), semantic(t, want)) {
		t.Errorf("multi-version statement differs from the guide's:\n got:\n%s\nwant:\n%s", got, want)
	}
	checkGolden(t, "guide-policy-multi.json", p.Marshal())
}

func TestRenderGoldenPCR3(t *testing.T) {
	o := baseOptions(t)
	o.PCR3RoleARN = enclaveRole
	p, warnings := mustRender(t, o)
	got := statementJSON(t, p, SidEnclaveDecrypt)
	want := bytes.Replace(guide(t, "pcr3-statement.json"), []byte("AllowEnclaveDecryptWithRoleCheck"), []byte(SidEnclaveDecrypt), 1)
	if !reflect.DeepEqual(semantic(t, got), semantic(t, want)) {
		t.Errorf("PCR0+PCR3 statement differs from the guide's:\n got:\n%s\nwant:\n%s", got, want)
	}
	bare := sha512.Sum384([]byte(enclaveRole)) // the guide's wrong recipe
	if !bytes.Contains(got, []byte(hex.EncodeToString(pcr.RoleARN(enclaveRole)))) || bytes.Contains(got, []byte(hex.EncodeToString(bare[:]))) {
		t.Errorf("PCR3 is not pcr.RoleARN of the role:\n%s", got)
	}
	checkGolden(t, "guide-policy-pcr3.json", p.Marshal())
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
}

func TestRenderPins(t *testing.T) {
	o := baseOptions(t)
	o.PCRs = map[int]string{2: strings.ToUpper(guidePCR2), 1: guidePCR1, 16: strings.Repeat("ab", 48)}
	o.PCR4InstanceID = "i-1234567890abcdef0"
	o.Debug = true
	p, _ := mustRender(t, o)
	var keys []string
	for _, k := range p.Statements[0].Condition[0].Keys {
		keys = append(keys, k.Key+"="+k.Values.List[0][:8])
	}
	want := []string{
		"kms:RecipientAttestation:ImageSha384=287b2493",
		"kms:RecipientAttestation:PCR1=aca6e62f",
		"kms:RecipientAttestation:PCR2=0315f483", // lowercased
		"kms:RecipientAttestation:PCR4=08f996b5", // the UG's PCR4 vector
		"kms:RecipientAttestation:PCR16=abababab",
	}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("condition keys:\n got %q\nwant %q", keys, want)
	}
	// Debug mode zeroes PCR1, 2 and 8, not PCR4 or application PCRs.
	keys = nil
	for _, k := range p.Statements[1].Condition[0].Keys {
		keys = append(keys, k.Key)
	}
	if want := []string{KeyImageSha384, KeyPCR(4), KeyPCR(16)}; !reflect.DeepEqual(keys, want) {
		t.Errorf("debug statement keys:\n got %q\nwant %q", keys, want)
	}
}

func TestRenderErrors(t *testing.T) {
	short := guidePCR0[:64]
	tests := []struct {
		name   string
		modify func(*RenderOptions)
		want   string
	}{
		{"no PCR0", func(o *RenderOptions) { o.ImageSha384 = nil }, "no PCR0"},
		{"short PCR0", func(o *RenderOptions) { o.ImageSha384 = []string{short} }, "PCR0 #1: PCR value has 64 hex characters, want 96"},
		{"non-hex PCR0", func(o *RenderOptions) { o.ImageSha384 = []string{strings.Repeat("zz", 48)} }, "not hex"},
		{"zero PCR0", func(o *RenderOptions) { o.ImageSha384 = []string{ZeroPCR} }, "all zeros"},
		{"no enclave role", func(o *RenderOptions) { o.EnclaveRole = "" }, "no enclave role ARN"},
		{"session ARN", func(o *RenderOptions) { o.EnclaveRole = "arn:aws:sts::123456789012:assumed-role/R/i-1" }, "enclave role: \"arn:aws:sts::123456789012:assumed-role/R/i-1\" is an sts session ARN"},
		{"bad admin", func(o *RenderOptions) { o.AdminRole = "KMSAdminRole" }, "admin role: \"KMSAdminRole\" is not an IAM role ARN"},
		{"bad encrypt", func(o *RenderOptions) { o.EncryptRole = "arn:aws:iam::1:user/x" }, "encrypt role"},
		{"PCR0 pin", func(o *RenderOptions) { o.PCRs = map[int]string{0: guidePCR0} }, "PCR0 is pinned through the measurements"},
		{"PCR32", func(o *RenderOptions) { o.PCRs = map[int]string{32: guidePCR0} }, "PCR32: want a PCR index from 1 to 31"},
		{"bad pin", func(o *RenderOptions) { o.PCRs = map[int]string{1: "0x" + guidePCR1[2:]} }, "PCR1: PCR value is not hex"},
		{"PCR3 twice", func(o *RenderOptions) { o.PCRs = map[int]string{3: guidePCR1}; o.PCR3RoleARN = enclaveRole }, "PCR3 given both"},
		{"PCR3 bad role", func(o *RenderOptions) { o.PCR3RoleARN = "arn:aws:iam::1:instance-profile/x" }, "PCR3 role: \"arn:aws:iam::1:instance-profile/x\" is an instance profile ARN"},
		{"PCR4 bad id", func(o *RenderOptions) { o.PCR4InstanceID = "i-XYZ" }, "PCR4: \"i-XYZ\" is not an EC2 instance id"},
		{"PCR4 twice", func(o *RenderOptions) { o.PCRs = map[int]string{4: guidePCR1}; o.PCR4InstanceID = "i-12345678" }, "PCR4 given both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := baseOptions(t)
			tt.modify(&o)
			p, _, err := Render(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Render error:\n got %v\nwant containing %q", err, tt.want)
			}
			if p != nil {
				t.Error("Render returned a policy with an error")
			}
		})
	}
}

func TestRenderWarnings(t *testing.T) {
	o := baseOptions(t)
	o.ImageSha384 = []string{guidePCR0, strings.ToUpper(guidePCR0)}
	o.PCR3RoleARN = "arn:aws:iam::123456789012:role/Other"
	p, warnings := mustRender(t, o)
	if len(warnings) != 2 || !strings.Contains(warnings[0], "given twice") || !strings.Contains(warnings[1], "differs from the enclave role") {
		t.Errorf("warnings = %q", warnings)
	}
	if v := p.Statements[0].Condition[0].Keys[0].Values; !v.Single || v.List[0] != guidePCR0 {
		t.Errorf("duplicate PCR0 not collapsed to one string: %+v", v)
	}
}

func TestParseMeasurements(t *testing.T) {
	m, err := ParseMeasurements("v1", readFile(t, "measurements-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.PCRs[0] != guidePCR0 || m.PCRs[1] != guidePCR1 || m.PCRs[2] != guidePCR2 || len(m.PCRs) != 3 || m.HashAlgorithm != "Sha384 { ... }" {
		t.Errorf("v1 measurements = %+v", m)
	}
	m, err = ParseMeasurements("v2", readFile(t, "measurements-v2-describe-eif.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.PCRs[0] != v2PCR0 || len(m.PCRs) != 4 || m.PCRs[8] == "" {
		t.Errorf("describe-eif measurements = %+v", m)
	}
	// build-enclave's progress lines captured along with stdout.
	withProgress := append([]byte("Start building the Enclave Image...\nEnclave Image successfully created.\n"), readFile(t, "measurements-v1.json")...)
	if m, err := ParseMeasurements("log", withProgress); err != nil || m.PCRs[0] != guidePCR0 {
		t.Errorf("with progress lines: %v, %+v", err, m)
	}
	if m.Pins != nil || m.ImageID != "" {
		t.Errorf("nitro-cli's output records pins: %+v", m)
	}
	// What make eif writes: nitro-cli's output with the image's pins.
	const key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	pinned := `{"Measurements": {"PCR0": "` + guidePCR0 + `"}, "ImageID": "sha256:ab", "Pins": {"KMSKeys": ["` + key + `"], "KeyringSigners": []}}`
	if m, err := ParseMeasurements("pinned", []byte(pinned)); err != nil || m.ImageID != "sha256:ab" || m.Pins == nil || !slices.Equal(m.Pins.KMSKeys, []string{key}) || !m.Pins.Pinned() {
		t.Errorf("with pins: %v, %+v", err, m)
	}
	unpinned := `{"Measurements": {"PCR0": "` + guidePCR0 + `"}, "Pins": {}}`
	if m, err := ParseMeasurements("unpinned", []byte(unpinned)); err != nil || m.Pins == nil || m.Pins.Pinned() || m.Pins.KMSKeys == nil {
		t.Errorf("with empty pins: %v, %+v", err, m)
	}
	upper := bytes.Replace(readFile(t, "measurements-v1.json"), []byte(guidePCR0), []byte(strings.ToUpper(guidePCR0)), 1)
	if m, err := ParseMeasurements("upper", upper); err != nil || m.PCRs[0] != guidePCR0 {
		t.Errorf("uppercase PCR0 not lowercased: %v, %+v", err, m)
	}

	bad := []struct{ name, doc, want string }{
		{"empty", "", "measurements f.json: no JSON object"},
		{"not json", "{", "measurements f.json: unexpected end of JSON"},
		{"array", `[{"Measurements": {}}]`, "describe-enclaves"},
		{"no measurements", `{"PCR0": "` + guidePCR0 + `"}`, `no "Measurements" field`},
		{"measurements string", `{"Measurements": "x"}`, `field "Measurements" is a string, want an object`},
		{"no PCR0", `{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR1": "` + guidePCR1 + `"}}`, `no field "Measurements"."PCR0"`},
		{"short PCR0", `{"Measurements": {"PCR0": "` + guidePCR0[:95] + `"}}`, `field "Measurements"."PCR0": PCR value has 95 hex characters, want 96`},
		{"bad PCR2", `{"Measurements": {"PCR0": "` + guidePCR0 + `", "PCR2": "` + strings.Repeat("g", 96) + `"}}`, `field "Measurements"."PCR2": PCR value is not hex`},
		{"number PCR0", `{"Measurements": {"PCR0": 1}}`, `field "Measurements"."PCR0" is a number, want 96 hex characters`},
		{"sha512", `{"Measurements": {"HashAlgorithm": "Sha512 { ... }", "PCR0": "` + guidePCR0 + `"}}`, `field "Measurements"."HashAlgorithm" is "Sha512 { ... }", want Sha384`},
		{"pins not an object", `{"Measurements": {"PCR0": "` + guidePCR0 + `"}, "Pins": ["x"]}`, `field "Pins" or "ImageID"`},
		{"duplicate PCR0", `{"Measurements": {"PCR0": "` + guidePCR0 + `", "PCR0": "` + v2PCR0 + `"}}`, `duplicate key "PCR0"`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMeasurements("f.json", []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error:\n got %v\nwant containing %q", err, tt.want)
			}
			if m != nil {
				t.Error("measurements returned with an error")
			}
		})
	}
}

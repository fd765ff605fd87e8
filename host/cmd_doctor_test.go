package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/enclave-signer/enclave-signer/internal/doctor"
	"github.com/enclave-signer/enclave-signer/internal/kms/kmsemu"
	"github.com/enclave-signer/enclave-signer/internal/policy"
)

// The recorded outputs live with the package that parses them.
const doctorFixtures = "../internal/doctor/testdata"

func doctorFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(doctorFixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type doctorRunner struct{ out []byte }

func (r doctorRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	if name != "nitro-cli" || strings.Join(args, " ") != "describe-enclaves" {
		return nil, os.ErrInvalid
	}
	return r.out, nil
}

// loopback serves h on 127.0.0.1 for the test's duration.
func loopback(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("not on loopback: %s", srv.URL)
	}
	return srv.URL
}

// doctorIMDS is an IMDSv2 stand-in serving the recorded answers.
func doctorIMDS(t *testing.T) string {
	const token = "doctor-host-test-token"
	return loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/latest/api/token" && r.Method == http.MethodPut && r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") != "" {
			w.Write([]byte(token))
			return
		}
		if r.Header.Get("X-aws-ec2-metadata-token") != token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		files := map[string]string{
			"/latest/meta-data/iam/security-credentials/":                         "imds/security-credentials.txt",
			"/latest/meta-data/iam/security-credentials/NitroEnclaveInstanceRole": "imds/credentials.json",
			"/latest/meta-data/iam/info":                                          "imds/iam-info.json",
			"/latest/dynamic/instance-identity/document":                          "imds/instance-identity.json",
		}
		f, ok := files[r.URL.Path]
		if !ok {
			t.Errorf("IMDS: unexpected %s", r.URL.Path)
			http.NotFound(w, r)
			return
		}
		w.Write(doctorFixture(t, f))
	}))
}

// doctorShim answers like a ready shim with the given status fixture.
func doctorShim(t *testing.T, statusFixture string) string {
	return loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz":
		case "/v1/status":
			w.Write(doctorFixture(t, "shim/"+statusFixture))
		default:
			http.NotFound(w, r)
		}
	}))
}

// setDoctorSeams replaces the seams for one test: recorded nitro-cli
// output, a /proc with the systemd unit's vsock-proxy, and its allowlist.
// HTTP goes to loopback servers only, by the URLs the test passes.
func setDoctorSeams(t *testing.T, describe string) *int {
	old := doctorSeams
	t.Cleanup(func() { doctorSeams = old })
	kmsCalls := new(int)
	doctorSeams.runner = doctorRunner{doctorFixture(t, "nitro-cli/"+describe)}
	doctorSeams.procFS = fstest.MapFS{"812/cmdline": {Data: doctorFixture(t, "cmdline/systemd-unit.cmdline")}}
	doctorSeams.rootFS = fstest.MapFS{"etc/nitro_enclaves/vsock-proxy.yaml": {Data: doctorFixture(t, "allowlist/default-style.yaml")}}
	doctorSeams.http = &http.Client{Timeout: 5 * time.Second}
	doctorSeams.now = func() time.Time { return time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC) }
	realKMS := doctorSeams.newKMS
	doctorSeams.newKMS = func(ctx context.Context, e *env, o kmsTarget) (doctor.PolicyGetter, error) {
		*kmsCalls++
		if o.endpointURL == "" || !strings.HasPrefix(o.endpointURL, "http://127.0.0.1:") {
			t.Fatalf("KMS client for %q: tests use the loopback emulator only", o.endpointURL)
		}
		return realKMS(ctx, e, o)
	}
	// The SDK reads these from the process environment.
	dir := t.TempDir()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_KMS", "")
	return kmsCalls
}

// emulatedKey starts the KMS emulator on loopback and creates a key whose
// policy is the guide's for pcr0s (admin: the emulator's test principal).
func emulatedKey(t *testing.T, debug bool, pcr0s ...string) (endpoint, keyID string) {
	t.Helper()
	endpoint = loopback(t, &kmsemu.Server{})
	p, _, err := policy.Render(policy.RenderOptions{
		ImageSha384: pcr0s,
		EnclaveRole: "arn:aws:iam::123456789012:role/NitroEnclaveInstanceRole",
		EncryptRole: kmsemu.DefaultCredential.Principal,
		AdminRole:   kmsemu.DefaultCredential.Principal,
		Debug:       debug,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := kms.New(kms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("test", "test", "")),
	})
	out, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{Policy: aws.String(string(p.Marshal()))})
	if err != nil {
		t.Fatal(err)
	}
	return endpoint, aws.ToString(out.KeyMetadata.KeyId)
}

func TestDoctorHealthyInstance(t *testing.T) {
	kmsCalls := setDoctorSeams(t, "describe-running.json")
	kmsURL, key := emulatedKey(t, false, polPCR0v1)
	code, stdout, stderr := signer(t, "", "doctor",
		"--endpoint", doctorShim(t, "status-ready.json"), "--imds-endpoint", doctorIMDS(t),
		"--key-id", key, "--endpoint-url", kmsURL, "--measurements", polV1)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	for _, line := range []string{
		"ok      nitro-cli: enclave i-1234567890abcdef0-enc0193a5b2c4d6e8f0 RUNNING, CID 16\n",
		"ok      vsock-proxy: pid 812 listens on vsock port 8000 (CID 3) and forwards to kms.us-east-1.amazonaws.com:443\n",
		"ok      credentials: role NitroEnclaveInstanceRole (account 123456789012, instance i-1234567890abcdef0, us-east-1): credentials expire at 2026-11-20T16:00:00Z (in 4h0m0s)\n",
		"ok      key-policy: key " + key + " lets arn:aws:sts::123456789012:assumed-role/NitroEnclaveInstanceRole/i-1234567890abcdef0 call kms:Decrypt with PCR0 287b24930a9f0fe1… (AllowEnclaveDecrypt)\n",
		"ok      key-policy: EIF " + polV1 + ": PCR0 287b24930a9f0fe1… is allowed (statement AllowEnclaveDecrypt)\n",
		"ok      key-policy: the running enclave's attested PCR0 287b24930a9f0fe1… is allowed (statement AllowEnclaveDecrypt)\n",
	} {
		if !strings.Contains(stdout, line) {
			t.Errorf("stdout lacks %q:\n%s", line, stdout)
		}
	}
	if stderr != "signer doctor: 0 errors, 0 warnings, 8 ok, 0 skipped\n" {
		t.Errorf("stderr: %q", stderr)
	}
	if *kmsCalls != 1 {
		t.Errorf("%d KMS clients made, want 1", *kmsCalls)
	}
	if strings.Contains(stdout+stderr, "wJalrXUtnFEMI") {
		t.Error("the instance role's secret key appears in the output")
	}
}

func TestDoctorDebugEnclaveJSON(t *testing.T) {
	setDoctorSeams(t, "describe-debug.json")
	kmsURL, key := emulatedKey(t, false, polPCR0v1)
	code, stdout, stderr := signer(t, "", "doctor", "--json", "--region", "us-east-1",
		"--endpoint", doctorShim(t, "status-failed-debug-accessdenied.json"), "--imds-endpoint", doctorIMDS(t),
		"--key-id", key, "--endpoint-url", kmsURL)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (errors found)\n%s%s", code, stdout, stderr)
	}
	var rep struct {
		Results []doctor.Result `json:"results"`
		Errors  int             `json:"errors"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	found := map[string]doctor.Result{}
	for _, r := range rep.Results {
		found[string(r.Status)+" "+r.Check+" "+strings.SplitN(r.Message, ":", 2)[0]] = r
	}
	for _, k := range []string{
		"warning nitro-cli enclave i-1234567890abcdef0-enc0193a5b2c4d6e8f0 RUNNING in debug mode, CID 16",
		"error shim provisioning failed",
		"error key-policy the running enclave is in debug mode",
	} {
		if _, ok := found[k]; !ok {
			t.Errorf("no result %q in:\n%s", k, stdout)
		}
	}
	if r := found["error key-policy the running enclave is in debug mode"]; !strings.Contains(r.Fix, "signer policy render --debug") {
		t.Errorf("debug fix: %q", r.Fix)
	}
	if rep.Errors != 2 {
		t.Errorf("errors = %d, want 2", rep.Errors)
	}
	if stderr != "" {
		t.Errorf("stderr with --json: %q", stderr)
	}
}

func TestDoctorWithoutKeyID(t *testing.T) {
	kmsCalls := setDoctorSeams(t, "describe-running.json")
	code, stdout, stderr := signer(t, "", "doctor", "--endpoint", doctorShim(t, "status-ready.json"), "--imds-endpoint", doctorIMDS(t), "--region", "us-east-1")
	if code != 0 || !strings.Contains(stdout, "skipped key-policy: no --key-id: the key policy was not checked\n") {
		t.Errorf("exit %d\n%s%s", code, stdout, stderr)
	}
	if *kmsCalls != 0 {
		t.Error("a KMS client was made without --key-id")
	}
}

func TestDoctorUsage(t *testing.T) {
	setDoctorSeams(t, "describe-running.json")
	for _, tt := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--endpoint", "127.0.0.1:8080"}, 2, "--endpoint: want http://HOST[:PORT]"},
		{[]string{"--imds-endpoint", "ftp://x"}, 2, "--imds-endpoint: want http://"},
		{[]string{"--endpoint-url", "kms"}, 2, "--endpoint-url: want http://"},
		{[]string{"--kms-proxy-port", "0"}, 2, "--kms-proxy-port: want a vsock port"},
		{[]string{"--enclave-role", "NitroEnclaveInstanceRole"}, 2, "--enclave-role: want an ARN"},
		{[]string{"--timeout", "0s"}, 2, "--timeout: want a positive duration"},
		{[]string{"--measurements", "testdata/policy/no-such-file.json"}, 1, "signer: error: doctor: --measurements testdata/policy/no-such-file.json: no such file or directory\nsigner: hint: --measurements wants the JSON nitro-cli build-enclave"},
		{[]string{"--measurements", "testdata/policy/guide-policy.json"}, 1, `--measurements: measurements testdata/policy/guide-policy.json: no "Measurements" field`},
	} {
		code, _, stderr := signer(t, "", append([]string{"doctor"}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.err) {
			t.Errorf("doctor %q: exit %d, stderr %q\nwant exit %d and %q", tt.args, code, stderr, tt.code, tt.err)
		}
	}
}

func TestDoctorHTTPClientIgnoresProxy(t *testing.T) {
	tr := doctorHTTPClient().Transport.(*http.Transport)
	if tr.Proxy != nil {
		t.Error("doctor's HTTP client uses a proxy: the IMDS token would go through it")
	}
}

func TestDoctorKMSAdapter(t *testing.T) {
	setDoctorSeams(t, "describe-running.json") // the AWS environment, cleaned
	kmsURL, key := emulatedKey(t, true, polPCR0v1)
	t.Setenv("AWS_ENDPOINT_URL_KMS", kmsURL)
	g, err := newDoctorKMS(t.Context(), nil, kmsTarget{region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := g.GetKeyPolicy(t.Context(), key)
	if err != nil {
		t.Fatalf("GetKeyPolicy through AWS_ENDPOINT_URL_KMS: %v", err)
	}
	if !strings.Contains(doc, `"Sid": "AllowDebugEnclaveDecrypt"`) || !strings.Contains(doc, polPCR0v1) {
		t.Errorf("policy:\n%s", doc)
	}
	_, err = g.GetKeyPolicy(t.Context(), "00000000-0000-4000-8000-000000000000")
	if err == nil || !strings.Contains(err.Error(), "NotFoundException") {
		t.Errorf("unknown key: %v, want NotFoundException", err)
	}
	if _, err := newDoctorKMS(t.Context(), nil, kmsTarget{}); err == nil || !strings.Contains(err.Error(), "no AWS region") {
		t.Errorf("no region: %v", err)
	}
}

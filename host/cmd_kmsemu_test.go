package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
)

// lockedBuffer is an io.Writer safe to read while the command writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var endpointRE = regexp.MustCompile(`endpoint=(\S+)`)

// startKMSEmulator runs `signer kms-emulator args...` in-process and
// returns the endpoint it reports, its stderr, and a stop function that
// cancels it and returns its exit code.
func startKMSEmulator(t *testing.T, args ...string) (endpoint string, stderr *lockedBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr = &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"kms-emulator"}, args...), strings.NewReader(""), &bytes.Buffer{}, stderr)
	}()
	stopped := false
	var code int
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			select {
			case code = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("kms-emulator did not stop; stderr:\n%s", stderr)
			}
		}
		return code
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := endpointRE.FindStringSubmatch(stderr.String()); m != nil {
			return m[1], stderr, stop
		}
		select {
		case code := <-done:
			t.Fatalf("kms-emulator exited with %d before listening; stderr:\n%s", code, stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("kms-emulator reported no endpoint; stderr:\n%s", stderr)
	return
}

func kmsClient(endpoint, akid, secret string, hc *http.Client) *kms.Client {
	o := kms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret}, nil
		}),
		RetryMaxAttempts: 1,
	}
	if hc != nil {
		o.HTTPClient = hc
	}
	return kms.New(o)
}

func TestKMSEmulatorTCP(t *testing.T) {
	state := filepath.Join(t.TempDir(), "kms-state.json")
	endpoint, stderr, stop := startKMSEmulator(t, "--listen", "127.0.0.1:0", "--state", state)
	if !strings.HasPrefix(endpoint, "http://127.0.0.1:") || strings.HasSuffix(endpoint, ":0") {
		t.Fatalf("endpoint %q: want http://127.0.0.1:PORT", endpoint)
	}
	if !strings.Contains(stderr.String(), "default credential") || !strings.Contains(stderr.String(), "principal=arn:aws:iam::000000000000:role/dev") {
		t.Errorf("start-up log does not announce the default credential:\n%s", stderr)
	}
	ctx := t.Context()
	c := kmsClient(endpoint, "test", "test", nil)
	ck, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(ck.KeyMetadata.KeyId)
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("through signer kms-emulator")})
	if err != nil {
		t.Fatal(err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d after cancel, want 0; stderr:\n%s", code, stderr)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}

	// Restarted on the same state, the key decrypts what it encrypted.
	endpoint2, _, _ := startKMSEmulator(t, "--state", state, "--listen", "tcp://127.0.0.1:0")
	dec, err := kmsClient(endpoint2, "test", "test", nil).Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "through signer kms-emulator" {
		t.Fatalf("Decrypt after restart: %q, %v", dec.Plaintext, err)
	}
}

func TestKMSEmulatorUnixSocketAndCredentials(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "kms.sock")
	endpoint, stderr, stop := startKMSEmulator(t, "--listen", "unix://"+sock, "--state", filepath.Join(dir, "s.json"),
		"--credential", "AKIAHOST:hostsecret=arn:aws:iam::123456789012:role/host",
		"--credential", "AKIAENC:encsecret=arn:aws:sts::123456789012:assumed-role/enclave/i-0abc")
	if endpoint != "unix://"+sock {
		t.Fatalf("endpoint %q, want unix://%s", endpoint, sock)
	}
	if strings.Contains(stderr.String(), "hostsecret") || strings.Contains(stderr.String(), "encsecret") {
		t.Fatalf("a secret appears in the log:\n%s", stderr)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	ctx := t.Context()
	ck, err := kmsClient("http://kms.local", "AKIAHOST", "hostsecret", hc).CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(ck.KeyMetadata.AWSAccountId); got != "123456789012" {
		t.Errorf("key account %s, want the principal's 123456789012", got)
	}
	_, err = kmsClient("http://kms.local", "test", "test", hc).ListKeys(ctx, &kms.ListKeysInput{})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "UnrecognizedClientException" {
		t.Fatalf("default credential with --credential given: got %v, want UnrecognizedClientException", err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left behind: %v", err)
	}
}

func TestKMSEmulatorUsage(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "s.json")
	notPEM := filepath.Join(dir, "root.pem")
	os.WriteFile(notPEM, []byte("not pem"), 0o600)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--state", state}, 2, "--listen is required"},
		{[]string{"--listen", "127.0.0.1:0"}, 2, "--state is required"},
		{[]string{"--listen", "vsock://3:8000", "--state", state}, 2, "HOST:PORT"},
		{[]string{"--listen", "127.0.0.1", "--state", state}, 2, "--listen"},
		{[]string{"--listen", "127.0.0.1:0", "--state", state, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--listen", "127.0.0.1:0", "--state", state, "--credential", "AKIA:topsecret"}, 2, `access key "AKIA"`},
		{[]string{"--listen", "127.0.0.1:0", "--state", state, "--credential", "AKIA:topsecret=role/dev"}, 2, "not an ARN"},
		{[]string{"--listen", "127.0.0.1:0", "--state", state, "--credential", "nocolon"}, 2, "AKID:SECRET=PRINCIPAL_ARN"},
		{[]string{"--listen", "127.0.0.1:0", "--state", state, "--trust-root", notPEM}, 1, "no PEM CERTIFICATE"},
		{[]string{"--listen", "127.0.0.1:0", "--state", state, "--trust-root", filepath.Join(dir, "missing.pem")}, 1, "missing.pem"},
		{[]string{"--listen", "127.0.0.1:0", "--state", filepath.Join(dir, "no", "dir", "s.json")}, 1, "state"},
		{[]string{"--listen", "127.0.0.1:0", "--state", state, "--throttle-fraction", "1.5"}, 2, "--throttle-fraction 1.5: want a fraction from 0 to 1"},
		{[]string{"--listen", "127.0.0.1:0", "--state", state, "--throttle-fraction", "-0.5"}, 2, "--throttle-fraction"},
		{[]string{"--listen", "127.0.0.1:0", "--state", state, "--throttle-fraction", "NaN"}, 2, "--throttle-fraction"},
		{[]string{"--listen", "127.0.0.1:0", "--state", state, "--throttle-fraction", "half"}, 2, "throttle-fraction"},
	}
	for _, tc := range tests {
		code, _, stderr := signer(t, "", append([]string{"kms-emulator"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("signer kms-emulator %q:\n got  exit %d, stderr %q\n want exit %d, stderr containing %q", tc.args, code, stderr, tc.code, tc.want)
		}
		if strings.Contains(stderr, "topsecret") {
			t.Errorf("signer kms-emulator %q: the secret appears in stderr: %q", tc.args, stderr)
		}
	}
}

func TestKMSEmulatorTrustRoot(t *testing.T) {
	root, err := filepath.Abs("../pkg/attestation/aws-nitro-root.pem")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, stderr, stop := startKMSEmulator(t, "--listen", "127.0.0.1:0", "--state", filepath.Join(dir, "s.json"), "--trust-root", root)
	if !strings.Contains(stderr.String(), "trust_roots=1") {
		t.Errorf("trust root not loaded:\n%s", stderr)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestKMSEmulatorThrottleFraction: signer kms-emulator --throttle-fraction
// answers the share asked with KMS's ThrottlingException, and the
// unmodified SDK, retrying, gets through.
func TestKMSEmulatorThrottleFraction(t *testing.T) {
	dir := t.TempDir()
	endpoint, stderr, stop := startKMSEmulator(t, "--listen", "127.0.0.1:0", "--state", filepath.Join(dir, "s.json"), "--throttle-fraction", "0.5")
	if !strings.Contains(stderr.String(), "throttle_fraction=0.5") {
		t.Errorf("the throttling is not announced:\n%s", stderr)
	}
	ctx := t.Context()
	once := kms.New(kms.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	_, err := once.ListKeys(ctx, &kms.ListKeysInput{})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ThrottlingException" || !strings.Contains(err.Error(), "StatusCode: 400") {
		t.Fatalf("first request: %v, want a 400 ThrottlingException", err)
	}
	retrying := kms.New(kms.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	for i := range 3 {
		if _, err := retrying.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
			t.Fatalf("ListKeys %d with the SDK's default retries: %v", i, err)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if n := strings.Count(stderr.String(), "request throttled"); n < 2 {
		t.Fatalf("%d requests throttled, want the first and at least one retried one:\n%s", n, stderr)
	}
}

var imdsURLRE = regexp.MustCompile(`imds=(http://\S+)`)

// imdsCredentials fetches the credentials document from an IMDSv2
// endpoint, as the SDKs do: a session token first, then the role.
func imdsCredentials(t *testing.T, base string) (role string, doc map[string]string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", base+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	tok := httpBody(t, req)
	get := func(path string) string {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("X-aws-ec2-metadata-token", tok)
		return httpBody(t, req)
	}
	role = get("/latest/meta-data/iam/security-credentials/")
	if err := json.Unmarshal([]byte(get("/latest/meta-data/iam/security-credentials/"+role)), &doc); err != nil {
		t.Fatal(err)
	}
	return role, doc
}

func httpBody(t *testing.T, req *http.Request) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, b)
	}
	return string(b)
}

// TestKMSEmulatorIMDS: with --imds, the unmodified Go SDK and AWS CLI,
// given only AWS_EC2_METADATA_SERVICE_ENDPOINT, take instance-role
// credentials from the emulated IMDS and the emulator accepts them as the
// role's session; they are refused with ExpiredTokenException once
// expired, while the rotated ones work.
func TestKMSEmulatorIMDS(t *testing.T) {
	dir := t.TempDir()
	endpoint, stderr, stop := startKMSEmulator(t, "--listen", "127.0.0.1:0", "--state", filepath.Join(dir, "s.json"),
		"--imds", "127.0.0.1:0", "--imds-role", "dev", "--imds-lifetime", "3s")
	m := imdsURLRE.FindStringSubmatch(stderr.String())
	if m == nil || !strings.HasPrefix(m[1], "http://127.0.0.1:") {
		t.Fatalf("no imds= URL on loopback in the log:\n%s", stderr)
	}
	imdsURL := m[1]
	if got := endpointRE.FindStringSubmatch(stderr.String()); got == nil || got[1] != endpoint {
		t.Fatalf("the first endpoint= is %v, want the KMS's %s", got, endpoint)
	}
	// The AWS environment of a process on an instance: no keys, IMDS at
	// the emulator.
	for k, v := range map[string]string{
		"AWS_EC2_METADATA_SERVICE_ENDPOINT": imdsURL, "AWS_EC2_METADATA_DISABLED": "false",
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_REGION": "us-east-1",
	} {
		t.Setenv(k, v)
	}
	ctx := t.Context()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(endpoint) })
	if _, err := c.CreateKey(ctx, &kms.CreateKeyInput{}); err != nil {
		t.Fatalf("CreateKey with the SDK's instance-role credentials: %v\n%s", err, stderr)
	}
	if !regexp.MustCompile(`principal=arn:aws:sts::000000000000:assumed-role/dev/i-[0-9a-f]{17}`).MatchString(stderr.String()) {
		t.Errorf("the request did not act as the instance's assumed-role session:\n%s", stderr)
	}
	awsCLI := tool(t, "aws")
	cli := exec.Command(awsCLI, "--endpoint-url", endpoint, "--region", "us-east-1", "--output", "text", "--query", "length(Keys)", "kms", "list-keys")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") || !strings.HasSuffix(kv, "=") { // botocore takes AWS_PROFILE= for a profile named ""
			cli.Env = append(cli.Env, kv)
		}
	}
	out, err := cli.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("aws kms list-keys with the CLI's instance-role credentials: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`msg="kms request".*access_key_id=ASIA\S+.*op=ListKeys`).MatchString(stderr.String()) {
		t.Errorf("no ListKeys by an instance-role session in the log:\n%s", stderr)
	}

	// Credentials taken now are refused once expired; the IMDS has newer
	// ones by then, which work.
	role, doc := imdsCredentials(t, imdsURL)
	exp, err := time.Parse(time.RFC3339, doc["Expiration"])
	if role != "dev" || err != nil || doc["Code"] != "Success" || !strings.HasPrefix(doc["AccessKeyId"], "ASIA") {
		t.Fatalf("IMDS role %q, document %v", role, doc["Code"])
	}
	time.Sleep(time.Until(exp) + 100*time.Millisecond)
	stale := kms.New(kms.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(doc["AccessKeyId"], doc["SecretAccessKey"], doc["Token"])})
	_, err = stale.ListKeys(ctx, &kms.ListKeysInput{})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ExpiredTokenException" {
		t.Fatalf("credentials past their Expiration %s: %v, want ExpiredTokenException", exp, err)
	}
	_, fresh := imdsCredentials(t, imdsURL)
	if fresh["AccessKeyId"] == doc["AccessKeyId"] {
		t.Fatal("the IMDS still hands out expired credentials")
	}
	current := kms.New(kms.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(fresh["AccessKeyId"], fresh["SecretAccessKey"], fresh["Token"])})
	if _, err := current.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
		t.Fatalf("the rotated credentials: %v", err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, secret := range []string{doc["SecretAccessKey"], doc["Token"], fresh["SecretAccessKey"], fresh["Token"]} {
		if strings.Contains(stderr.String(), secret) {
			t.Fatal("a secret access key or session token appears in the emulator's log")
		}
	}
}

func TestKMSEmulatorIMDSUsage(t *testing.T) {
	state := filepath.Join(t.TempDir(), "s.json")
	base := []string{"kms-emulator", "--listen", "127.0.0.1:0", "--state", state}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--imds", "0.0.0.0:0"}, `--imds "0.0.0.0:0": the emulated IMDS hands out credentials: listen on a loopback address`},
		{[]string{"--imds", "10.1.2.3:80"}, "loopback"},
		{[]string{"--imds", "127.0.0.1"}, "want HOST:PORT on loopback"},
		{[]string{"--imds", "127.0.0.1:0", "--imds-lifetime", "1s"}, "--imds-lifetime 1s: want at least 2s"},
		{[]string{"--imds", "127.0.0.1:0", "--imds-role", "a/b"}, `--imds-role "a/b": role "a/b": want a role name`},
		{[]string{"--imds-role", "dev"}, "--imds-role and --imds-lifetime configure --imds HOST:PORT, which is not given"},
		{[]string{"--imds-lifetime", "30s"}, "which is not given"},
	} {
		code, _, stderr := signer(t, "", append(base, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("signer kms-emulator %q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

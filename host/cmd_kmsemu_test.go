package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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

package kmsemu

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
)

const (
	devPrincipal   = "arn:aws:iam::000000000000:role/dev"
	adminPrincipal = "arn:aws:iam::000000000000:role/admin"
	otherPrincipal = "arn:aws:sts::111122223333:assumed-role/enclave/i-0123456789abcdef0"
)

// logBuffer collects the server's logs for the test and mirrors them to
// t.Log on failure.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type testEnv struct {
	srv  *Server
	url  string
	logs *logBuffer
}

// start serves s on 127.0.0.1 with its logs captured.
func start(t *testing.T, s *Server) *testEnv {
	t.Helper()
	logs := &logBuffer{}
	if s.Log == nil {
		s.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if err := s.Init(); err != nil {
		t.Fatalf("Init: %v", err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &testEnv{srv: s, url: ts.URL, logs: logs}
}

// client is the unmodified SDK client, configured only through Options:
// no shared config, no IMDS, no retries.
func (e *testEnv) client(akid, secret string) *kms.Client {
	return clientFor(e.url, aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret})
}

func clientFor(url string, creds aws.Credentials) *kms.Client {
	return kms.New(kms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return creds, nil
		})),
		RetryMaxAttempts: 1,
	})
}

// retryingClientFor is clientFor with the SDK's standard retryer, 5
// attempts and short backoffs, for the steps of a test that a throttling
// emulator refuses a few times before serving.
func retryingClientFor(url string, creds aws.Credentials) *kms.Client {
	return kms.New(kms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return creds, nil
		})),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 5
			o.MaxBackoff = 50 * time.Millisecond
		}),
	})
}

// apiCode returns the error code of an SDK error, "" for nil.
func apiCode(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not a smithy.APIError", err)
	}
	return ae.ErrorCode()
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := apiCode(t, err); got != code {
		t.Fatalf("error code:\n got  %q (%v)\n want %q", got, err, code)
	}
}

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

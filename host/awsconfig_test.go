package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/enclave-signer/enclave-signer/internal/kms/kmsemu"
)

// setAWSTestEnv gives the process an AWS environment that reaches nothing
// but what the test names: no IMDS, empty shared config and credentials
// files, the emulator's default credential test/test, us-east-1, no
// endpoint. Tests using it can't be parallel (t.Setenv).
func setAWSTestEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"config", "credentials"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range map[string]string{
		"AWS_EC2_METADATA_DISABLED":              "true",
		"AWS_CONFIG_FILE":                        filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE":            filepath.Join(dir, "credentials"),
		"AWS_ACCESS_KEY_ID":                      "test",
		"AWS_SECRET_ACCESS_KEY":                  "test",
		"AWS_SESSION_TOKEN":                      "",
		"AWS_PROFILE":                            "",
		"AWS_DEFAULT_PROFILE":                    "",
		"AWS_REGION":                             "us-east-1",
		"AWS_DEFAULT_REGION":                     "",
		"AWS_ENDPOINT_URL":                       "",
		"AWS_ENDPOINT_URL_KMS":                   "",
		"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS":    "",
		"AWS_ROLE_ARN":                           "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_MAX_ATTEMPTS":                       "1",
	} {
		t.Setenv(k, v)
	}
}

// testKMS is the KMS emulator served on 127.0.0.1 for one test.
type testKMS struct {
	url  string
	logs *lockedBuffer
}

// newTestKMS starts the emulator with the given credentials (none: the
// default test/test as arn:aws:iam::000000000000:role/dev).
func newTestKMS(t *testing.T, creds ...kmsemu.Credential) *testKMS {
	t.Helper()
	logs := &lockedBuffer{}
	srv := &kmsemu.Server{Credentials: creds, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if err := srv.Init(); err != nil {
		t.Fatalf("kmsemu Init: %v", err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		if t.Failed() {
			t.Logf("KMS emulator log:\n%s", logs)
		}
	})
	return &testKMS{url: ts.URL, logs: logs}
}

// client returns an SDK client for the emulator as the given access key.
func (k *testKMS) client(akid, secret string) *kms.Client {
	return kmsClient(k.url, akid, secret, nil)
}

// createKey makes a key as test/test, with the default key policy when
// pol is "".
func (k *testKMS) createKey(t *testing.T, pol string) string {
	t.Helper()
	in := &kms.CreateKeyInput{}
	if pol != "" {
		in.Policy = aws.String(pol)
	}
	out, err := k.client("test", "test").CreateKey(t.Context(), in)
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return aws.ToString(out.KeyMetadata.KeyId)
}

func TestKMSConnEndpointPrecedence(t *testing.T) {
	setAWSTestEnv(t)
	k := newTestKMS(t)
	keyID := k.createKey(t, "")
	describe := func(t *testing.T, a *awsFlags) (*kmsConn, error) {
		t.Helper()
		e := &env{ctx: t.Context(), getenv: os.Getenv, stderr: &bytes.Buffer{}}
		conn, err := newKMSConn(e, a)
		if err != nil {
			return nil, err
		}
		_, err = kmsCall(e, conn, "DescribeKey", func(ctx context.Context, c *kms.Client) (*kms.DescribeKeyOutput, error) {
			return c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
		})
		return conn, err
	}
	dead := "http://127.0.0.1:1" // nothing listens on port 1

	t.Run("AWS_ENDPOINT_URL_KMS", func(t *testing.T) {
		t.Setenv("AWS_ENDPOINT_URL", dead)
		t.Setenv("AWS_ENDPOINT_URL_KMS", k.url)
		conn, err := describe(t, &awsFlags{})
		if err != nil || conn.endpoint != k.url {
			t.Fatalf("endpoint %v, err %v\n want %s from AWS_ENDPOINT_URL_KMS", conn, err, k.url)
		}
	})
	t.Run("AWS_ENDPOINT_URL", func(t *testing.T) {
		t.Setenv("AWS_ENDPOINT_URL", k.url)
		if _, err := describe(t, &awsFlags{}); err != nil {
			t.Fatalf("AWS_ENDPOINT_URL not used: %v", err)
		}
	})
	t.Run("flag wins", func(t *testing.T) {
		t.Setenv("AWS_ENDPOINT_URL_KMS", dead)
		if _, err := describe(t, &awsFlags{endpointURL: k.url}); err != nil {
			t.Fatalf("--endpoint-url did not override AWS_ENDPOINT_URL_KMS: %v", err)
		}
	})
	t.Run("env endpoint unreachable", func(t *testing.T) {
		t.Setenv("AWS_ENDPOINT_URL_KMS", dead)
		_, err := describe(t, &awsFlags{})
		var he *hintError
		if err == nil || !errors.As(err, &he) || !strings.Contains(err.Error(), "cannot reach "+dead) {
			t.Fatalf("error %v\n want a hint error saying it cannot reach %s", err, dead)
		}
	})
	t.Run("ignore configured endpoints", func(t *testing.T) {
		t.Setenv("AWS_ENDPOINT_URL_KMS", k.url)
		t.Setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
		e := &env{ctx: t.Context(), getenv: os.Getenv}
		conn, err := newKMSConn(e, &awsFlags{})
		if err != nil || conn.endpoint != "" || conn.where() != "KMS in us-east-1" {
			t.Fatalf("conn %+v, err %v\n want the regional endpoint", conn, err)
		}
	})
	t.Run("bad env endpoint", func(t *testing.T) {
		t.Setenv("AWS_ENDPOINT_URL_KMS", "kms.local:8080")
		_, err := describe(t, &awsFlags{})
		if err == nil || !strings.Contains(err.Error(), "AWS_ENDPOINT_URL_KMS: want http://HOST[:PORT]") {
			t.Fatalf("error %v\n want one naming AWS_ENDPOINT_URL_KMS and the expected form", err)
		}
	})
	t.Run("region flag", func(t *testing.T) {
		// Keys are regional: the key made in us-east-1 is not in eu-west-1.
		_, err := describe(t, &awsFlags{endpointURL: k.url, region: "eu-west-1"})
		if err == nil || !strings.Contains(err.Error(), "NotFoundException") || !strings.Contains(hints(err), "region (eu-west-1)") {
			t.Fatalf("error %v (hints %q)\n want NotFoundException with a region hint", err, hints(err))
		}
	})
}

func hints(err error) string {
	var he *hintError
	if errors.As(err, &he) {
		return strings.Join(he.hints, "\n")
	}
	return ""
}

func TestKMSConnNoRegionNoCredentials(t *testing.T) {
	setAWSTestEnv(t)
	k := newTestKMS(t)
	t.Setenv("AWS_REGION", "")
	e := &env{ctx: t.Context(), getenv: os.Getenv}
	_, err := newKMSConn(e, &awsFlags{endpointURL: k.url})
	if err == nil || !strings.Contains(err.Error(), "no AWS region") || !strings.Contains(hints(err), "AWS_REGION") {
		t.Fatalf("error %v\n want no AWS region with a hint naming AWS_REGION", err)
	}
	t.Setenv("AWS_DEFAULT_REGION", "us-east-1")
	if conn, err := newKMSConn(e, &awsFlags{endpointURL: k.url}); err != nil || conn.region != "us-east-1" {
		t.Fatalf("AWS_DEFAULT_REGION not used: %v", err)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	conn, err := newKMSConn(e, &awsFlags{endpointURL: k.url})
	if err != nil {
		t.Fatal(err)
	}
	_, err = kmsCall(e, conn, "ListKeys", func(ctx context.Context, c *kms.Client) (*kms.ListKeysOutput, error) {
		return c.ListKeys(ctx, &kms.ListKeysInput{})
	})
	if err == nil || !strings.Contains(err.Error(), "no usable AWS credentials") || !strings.Contains(hints(err), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("error %v\n want no usable AWS credentials with a hint", err)
	}
}

func TestKMSErrorMessages(t *testing.T) {
	conn := &kmsConn{region: "eu-west-1", endpoint: "http://127.0.0.1:4566"}
	for _, tc := range []struct {
		name      string
		err       error
		want      []string
		wantHints []string
	}{
		{"access denied with principal", &smithy.GenericAPIError{Code: "AccessDeniedException",
			Message: "User: arn:aws:sts::111122223333:assumed-role/ops/alice is not authorized to perform: kms:Encrypt on resource: arn:aws:kms:eu-west-1:111122223333:key/k1 because no resource-based policy allows the kms:Encrypt action"},
			[]string{"kms Encrypt: access denied: arn:aws:sts::111122223333:assumed-role/ops/alice may not call kms:Encrypt on arn:aws:kms:eu-west-1:111122223333:key/k1"},
			[]string{"AllowEncrypt", "arn:aws:iam::111122223333:role/ops"}},
		{"access denied put policy", &smithy.GenericAPIError{Code: "AccessDeniedException",
			Message: "User: arn:aws:iam::111122223333:user/bob is not authorized to perform: kms:PutKeyPolicy on resource: arn:aws:kms:eu-west-1:111122223333:key/k1 with an explicit deny in a resource-based policy"},
			[]string{"arn:aws:iam::111122223333:user/bob may not call kms:PutKeyPolicy"},
			[]string{"AllowKeyAdministration", "--admin-role"}},
		{"access denied other text", &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "nope"},
			[]string{"kms Encrypt: access denied: nope"}, []string{"get-key-policy"}},
		{"not found", &smithy.GenericAPIError{Code: "NotFoundException", Message: "Key 'arn:…' does not exist"},
			[]string{"kms Encrypt: NotFoundException: Key"}, []string{"region (eu-west-1)"}},
		{"bad credentials", &smithy.GenericAPIError{Code: "UnrecognizedClientException", Message: "The security token included in the request is invalid."},
			[]string{"UnrecognizedClientException"}, []string{"refresh them"}},
		{"disabled", &smithy.GenericAPIError{Code: "DisabledException", Message: "key is disabled"},
			[]string{"DisabledException"}, []string{"describe-key"}},
		{"timeout", context.DeadlineExceeded,
			[]string{"no answer from http://127.0.0.1:4566 within 30s"}, []string{"--endpoint-url"}},
		{"other", errors.New("boom"), []string{"kms Encrypt: boom"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := kmsError("Encrypt", conn, tc.err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n got  %q\n want it to contain %q", err, w)
				}
			}
			for _, w := range tc.wantHints {
				if !strings.Contains(hints(err), w) {
					t.Errorf("hints:\n got  %q\n want them to contain %q", hints(err), w)
				}
			}
		})
	}
}

func TestAWSFlagsValidate(t *testing.T) {
	for _, u := range []string{"localhost:4566", "ftp://x", "http://", "://"} {
		err := (&awsFlags{endpointURL: u}).validate("seal")
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "seal: --endpoint-url: want http://HOST[:PORT]") {
			t.Errorf("--endpoint-url %q: %v, want a usage error", u, err)
		}
	}
	for _, u := range []string{"", "http://127.0.0.1:4566", "https://kms.eu-west-1.amazonaws.com"} {
		if err := (&awsFlags{endpointURL: u}).validate("seal"); err != nil {
			t.Errorf("--endpoint-url %q: %v", u, err)
		}
	}
}

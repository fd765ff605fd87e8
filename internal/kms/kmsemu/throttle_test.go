package kmsemu

import (
	"context"
	"errors"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/enclave-signer/enclave-signer/internal/kms"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
)

// TestThrottleFraction checks the answer and the pattern: KMS's throttling
// answer exactly (400, __type ThrottlingException, message, content type,
// request id), on the share of requests asked, spread evenly and starting
// with the first.
func TestThrottleFraction(t *testing.T) {
	creds := aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}
	for _, tc := range []struct {
		fraction float64
		pattern  string // T throttled, . served
	}{
		{0, "........"},
		{0.5, "T.T.T.T."},
		{0.25, "T...T..."},
		{0.75, "TTT.TTT."},
		{1, "TTTTTTTT"},
		{1e-9, "T......."},
	} {
		e := start(t, &Server{ThrottleFraction: tc.fraction})
		var got strings.Builder
		for range len(tc.pattern) {
			r := post(t, e.url, "ListKeys", "{}", creds, time.Now(), nil)
			switch r.status {
			case 200:
				got.WriteByte('.')
			case 400:
				r.wantError(t, 400, "ThrottlingException", "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.")
				got.WriteByte('T')
			default:
				t.Fatalf("fraction %v: status %d %v", tc.fraction, r.status, r.body)
			}
		}
		if got.String() != tc.pattern {
			t.Errorf("fraction %v:\n got  %s\n want %s", tc.fraction, got.String(), tc.pattern)
		}
	}
	// Unauthenticated requests are refused as such and do not count.
	e := start(t, &Server{ThrottleFraction: 0.5})
	post(t, e.url, "ListKeys", "{}", aws.Credentials{AccessKeyID: "test", SecretAccessKey: "wrong"}, time.Now(), nil).wantError(t, 400, "InvalidSignatureException", "does not match")
	post(t, e.url, "ListKeys", "{}", creds, time.Now(), nil).wantError(t, 400, "ThrottlingException", "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.")

	for _, bad := range []float64{-0.1, 1.5, math.NaN(), math.Inf(1)} {
		if err := (&Server{ThrottleFraction: bad}).Init(); err == nil || !strings.Contains(err.Error(), "ThrottleFraction") {
			t.Errorf("ThrottleFraction %v: Init returned %v, want a refusal naming the field", bad, err)
		}
	}
}

// TestThrottlingRetriedByGoSDK: the unmodified SDK classifies the answer as
// a throttling error and, with its default retryer, retries it and
// succeeds.
func TestThrottlingRetriedByGoSDK(t *testing.T) {
	e := start(t, &Server{ThrottleFraction: 0.5})
	ctx := t.Context()
	// Without retries the error shows: a throttle by the SDK's own rules.
	_, err := clientFor(e.url, aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}).ListKeys(ctx, &awskms.ListKeysInput{})
	wantCode(t, err, "ThrottlingException")
	var ae smithy.APIError
	if !errors.As(err, &ae) || retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) != aws.TrueTernary ||
		retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) != aws.TrueTernary {
		t.Fatalf("the SDK does not classify %v as a retryable throttle", err)
	}
	// The default client (3 attempts, backoff) gets through every call.
	c := awskms.New(awskms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(e.url),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
	})
	key := must[*awskms.CreateKeyOutput](t)(c.CreateKey(ctx, &awskms.CreateKeyInput{}))
	enc := must[*awskms.EncryptOutput](t)(c.Encrypt(ctx, &awskms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte("throttled, then served")}))
	dec := must[*awskms.DecryptOutput](t)(c.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}))
	if string(dec.Plaintext) != "throttled, then served" {
		t.Fatalf("Decrypt: %q", dec.Plaintext)
	}
	if n := strings.Count(e.logs.String(), "request throttled"); n < 3 {
		t.Fatalf("%d requests throttled, want at least one per call", n)
	}
}

// TestThrottlingRetriedByEnclaveClient: the enclave's own client (internal/kms,
// what signerd's unseal path calls) retries a throttled Decrypt with
// Recipient and gets the identity; throttled beyond its attempts, it
// reports ErrThrottled with its hint.
func TestThrottlingRetriedByEnclaveClient(t *testing.T) {
	zero := strings.Repeat("0", 96)
	for _, tc := range []struct {
		fraction    float64
		maxAttempts int
		ok          bool
	}{
		{0.5, 0, true},   // signerd's configuration: 5 attempts
		{0.75, 2, false}, // three of every four throttled: both attempts are
	} {
		a := newAttestedKMS(t, func(s *Server) { s.ThrottleFraction = tc.fraction })
		blob := a.sealIdentity(guidePolicy(t, map[string]string{"YOUR_PCR0_VALUE_HERE": zero}, ""))
		before := strings.Count(a.logs.String(), "request throttled")
		c, err := kms.New(kms.Config{
			Region:      "us-east-1",
			Credentials: kms.Credentials{AccessKeyID: "enclave", SecretAccessKey: "enclave-secret", SessionToken: "enclave-token", Expires: a.now.Add(time.Hour)},
			Proxy:       a.sock,
			Roots:       a.tlsCA,
			MaxAttempts: tc.maxAttempts,
		})
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Decrypt(t.Context(), kms.DecryptInput{CiphertextBlob: blob}, a.recipient(a.sim(nsmsim.Options{DebugMode: true})))
		var pt []byte
		if out != nil {
			pt = out.Plaintext
		}
		c.Close()
		throttled := strings.Count(a.logs.String(), "request throttled") - before
		if tc.ok {
			if err != nil || string(pt) != identity || throttled < 1 {
				t.Fatalf("fraction %v: %v (%d Decrypt attempts throttled), want the identity after a throttled attempt", tc.fraction, err, throttled)
			}
			continue
		}
		if !errors.Is(err, kms.ErrThrottled) || !strings.Contains(err.Error(), "throttled the request after retries") || throttled != tc.maxAttempts {
			t.Fatalf("fraction %v: %v after %d throttled attempts, want ErrThrottled after %d", tc.fraction, err, throttled, tc.maxAttempts)
		}
	}
}

// TestThrottlingRetriedByOutsideClients: the AWS CLI and boto3, unmodified,
// retry the throttled requests and succeed.
func TestThrottlingRetriedByOutsideClients(t *testing.T) {
	t.Parallel()
	awsCLI := tool(t, "aws", "--version")
	py := tool(t, "python3", "-c", "import boto3")
	e := start(t, &Server{ThrottleFraction: 0.5})
	cmd := exec.Command(awsCLI, "--endpoint-url", e.url, "--output", "json", "kms", "create-key")
	cmd.Env = clientEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "KeyMetadata") {
		t.Fatalf("aws kms create-key against a throttling KMS: %v\n%s", err, out)
	}
	cliThrottled := strings.Count(e.logs.String(), "request throttled")
	cmd = exec.Command(py, "-c", boto3Script, e.url)
	cmd.Env = clientEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), `"plaintext": "from boto3"`) {
		t.Fatalf("boto3 against a throttling KMS: %v\n%s", err, out)
	}
	if cliThrottled < 1 || strings.Count(e.logs.String(), "request throttled") <= cliThrottled {
		t.Fatalf("throttled requests: %d for the CLI, %d in all: each client should have been throttled", cliThrottled, strings.Count(e.logs.String(), "request throttled"))
	}
}

package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

type vectorFile struct {
	Secret  string `json:"secret"`
	Time    string `json:"time"`
	Vectors []struct {
		Name                 string            `json:"name"`
		Method               string            `json:"method"`
		URL                  string            `json:"url"`
		Headers              map[string]string `json:"headers"`
		Authorization        string            `json:"authorization"`
		SigningKey           string            `json:"signing_key"`
		CanonicalRequestHash string            `json:"canonical_request_hash"`
	} `json:"vectors"`
}

func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	b, err := os.ReadFile("testdata/aws-sigv4-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(b, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	return vf
}

func TestAWSVectors(t *testing.T) {
	vf := loadVectors(t)
	now, err := time.Parse(TimeFormat, vf.Time)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			r := httptest.NewRequest(v.Method, v.URL, nil)
			for k, val := range v.Headers {
				r.Header.Set(k, val)
			}
			r.Header.Set("Authorization", v.Authorization)
			a, err := ParseAuthorization(v.Authorization)
			if err != nil {
				t.Fatalf("ParseAuthorization: %v", err)
			}
			if v.SigningKey != "" {
				if got := hex.EncodeToString(SigningKey(vf.Secret, a.Date, a.Region, a.Service)); got != v.SigningKey {
					t.Errorf("signing key:\n got  %s\n want %s", got, v.SigningKey)
				}
			}
			if v.CanonicalRequestHash != "" {
				creq, err := CanonicalRequest(r, a.SignedHeaders, PayloadHash(nil))
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.Sum256([]byte(creq))
				if got := hex.EncodeToString(h[:]); got != v.CanonicalRequestHash {
					t.Errorf("canonical request hash:\n got  %s\n want %s\ncanonical request:\n%s", got, v.CanonicalRequestHash, creq)
				}
			}
			if err := Verify(r, nil, a, Check{Secret: vf.Secret, Now: now}); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// One changed bit of the secret must fail.
			err = Verify(r, nil, a, Check{Secret: vf.Secret + "x", Now: now})
			if kindOf(err) != Mismatch {
				t.Fatalf("Verify with wrong secret: got %v, want a Mismatch error", err)
			}
		})
	}
}

// TestVectorsMatchSDK checks that the SDK's signer reproduces the published
// vectors, so the SDK can serve as the reference in the other tests.
func TestVectorsMatchSDK(t *testing.T) {
	vf := loadVectors(t)
	now, _ := time.Parse(TimeFormat, vf.Time)
	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			a, _ := ParseAuthorization(v.Authorization)
			req, _ := http.NewRequest(v.Method, v.URL, nil)
			for k, val := range v.Headers {
				if k != "X-Amz-Date" {
					req.Header.Set(k, val)
				}
			}
			err := v4.NewSigner().SignHTTP(context.Background(),
				aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: vf.Secret},
				req, PayloadHash(nil), a.Service, a.Region, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := req.Header.Get("Authorization"); got != v.Authorization {
				t.Errorf("SDK authorization:\n got  %s\n want %s", got, v.Authorization)
			}
		})
	}
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// sdkSigned returns a request signed by the aws-sdk-go-v2 signer, as the
// server would receive it.
func sdkSigned(t *testing.T, body string, creds aws.Credentials, at time.Time, mutate func(*http.Request)) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", "http://127.0.0.1:4599/a%20b/c?b=2&a=3&a=1&sp=x%20y", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	req.Header.Add("X-Multi", "  one   two ")
	req.Header.Add("X-Multi", "three")
	if mutate != nil {
		mutate(req)
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, PayloadHash([]byte(body)), "kms", "eu-west-2", at); err != nil {
		t.Fatal(err)
	}
	// Turn the client request into what a server sees.
	srv := httptest.NewRequest(req.Method, req.URL.RequestURI(), strings.NewReader(body))
	srv.Host = req.URL.Host
	srv.Header = req.Header.Clone()
	return srv
}

func verify(r *http.Request, body, secret string, now time.Time) error {
	a, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	return Verify(r, []byte(body), a, Check{Secret: secret, Service: "kms", Now: now})
}

func TestVerifySDKRequests(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	creds := aws.Credentials{AccessKeyID: "AKIATEST", SecretAccessKey: "s3cr3t/+key"}
	const body = `{"Limit":10}`
	tests := []struct {
		name   string
		mutate func(*http.Request) // before signing
		tamper func(*http.Request) // after signing
		body   string              // body the server receives; "" = body
		now    time.Time
		want   Kind // 0 = valid
	}{
		{name: "go-sdk-shape"},
		{name: "sdk-c-shape-content-sha256-and-token", mutate: func(r *http.Request) {
			r.Header.Set("X-Amz-Content-Sha256", PayloadHash([]byte(body)))
			r.Header.Set("X-Amz-Security-Token", "tok/en==")
		}},
		{name: "wrong-content-sha256-signed", mutate: func(r *http.Request) {
			r.Header.Set("X-Amz-Content-Sha256", PayloadHash([]byte("other")))
		}, want: Mismatch},
		{name: "tampered-body", body: `{"Limit":11}`, want: Mismatch},
		{name: "tampered-signed-header", tamper: func(r *http.Request) { r.Header.Set("X-Amz-Target", "TrentService.Decrypt") }, want: Mismatch},
		{name: "tampered-query", tamper: func(r *http.Request) { r.URL.RawQuery = "a=1" }, want: Mismatch},
		{name: "tampered-host", tamper: func(r *http.Request) { r.Host = "127.0.0.1:4600" }, want: Mismatch},
		{name: "missing-signed-header", tamper: func(r *http.Request) { r.Header.Del("X-Multi") }, want: Incomplete},
		{name: "unsigned-extra-header-is-fine", tamper: func(r *http.Request) { r.Header.Set("User-Agent", "x") }},
		{name: "skew-14min-ok", now: at.Add(14 * time.Minute)},
		{name: "stale-16min", now: at.Add(16 * time.Minute), want: Expired},
		{name: "future-16min", now: at.Add(-16 * time.Minute), want: Expired},
		{name: "no-date", tamper: func(r *http.Request) { r.Header.Del("X-Amz-Date") }, want: Incomplete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sdkSigned(t, body, creds, at, tc.mutate)
			if tc.tamper != nil {
				tc.tamper(r)
			}
			b := body
			if tc.body != "" {
				b = tc.body
			}
			now := tc.now
			if now.IsZero() {
				now = at
			}
			err := verify(r, b, creds.SecretAccessKey, now)
			if got := kindOf(err); got != tc.want || (tc.want == 0) != (err == nil) {
				t.Fatalf("got error %v (kind %d)\nwant kind %d", err, got, tc.want)
			}
			if tc.want == Expired && !strings.Contains(err.Error(), "Signature expired") && !strings.Contains(err.Error(), "not yet current") {
				t.Errorf("expired error %q does not say so", err)
			}
		})
	}
}

// TestUnsignedHeaders: AWS requires content-type and every x-amz-* header
// the request carries to be among the signed headers; a request that
// carries one unsigned is refused as incomplete, as is a request whose
// session token is not signed. x-amz-content-sha256 may stay unsigned: it
// is checked against the body whatever its signing.
func TestUnsignedHeaders(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	creds := aws.Credentials{AccessKeyID: "ASIATEST", SecretAccessKey: "s3cr3t"}
	const body = `{"KeyId":"k"}`
	// unsigned sends header h with value v, added after signing.
	unsigned := func(h, v string) (func(*http.Request), func(*http.Request)) {
		return func(r *http.Request) { r.Header.Del(h) }, func(r *http.Request) { r.Header.Set(h, v) }
	}
	tests := []struct {
		name   string
		header string // the unsigned header
		value  string
		want   Kind // 0 = accepted
	}{
		{"x-amz-target", "X-Amz-Target", "TrentService.Decrypt", Incomplete},
		{"content-type", "Content-Type", "application/x-amz-json-1.1", Incomplete},
		{"x-amz-security-token", "X-Amz-Security-Token", "session-token", Incomplete},
		{"another x-amz header", "X-Amz-Grant-Tokens", "g", Incomplete},
		{"x-amz-content-sha256 matching the body", "X-Amz-Content-Sha256", PayloadHash([]byte(body)), 0},
		{"x-amz-content-sha256 not matching the body", "X-Amz-Content-Sha256", PayloadHash([]byte("{}")), Mismatch},
		{"x-amzn-trace-id (never signed by the SDKs)", "X-Amzn-Trace-Id", "Root=1-abc", 0},
		{"user-agent", "User-Agent", "aws-cli/1", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, after := unsigned(tc.header, tc.value)
			r := sdkSigned(t, body, creds, at, before)
			after(r)
			err := verify(r, body, creds.SecretAccessKey, at)
			if got := kindOf(err); got != tc.want {
				t.Fatalf("got error %v (kind %d)\nwant kind %d", err, got, tc.want)
			}
			if tc.want == Incomplete {
				if !strings.Contains(err.Error(), strings.ToLower(tc.header)) || Incomplete.Code() != "IncompleteSignatureException" {
					t.Errorf("error %q does not name %s", err, strings.ToLower(tc.header))
				}
			}
		})
	}
	// The same headers, signed, are accepted.
	r := sdkSigned(t, body, creds, at, func(r *http.Request) {
		r.Header.Set("X-Amz-Security-Token", "session-token")
		r.Header.Set("X-Amz-Grant-Tokens", "g")
	})
	if err := verify(r, body, creds.SecretAccessKey, at); err != nil {
		t.Fatalf("all headers signed: %v", err)
	}
}

func TestWrongService(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	r := sdkSigned(t, "{}", aws.Credentials{AccessKeyID: "A", SecretAccessKey: "S"}, at, nil)
	a, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	err = Verify(r, []byte("{}"), a, Check{Secret: "S", Service: "sts", Now: at})
	if kindOf(err) != Mismatch || !strings.Contains(err.Error(), "'sts'") {
		t.Fatalf("got %v, want a Mismatch naming the service", err)
	}
}

func TestParseAuthorization(t *testing.T) {
	const sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	good := "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + sig
	a, err := ParseAuthorization(good)
	if err != nil {
		t.Fatal(err)
	}
	if a.AccessKeyID != "AK" || a.Region != "us-east-1" || a.Service != "kms" || a.Date != "20150830" ||
		strings.Join(a.SignedHeaders, ";") != "host;x-amz-date" || a.Signature != sig {
		t.Fatalf("parsed %+v", a)
	}
	if a.Scope() != "20150830/us-east-1/kms/aws4_request" {
		t.Errorf("scope %q", a.Scope())
	}
	bad := []struct {
		h    string
		want Kind
	}{
		{"", MissingAuthentication},
		{"AWS4-HMAC-SHA1 Credential=x", Incomplete},
		{"AWS4-HMAC-SHA256 SignedHeaders=host, Signature=" + sig, Incomplete},
		{"AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, Signature=" + sig, Incomplete},
		{"AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, SignedHeaders=host", Incomplete},
		{"AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/aws4_request, SignedHeaders=host, Signature=" + sig, Incomplete},
		{"AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws5_request, SignedHeaders=host, Signature=" + sig, Mismatch},
		{"AWS4-HMAC-SHA256 Credential=AK/2015-08-30/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=" + sig, Mismatch},
		{"AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, SignedHeaders=x-amz-date, Signature=" + sig, Incomplete},
		{"AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, SignedHeaders=Host, Signature=" + sig, Incomplete},
		{"AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=zz", Incomplete},
		{"AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=" + strings.ToUpper(sig), Incomplete},
		{"AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, Credential=B/20150830/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=" + sig, Incomplete},
		{"AWS4-HMAC-SHA256 Credential", Incomplete},
	}
	for _, tc := range bad {
		_, err := ParseAuthorization(tc.h)
		if got := kindOf(err); got != tc.want {
			t.Errorf("ParseAuthorization(%q):\n got  %v (kind %d)\n want kind %d", tc.h, err, got, tc.want)
		}
	}
}

func TestTrimValue(t *testing.T) {
	for in, want := range map[string]string{
		"  a   b  c ": "a b c",
		"a":           "a",
		"":            "",
		"a  \t b":     "a \t b",
	} {
		if got := trimValue(in); got != want {
			t.Errorf("trimValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorHasNoSecret(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	const secret = "VERYSECRETVALUE"
	r := sdkSigned(t, "{}", aws.Credentials{AccessKeyID: "A", SecretAccessKey: "other"}, at, nil)
	err := verify(r, "{}", secret, at)
	if err == nil || bytes.Contains([]byte(err.Error()), []byte(secret)) {
		t.Fatalf("got %v", err)
	}
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
	f.Add("AWS4-HMAC-SHA256 Credential=//////, SignedHeaders=;;, Signature=")
	f.Fuzz(func(t *testing.T, h string) {
		a, err := ParseAuthorization(h)
		if (a == nil) == (err == nil) {
			t.Fatalf("ParseAuthorization(%q) = %v, %v: want exactly one of result or error", h, a, err)
		}
		if err != nil {
			if kindOf(err) == 0 {
				t.Fatalf("error %v is not a *sigv4.Error", err)
			}
			return
		}
		if len(a.Signature) != 64 || a.AccessKeyID == "" || !contains(a.SignedHeaders, "host") {
			t.Fatalf("accepted invalid header %q: %+v", h, a)
		}
	})
}

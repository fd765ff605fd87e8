package imdsemu

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// clock is a settable clock for the server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	srv   *Server
	url   string
	clock *clock
	logs  *syncBuffer
}

func start(t *testing.T, s *Server) *env {
	t.Helper()
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	logs := &syncBuffer{}
	s.Now = c.Now
	s.Log = slog.New(slog.NewTextHandler(logs, nil))
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		if t.Failed() {
			t.Logf("imdsemu log:\n%s", logs)
		}
	})
	return &env{srv: s, url: ts.URL, clock: c, logs: logs}
}

func (e *env) do(t *testing.T, method, path string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (e *env) token(t *testing.T, ttl string) string {
	t.Helper()
	code, body, hdr := e.do(t, "PUT", "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": ttl})
	if code != 200 || body == "" || hdr.Get("X-aws-ec2-metadata-token-ttl-seconds") != ttl {
		t.Fatalf("PUT token: %d %q, TTL header %q", code, body, hdr.Get("X-aws-ec2-metadata-token-ttl-seconds"))
	}
	return body
}

type credsDoc struct {
	Code, LastUpdated, Type, AccessKeyId, SecretAccessKey, Token, Expiration string
}

func (e *env) creds(t *testing.T, tok string) credsDoc {
	t.Helper()
	code, body, _ := e.do(t, "GET", "/latest/meta-data/iam/security-credentials/"+e.srv.Role, map[string]string{"X-aws-ec2-metadata-token": tok})
	if code != 200 {
		t.Fatalf("GET credentials: %d %s", code, body)
	}
	var d credsDoc
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("credentials document %q: %v", body, err)
	}
	return d
}

// TestProtocol: IMDSv2 as EC2 answers it, refusals included.
func TestProtocol(t *testing.T) {
	e := start(t, &Server{Role: "dev", InstanceID: "i-0123456789abcdef0", Region: "eu-west-1", Account: "111122223333"})
	tok := e.token(t, "21600")
	auth := map[string]string{"X-aws-ec2-metadata-token": tok}
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		code               int
		body               string // exact, when not empty
	}{
		{"token without TTL", "PUT", "/latest/api/token", nil, 400, ""},
		{"token TTL 0", "PUT", "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "0"}, 400, ""},
		{"token TTL over 6 h", "PUT", "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "21601"}, 400, ""},
		{"token through a proxy", "PUT", "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.1"}, 403, ""},
		{"GET the token path", "GET", "/latest/api/token", auth, 405, ""},
		{"no token (IMDSv1)", "GET", "/latest/meta-data/instance-id", nil, 401, ""},
		{"unknown token", "GET", "/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": "forged"}, 401, ""},
		{"POST", "POST", "/latest/meta-data/instance-id", auth, 405, ""},
		{"unknown path", "GET", "/latest/meta-data/nope", auth, 404, ""},
		{"outside /latest", "GET", "/", auth, 404, ""},
		{"role list", "GET", "/latest/meta-data/iam/security-credentials/", auth, 200, "dev"},
		{"another role", "GET", "/latest/meta-data/iam/security-credentials/admin", auth, 404, ""},
		{"instance id", "GET", "/latest/meta-data/instance-id", auth, 200, "i-0123456789abcdef0"},
		{"region", "GET", "/latest/meta-data/placement/region", auth, 200, "eu-west-1"},
		{"meta-data listing", "GET", "/latest/meta-data/", auth, 200, "iam/\ninstance-id\nplacement/"},
		{"iam listing", "GET", "/latest/meta-data/iam/", auth, 200, "info\nsecurity-credentials/"},
		{"HEAD", "HEAD", "/latest/meta-data/instance-id", auth, 200, ""},
	} {
		code, body, _ := e.do(t, tc.method, tc.path, tc.hdr)
		if code != tc.code || tc.body != "" && body != tc.body {
			t.Errorf("%s: %s %s: %d %q, want %d %q", tc.name, tc.method, tc.path, code, body, tc.code, tc.body)
		}
	}

	var info struct{ Code, InstanceProfileArn string }
	_, body, _ := e.do(t, "GET", "/latest/meta-data/iam/info", auth)
	if json.Unmarshal([]byte(body), &info) != nil || info.Code != "Success" || info.InstanceProfileArn != "arn:aws:iam::111122223333:instance-profile/dev" {
		t.Errorf("iam/info: %s", body)
	}
	var id struct{ AccountID, Region, InstanceID string }
	_, body, _ = e.do(t, "GET", "/latest/dynamic/instance-identity/document", auth)
	if json.Unmarshal([]byte(body), &id) != nil || id.AccountID != "111122223333" || id.Region != "eu-west-1" || id.InstanceID != "i-0123456789abcdef0" {
		t.Errorf("identity document: %s", body)
	}

	d := e.creds(t, tok)
	now := e.clock.Now()
	if d.Code != "Success" || d.Type != "AWS-HMAC" || d.LastUpdated != now.Format(time.RFC3339) ||
		!strings.HasPrefix(d.AccessKeyId, "ASIA") || len(d.AccessKeyId) != 20 || len(d.SecretAccessKey) != 40 || len(d.Token) < 100 ||
		d.Expiration != now.Add(DefaultLifetime).Format(time.RFC3339) {
		t.Errorf("credentials document: %+v", d)
	}
	c, ok := e.srv.Lookup(d.AccessKeyId)
	if !ok || c.SecretAccessKey != d.SecretAccessKey || c.SessionToken != d.Token || c.Principal != "arn:aws:sts::111122223333:assumed-role/dev/i-0123456789abcdef0" {
		t.Errorf("Lookup(%s) = %v, %v", d.AccessKeyId, c, ok)
	}
	if _, ok := e.srv.Lookup("ASIANOTISSUED"); ok {
		t.Error("Lookup admits an access key id never issued")
	}

	// A token dies with its TTL.
	short := e.token(t, "1")
	e.clock.Add(time.Second)
	if code, _, _ := e.do(t, "GET", "/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": short}); code != 401 {
		t.Errorf("a token past its TTL: %d, want 401", code)
	}

	// Neither the secret nor the token is ever logged, nor formatted.
	if logs := e.logs.String(); strings.Contains(logs, d.SecretAccessKey) || strings.Contains(logs, d.Token) || !strings.Contains(logs, d.AccessKeyId) {
		t.Errorf("the log has a secret, or lacks the access key id:\n%s", logs)
	}
	for _, s := range []string{c.String(), func() string {
		var b bytes.Buffer
		slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "c", c)
		return b.String()
	}()} {
		if strings.Contains(s, c.SecretAccessKey) || strings.Contains(s, c.SessionToken) {
			t.Errorf("formatted credentials show a secret: %s", s)
		}
	}
}

// TestRotation: a new set once the current one is past half its
// lifetime, the old one still valid until its own expiration.
func TestRotation(t *testing.T) {
	e := start(t, &Server{Role: "dev", Lifetime: 30 * time.Second})
	tok := e.token(t, "21600")
	t0 := e.clock.Now()
	first := e.creds(t, tok)
	e.clock.Add(14 * time.Second)
	if d := e.creds(t, tok); d.AccessKeyId != first.AccessKeyId {
		t.Fatalf("new credentials at 14 s of 30: %s, want %s until half the lifetime", d.AccessKeyId, first.AccessKeyId)
	}
	e.clock.Add(time.Second)
	second := e.creds(t, tok)
	if second.AccessKeyId == first.AccessKeyId || second.Token == first.Token || second.SecretAccessKey == first.SecretAccessKey {
		t.Fatalf("no new credentials at 15 s of 30")
	}
	if second.Expiration != t0.Add(45*time.Second).Format(time.RFC3339) || first.Expiration != t0.Add(30*time.Second).Format(time.RFC3339) {
		t.Fatalf("expirations %s then %s, want %s then %s", first.Expiration, second.Expiration, t0.Add(30*time.Second), t0.Add(45*time.Second))
	}
	old, ok := e.srv.Lookup(first.AccessKeyId)
	if !ok || !old.Expiration.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("the first set is forgotten after rotation: %v %v", old, ok)
	}
	// Nobody asks for 40 s: the next request gets a fresh set at once.
	e.clock.Add(40 * time.Second)
	if third := e.creds(t, tok); third.AccessKeyId == second.AccessKeyId || third.Expiration != e.clock.Now().Add(30*time.Second).Format(time.RFC3339) {
		t.Fatalf("after a long pause: %s expiring %s, want a fresh set", third.AccessKeyId, third.Expiration)
	}
	if n := len(e.srv.Issued()); n != 3 {
		t.Fatalf("%d sets issued, want 3", n)
	}
}

// TestSDKProvider: the SDK's own instance-role provider, pointed at the
// emulator as AWS_EC2_METADATA_SERVICE_ENDPOINT points it, gets the
// credentials, and new ones after rotation.
func TestSDKProvider(t *testing.T) {
	e := start(t, &Server{Role: "dev", Lifetime: time.Minute})
	client := imds.New(imds.Options{Endpoint: e.url, ClientEnableState: imds.ClientEnabled})
	cache := aws.NewCredentialsCache(ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }))
	ctx := context.Background()
	c1, err := cache.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	issued := e.srv.Issued()
	if len(issued) != 1 || c1.AccessKeyID != issued[0].AccessKeyID || c1.SessionToken != issued[0].SessionToken ||
		!c1.CanExpire || !c1.Expires.Equal(issued[0].Expiration) {
		t.Fatalf("SDK credentials %+v, want the issued %v", c1, issued)
	}
	e.clock.Add(30 * time.Second)
	cache.Invalidate()
	c2, err := cache.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c2.AccessKeyID == c1.AccessKeyID || !c2.Expires.Equal(c1.Expires.Add(30*time.Second)) {
		t.Fatalf("after rotation the SDK got %s expiring %s; want new credentials expiring %s", c2.AccessKeyID, c2.Expires, c1.Expires.Add(30*time.Second))
	}
	// The SDK's region lookup works too.
	r, err := client.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil || r.Region != DefaultRegion {
		t.Fatalf("GetRegion: %v %v", r, err)
	}
}

func TestInitErrors(t *testing.T) {
	for _, tc := range []struct {
		s    func() *Server
		want string
	}{
		{func() *Server { return &Server{} }, "role \"\""},
		{func() *Server { return &Server{Role: "a/b"} }, "role \"a/b\""},
		{func() *Server { return &Server{Role: "dev", Account: "123"} }, "account \"123\": want 12 digits"},
		{func() *Server { return &Server{Role: "dev", Lifetime: time.Second} }, "lifetime 1s: want at least 2s"},
		{func() *Server { return &Server{Role: "dev", InstanceID: "i-xyz"} }, "instance id \"i-xyz\""},
	} {
		if err := tc.s().Init(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Init() = %v, want %q", err, tc.want)
		}
	}
}

package kmsemu

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/enclave-signer/enclave-signer/internal/sigv4"
)

// rawResponse is a decoded emulator response.
type rawResponse struct {
	status int
	header http.Header
	body   map[string]any
}

// post sends a request signed by the SDK's signer with creds at the given
// time (zero: not signed), after mutate has shaped it.
func post(t *testing.T, url, target, body string, creds aws.Credentials, at time.Time, mutate func(*http.Request)) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", url+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if target != "" {
		req.Header.Set("X-Amz-Target", "TrentService."+target)
	}
	if mutate != nil {
		mutate(req)
	}
	if !at.IsZero() {
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, sigv4.PayloadHash([]byte(body)), "kms", "us-east-1", at); err != nil {
			t.Fatal(err)
		}
	}
	return do(t, req)
}

// do sends req and decodes the emulator's answer.
func do(t *testing.T, req *http.Request) rawResponse {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := rawResponse{status: resp.StatusCode, header: resp.Header}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out.body); err != nil {
			t.Fatalf("response body %q is not JSON: %v", b, err)
		}
	}
	return out
}

func (r rawResponse) wantError(t *testing.T, status int, code, msgPart string) {
	t.Helper()
	if r.status != status || r.body["__type"] != code || !strings.Contains(r.body["message"].(string), msgPart) {
		t.Fatalf("response:\n got  %d %v\n want %d %s containing %q", r.status, r.body, status, code, msgPart)
	}
	if len(r.body) != 2 {
		t.Errorf("error body %v: want exactly __type and message", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		t.Errorf("Content-Type %q", ct)
	}
	if id := r.header.Get("X-Amzn-Requestid"); !isUUID(id) {
		t.Errorf("x-amzn-RequestId %q is not a UUID", id)
	}
}

func TestSigV4Failures(t *testing.T) {
	var ops atomic.Int32
	e := start(t, &Server{
		Credentials: []Credential{
			DefaultCredential,
			{AccessKeyID: "ASIASESSION", SecretAccessKey: "sess", SessionToken: "tok/en+1==", Principal: "arn:aws:sts::000000000000:assumed-role/dev/i-1"},
			{AccessKeyID: "ASIAEXPIRED", SecretAccessKey: "old", SessionToken: "t", Expires: time.Now().Add(-time.Second), Principal: devPrincipal},
			{AccessKeyID: "ASIALATER", SecretAccessKey: "later", SessionToken: "t", Expires: time.Now().Add(time.Hour), Principal: devPrincipal},
		},
		Intercept: func(op, principal string) *APIError { ops.Add(1); return nil },
	})
	ctx := t.Context()
	good := e.client("test", "test")
	id := *must[*kms.CreateKeyOutput](t)(good.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	blob := must[*kms.EncryptOutput](t)(good.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("p")})).CiphertextBlob
	ranBefore := ops.Load()

	// Wrong secret: refused before any operation runs.
	bad := e.client("test", "wrong")
	_, err := bad.CreateKey(ctx, &kms.CreateKeyInput{})
	wantCode(t, err, "InvalidSignatureException")
	_, err = bad.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	wantCode(t, err, "InvalidSignatureException")
	if !strings.Contains(err.Error(), "The request signature we calculated does not match") {
		t.Errorf("message: %v", err)
	}
	_, err = e.client("AKIAUNKNOWN", "x").ListKeys(ctx, &kms.ListKeysInput{})
	wantCode(t, err, "UnrecognizedClientException")

	session := func(token string) *kms.Client {
		return clientFor(e.url, aws.Credentials{AccessKeyID: "ASIASESSION", SecretAccessKey: "sess", SessionToken: token})
	}
	_, err = session("").ListKeys(ctx, &kms.ListKeysInput{})
	wantCode(t, err, "UnrecognizedClientException")
	_, err = session("wrong").ListKeys(ctx, &kms.ListKeysInput{})
	wantCode(t, err, "UnrecognizedClientException")
	_, err = clientFor(e.url, aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test", SessionToken: "unexpected"}).ListKeys(ctx, &kms.ListKeysInput{})
	wantCode(t, err, "UnrecognizedClientException")
	_, err = clientFor(e.url, aws.Credentials{AccessKeyID: "ASIAEXPIRED", SecretAccessKey: "old", SessionToken: "t"}).ListKeys(ctx, &kms.ListKeysInput{})
	wantCode(t, err, "ExpiredTokenException")
	if ops.Load() != ranBefore {
		t.Fatalf("%d operations ran for unauthenticated requests", ops.Load()-ranBefore)
	}
	if lk := must[*kms.ListKeysOutput](t)(good.ListKeys(ctx, &kms.ListKeysInput{})); len(lk.Keys) != 1 {
		t.Fatalf("%d keys after refused CreateKey calls, want 1", len(lk.Keys))
	}
	must[*kms.ListKeysOutput](t)(session("tok/en+1==").ListKeys(ctx, &kms.ListKeysInput{}))
	must[*kms.ListKeysOutput](t)(clientFor(e.url, aws.Credentials{AccessKeyID: "ASIALATER", SecretAccessKey: "later", SessionToken: "t"}).ListKeys(ctx, &kms.ListKeysInput{}))

	creds := aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}
	// Stale and future request times.
	post(t, e.url, "ListKeys", "{}", creds, time.Now().Add(-16*time.Minute), nil).wantError(t, 400, "InvalidSignatureException", "Signature expired")
	post(t, e.url, "ListKeys", "{}", creds, time.Now().Add(16*time.Minute), nil).wantError(t, 400, "InvalidSignatureException", "Signature not yet current")
	// Malformed or missing Authorization.
	post(t, e.url, "ListKeys", "{}", creds, time.Time{}, nil).wantError(t, 400, "MissingAuthenticationTokenException", "Missing Authentication Token")
	post(t, e.url, "ListKeys", "{}", creds, time.Time{}, func(r *http.Request) {
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, SignedHeaders=host")
	}).wantError(t, 400, "IncompleteSignatureException", "Signature")
	// Wrong service in the scope.
	req := post(t, e.url, "ListKeys", "{}", creds, time.Time{}, func(r *http.Request) {
		v4.NewSigner().SignHTTP(context.Background(), creds, r, sigv4.PayloadHash([]byte("{}")), "sts", "us-east-1", time.Now())
	})
	req.wantError(t, 400, "InvalidSignatureException", "'kms'")
	// The body is covered by the signature.
	post(t, e.url, "ListKeys", `{"Limit":1}`, creds, time.Time{}, func(r *http.Request) {
		v4.NewSigner().SignHTTP(context.Background(), creds, r, sigv4.PayloadHash([]byte(`{"Limit":2}`)), "kms", "us-east-1", time.Now())
	}).wantError(t, 400, "InvalidSignatureException", "does not match")
	// Only the three authenticated ListKeys calls above ran.
	if ops.Load() != ranBefore+3 {
		t.Fatalf("operations ran for unauthenticated raw requests: %d", ops.Load()-ranBefore-3)
	}
}

// TestSDKCShapedRequest sends a request shaped as the Nitro Enclaves SDK-C
// sends it: x-amz-content-sha256 and x-amz-security-token signed.
func TestSDKCShapedRequest(t *testing.T) {
	e := start(t, &Server{Credentials: []Credential{{AccessKeyID: "ASIAENCLAVE", SecretAccessKey: "s", SessionToken: "session-token", Principal: otherPrincipal}}})
	const body = `{"NumberOfBytes":16}`
	creds := aws.Credentials{AccessKeyID: "ASIAENCLAVE", SecretAccessKey: "s", SessionToken: "session-token"}
	r := post(t, e.url, "GenerateRandom", body, creds, time.Now(), func(r *http.Request) {
		r.Header.Set("X-Amz-Content-Sha256", sigv4.PayloadHash([]byte(body)))
		r.Header.Set("X-Amz-Security-Token", "session-token") // the signer sets it too
	})
	if r.status != 200 {
		t.Fatalf("status %d: %v", r.status, r.body)
	}
	if p, _ := r.body["Plaintext"].(string); len(p) != 24 { // base64 of 16 bytes
		t.Errorf("Plaintext %q: want base64 of 16 bytes", p)
	}
	// The same with a lying content hash is refused.
	post(t, e.url, "GenerateRandom", body, creds, time.Now(), func(r *http.Request) {
		r.Header.Set("X-Amz-Content-Sha256", sigv4.PayloadHash([]byte("{}")))
	}).wantError(t, 400, "InvalidSignatureException", "x-amz-content-sha256")
}

func TestServerClockSkewCorrection(t *testing.T) {
	// The server's clock is 20 minutes ahead: the SDK's request is refused
	// as expired, and the response's Date comes from the server's clock.
	e := start(t, &Server{Now: func() time.Time { return time.Now().Add(20 * time.Minute) }})
	_, err := e.client("test", "test").ListKeys(t.Context(), &kms.ListKeysInput{})
	wantCode(t, err, "InvalidSignatureException")
	if !strings.Contains(err.Error(), "Signature expired") {
		t.Fatalf("error %v: want Signature expired", err)
	}
	r := post(t, e.url, "ListKeys", "{}", aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, time.Now().Add(20*time.Minute), nil)
	if r.status != 200 {
		t.Fatalf("request signed at the server's time: %d %v", r.status, r.body)
	}
	d, err := http.ParseTime(r.header.Get("Date"))
	if err != nil || time.Until(d) < 19*time.Minute {
		t.Errorf("Date header %q does not come from the server's clock", r.header.Get("Date"))
	}
}

// TestUnsignedHeadersRefused: a request whose x-amz-target, content-type
// or x-amz-security-token is not among its signed headers is refused before
// any operation runs, with IncompleteSignatureException naming the header.
func TestUnsignedHeadersRefused(t *testing.T) {
	var ops atomic.Int32
	e := start(t, &Server{
		Credentials: []Credential{{AccessKeyID: "ASIASESSION", SecretAccessKey: "sess", SessionToken: "tok", Principal: devPrincipal}},
		Intercept:   func(op, principal string) *APIError { ops.Add(1); return nil },
	})
	creds := aws.Credentials{AccessKeyID: "ASIASESSION", SecretAccessKey: "sess", SessionToken: "tok"}
	// send signs a ListKeys request without header h, then adds h.
	send := func(h, v string) rawResponse {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "POST", e.url+"/", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
		signWith := creds
		if h == "X-Amz-Security-Token" {
			signWith.SessionToken = "" // the signer would add and sign it
		}
		req.Header.Del(h)
		if err := v4.NewSigner().SignHTTP(context.Background(), signWith, req, sigv4.PayloadHash([]byte("{}")), "kms", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		req.Header.Set(h, v)
		return do(t, req)
	}
	for _, tc := range []struct{ header, value string }{
		{"X-Amz-Target", "TrentService.ListKeys"},
		{"Content-Type", "application/x-amz-json-1.1"},
		{"X-Amz-Security-Token", "tok"},
	} {
		t.Run(tc.header, func(t *testing.T) {
			send(tc.header, tc.value).wantError(t, 400, "IncompleteSignatureException", strings.ToLower(tc.header))
		})
	}
	if n := ops.Load(); n != 0 {
		t.Fatalf("%d operations ran for requests with unsigned headers", n)
	}
	// Signed, the same request passes.
	r := post(t, e.url, "ListKeys", "{}", creds, time.Now(), nil)
	if r.status != 200 {
		t.Fatalf("signed request: %d %v", r.status, r.body)
	}
}

// TestSessionTokenComparedInConstantTime is a static check: no == or !=
// in the package's code compares a SessionToken with anything but the
// empty string, so the token is only ever compared through sameSecret
// (crypto/subtle). Timing cannot be asserted by a unit test; this keeps a
// variable-time comparison from coming back.
func TestSessionTokenComparedInConstantTime(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if name := e.Name(); strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		t.Fatal("no Go files found")
	}
	mentionsToken := func(e ast.Expr) bool {
		found := false
		ast.Inspect(e, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "SessionToken" {
				found = true
			}
			return !found
		})
		return found
	}
	isEmptyString := func(e ast.Expr) bool {
		lit, ok := e.(*ast.BasicLit)
		return ok && lit.Value == `""`
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			b, ok := n.(*ast.BinaryExpr)
			if !ok || b.Op != token.EQL && b.Op != token.NEQ {
				return true
			}
			for _, pair := range [][2]ast.Expr{{b.X, b.Y}, {b.Y, b.X}} {
				if mentionsToken(pair[0]) && !isEmptyString(pair[1]) {
					t.Errorf("%s: session token compared with %s: use sameSecret (constant time)", fset.Position(b.Pos()), b.Op)
				}
			}
			return true
		})
	}
}

func TestSameSecret(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"tok", "tok", true},
		{"", "", true},
		{"tok", "toK", false},
		{"tok", "tok2", false},
		{"", "tok", false},
	} {
		if got := sameSecret(tc.a, tc.b); got != tc.want {
			t.Errorf("sameSecret(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

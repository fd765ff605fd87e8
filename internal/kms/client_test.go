package kms

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/cms"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// fakeKMS is a TLS server for kms.us-east-1.amazonaws.com on a unix socket,
// standing where vsock-proxy would. It checks what the enclave's client
// sends and answers with a real CMS envelope to the attested key. (The full
// emulator, with key policies, lives in kmsemu; this checks the client.)
type fakeKMS struct {
	t      *testing.T
	addr   transport.Addr
	roots  *x509.CertPool
	simCA  *nsmsim.CA
	answer func(w http.ResponseWriter, target string, body map[string]any) // nil: the normal answer

	mu      sync.Mutex
	sni     []string
	hosts   []string
	targets []string
	keyIDs  []any // each request's KeyId member (nil when absent)
}

func newFakeKMS(t *testing.T) *fakeKMS {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kms.us-east-1.amazonaws.com"}, DNSNames: []string{"kms.us-east-1.amazonaws.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	f := &fakeKMS{t: t, roots: x509.NewCertPool()}
	f.roots.AddCert(caCert)
	f.simCA, _ = nsmsim.NewCA(time.Now())

	path := filepath.Join(t.TempDir(), "kms.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f.addr = transport.Addr{Scheme: transport.Unix, Path: path}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return f
}

func (f *fakeKMS) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	f.mu.Lock()
	f.sni = append(f.sni, r.TLS.ServerName)
	f.hosts = append(f.hosts, r.Host)
	f.targets = append(f.targets, target)
	f.mu.Unlock()
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	f.keyIDs = append(f.keyIDs, body["KeyId"])
	f.mu.Unlock()
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDTEST/") || r.Header.Get("X-Amz-Security-Token") != "token" {
		kmsError(w, "UnrecognizedClientException", "bad auth header")
		return
	}
	if f.answer != nil {
		f.answer(w, target, body)
		return
	}
	rec, _ := body["Recipient"].(map[string]any)
	docB64, _ := rec["AttestationDocument"].(string)
	var doc []byte
	json.Unmarshal([]byte(`"`+docB64+`"`), &doc)
	d, err := attestation.Verify(doc, attestation.VerifyOptions{Roots: f.simCA.Roots()})
	if err != nil || rec["KeyEncryptionAlgorithm"] != "RSAES_OAEP_SHA_256" {
		kmsError(w, "AccessDeniedException", "bad recipient")
		return
	}
	plaintext := []byte("AGE-SECRET-KEY-1QQQ")
	out := map[string]any{"KeyId": "arn:aws:kms:us-east-1:000000000000:key/k"}
	switch target {
	case "TrentService.GenerateDataKey":
		plaintext = bytes.Repeat([]byte{7}, 32)
		out["CiphertextBlob"] = []byte("blob")
	case "TrentService.GenerateRandom":
		plaintext = bytes.Repeat([]byte{9}, int(body["NumberOfBytes"].(float64)))
	}
	env, err := cms.Seal(rand.Reader, plaintext, d.PublicKey)
	if err != nil {
		f.t.Error(err)
	}
	out["CiphertextForRecipient"] = env
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

func kmsError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(400)
	json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

func (f *fakeKMS) client(t *testing.T, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Region:      "us-east-1",
		Credentials: Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret", SessionToken: "token", Expires: time.Now().Add(time.Hour)},
		Proxy:       f.addr,
		Roots:       f.roots,
		MaxAttempts: 2,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func recipient(t *testing.T, ca *nsmsim.CA, debug bool) *Recipient {
	t.Helper()
	sim, err := nsmsim.New(nsmsim.Options{CA: ca, DebugMode: debug})
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewKeySource(t.Context()).Take(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRecipient(sim, key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDecryptThroughProxyDialer(t *testing.T) {
	f := newFakeKMS(t)
	c := f.client(t, nil)
	r := recipient(t, f.simCA, false)
	const keyARN = "arn:aws:kms:us-east-1:000000000000:key/k"
	out, err := c.Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("sealed"), EncryptionContext: map[string]string{"app": "signer"}, KeyID: keyARN}, r)
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Plaintext) != "AGE-SECRET-KEY-1QQQ" || out.KeyARN != keyARN {
		t.Fatalf("plaintext %q, key %q; want the fake's plaintext and key %s", out.Plaintext, out.KeyARN, keyARN)
	}
	// Without KeyID the request names no key (KMS reads it from the blob).
	if _, err := c.Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("sealed")}, r); err != nil {
		t.Fatal(err)
	}
	// CiphertextKey names no key either, whatever KeyID says, and returns
	// the key KMS answered with.
	if arn, err := c.CiphertextKey(t.Context(), DecryptInput{CiphertextBlob: []byte("sealed"), KeyID: "arn:aws:kms:us-east-1:000000000000:key/other"}, r); err != nil || arn != keyARN {
		t.Fatalf("CiphertextKey = %q, %v; want %s", arn, err, keyARN)
	}
	pt, blob, err := c.GenerateDataKey(t.Context(), "alias/x", nil, r)
	if err != nil || len(pt) != 32 || string(blob) != "blob" {
		t.Fatalf("GenerateDataKey: %d bytes, blob %q, %v", len(pt), blob, err)
	}
	rnd, err := c.GenerateRandom(t.Context(), 48, r)
	if err != nil || len(rnd) != 48 {
		t.Fatalf("GenerateRandom: %d bytes, %v", len(rnd), err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.sni {
		if f.sni[i] != "kms.us-east-1.amazonaws.com" || f.hosts[i] != "kms.us-east-1.amazonaws.com" {
			t.Errorf("request %d: SNI %q Host %q, want kms.us-east-1.amazonaws.com", i, f.sni[i], f.hosts[i])
		}
	}
	if strings.Join(f.targets, ",") != "TrentService.Decrypt,TrentService.Decrypt,TrentService.Decrypt,TrentService.GenerateDataKey,TrentService.GenerateRandom" {
		t.Errorf("targets %v", f.targets)
	}
	if f.keyIDs[0] != keyARN || f.keyIDs[1] != nil || f.keyIDs[2] != nil {
		t.Errorf("Decrypt requests' KeyId %v: want %s, then none twice", f.keyIDs[:3], keyARN)
	}
}

func TestTLSVerified(t *testing.T) {
	f := newFakeKMS(t)
	// The compiled-in roots do not know the test CA: the handshake fails.
	c := f.client(t, func(c *Config) { c.Roots = nil })
	_, err := c.Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, recipient(t, f.simCA, false))
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Fatalf("got %v, want an unknown-authority TLS error", err)
	}
	// Another host name than the certificate's fails too.
	c = f.client(t, func(c *Config) { c.Region = "eu-west-1" })
	if _, err := c.Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, recipient(t, f.simCA, false)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("wrong host name: %v", err)
	}
	if len(DefaultRootsSubjects()) < 50 {
		t.Fatal("compiled-in roots look empty")
	}
}

func TestErrors(t *testing.T) {
	f := newFakeKMS(t)
	tests := []struct {
		name  string
		code  string
		debug bool
		class error
		want  []string
	}{
		{"access denied", "AccessDeniedException", false, ErrAccessDenied, []string{"AccessDeniedException", "cannot tell which condition failed", "PCR0 ", "PCR1 ", "PCR2 ", "PCR3 ", "PCR4 ", "PCR8 ", "signer doctor --key-id KEY"}},
		{"access denied debug", "AccessDeniedException", true, ErrAccessDenied, []string{"debug-mode enclave", "PCR0, 1, 2 and 8 all zero", "signer policy render --debug", "PCR3 ", "signer doctor --key-id KEY"}},
		{"invalid ciphertext", "InvalidCiphertextException", false, ErrInvalidCiphertext, []string{"InvalidCiphertextException", "another KMS key"}},
		{"expired token", "ExpiredTokenException", false, ErrBadCredentials, []string{"fresh"}},
		{"incomplete signature (JSON protocol code)", "IncompleteSignatureException", false, ErrBadCredentials, []string{"fresh"}},
		{"disabled", "KMSInvalidStateException", false, ErrKeyState, []string{"disabled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.answer = func(w http.ResponseWriter, _ string, _ map[string]any) { kmsError(w, tt.code, "because") }
			r := recipient(t, f.simCA, tt.debug)
			_, err := f.client(t, nil).Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, r)
			if !errors.Is(err, tt.class) {
				t.Fatalf("got %v, want class %v", err, tt.class)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			var ke *Error
			if tt.class == ErrAccessDenied && (!errors.As(err, &ke) || ke.PCR0 != r.pcr0Hex() || ke.DebugMode != tt.debug) {
				t.Errorf("AccessDenied error does not carry the presented PCR0: %+v", ke)
			}
		})
	}

	// An answer that is not from KMS (a proxy's 502, an empty 503) names
	// the HTTP status and where to look, not "UnknownError".
	for _, status := range []int{502, 503} {
		f.answer = func(w http.ResponseWriter, _ string, _ map[string]any) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(status)
			if status == 502 { // 503: no body at all
				fmt.Fprintln(w, "Bad Gateway: dial tcp 127.0.0.1:4000: connect: connection refused")
			}
		}
		_, err := f.client(t, nil).Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, recipient(t, f.simCA, false))
		if !errors.Is(err, ErrNoKMSAnswer) {
			t.Fatalf("HTTP %d without a KMS error: %v, want ErrNoKMSAnswer", status, err)
		}
		for _, w := range []string{fmt.Sprintf("HTTP %d", status), "not an answer from KMS", "vsock-proxy", "signer doctor"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("HTTP %d: error %q lacks %q", status, err, w)
			}
		}
	}

	// A response with Plaintext despite the Recipient is refused.
	f.answer = func(w http.ResponseWriter, _ string, _ map[string]any) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		json.NewEncoder(w).Encode(map[string]any{"Plaintext": []byte("secret"), "KeyId": "k"})
	}
	_, err := f.client(t, nil).Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, recipient(t, f.simCA, false))
	if err == nil || !strings.Contains(err.Error(), "carries Plaintext") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Plaintext response: %v", err)
	}
}

func TestThrottlingRetried(t *testing.T) {
	f := newFakeKMS(t)
	var mu sync.Mutex
	calls := 0
	r := recipient(t, f.simCA, false)
	f.answer = func(w http.ResponseWriter, target string, body map[string]any) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			kmsError(w, "ThrottlingException", "slow down")
			return
		}
		env, _ := cms.Seal(rand.Reader, []byte("ok"), mustSPKI(t, r))
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		json.NewEncoder(w).Encode(map[string]any{"CiphertextForRecipient": env, "KeyId": "k"})
	}
	out, err := f.client(t, func(c *Config) { c.MaxAttempts = 3 }).Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, r)
	if err != nil || string(out.Plaintext) != "ok" || calls != 2 {
		t.Fatalf("after one throttle: %+v, %v, %d calls", out, err, calls)
	}
}

func mustSPKI(t *testing.T, r *Recipient) []byte {
	spki, err := x509.MarshalPKIXPublicKey(&r.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return spki
}

func TestProxyUnreachableAndExpiredCredentials(t *testing.T) {
	f := newFakeKMS(t)
	r := recipient(t, f.simCA, false)
	c := f.client(t, func(c *Config) {
		c.Proxy = transport.Addr{Scheme: transport.Unix, Path: filepath.Join(t.TempDir(), "none.sock")}
	})
	_, err := c.Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, r)
	if !errors.Is(err, ErrProxyUnreachable) || !strings.Contains(err.Error(), "is vsock-proxy running and allowing kms.us-east-1.amazonaws.com?") {
		t.Fatalf("no proxy: %v", err)
	}
	c = f.client(t, func(c *Config) { c.Credentials.Expires = time.Now().Add(-time.Minute) })
	_, err = c.Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, r)
	if !errors.Is(err, ErrCredentialsExpired) {
		t.Fatalf("expired credentials: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.targets) != 0 {
		t.Fatalf("expired credentials still reached KMS: %v", f.targets)
	}
}

func TestCredentialsRedacted(t *testing.T) {
	c := Credentials{AccessKeyID: "AKID", SecretAccessKey: "s3cr3t", SessionToken: "t0k3n"}
	for _, s := range []string{c.String(), c.LogValue().String()} {
		if strings.Contains(s, "s3cr3t") || strings.Contains(s, "t0k3n") || !strings.Contains(s, "AKID") {
			t.Errorf("credentials rendered as %q", s)
		}
	}
}

func TestKeySourceNeverReuses(t *testing.T) {
	s := NewKeySource(t.Context())
	a, _ := s.Take(t.Context())
	b, _ := s.Take(t.Context())
	if a.N.BitLen() != 2048 || a.Equal(b) {
		t.Fatal("keys are not fresh RSA-2048 keys")
	}
}

func TestCloseDropsIdleConnections(t *testing.T) {
	f := newFakeKMS(t)
	c := f.client(t, nil)
	var conns int
	c.transport.DialContext = func(orig func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
		return func(ctx context.Context, n, a string) (net.Conn, error) {
			conns++
			return orig(ctx, n, a)
		}
	}(c.transport.DialContext)
	r := recipient(t, f.simCA, false)
	for range 2 {
		if _, err := c.Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, r); err != nil {
			t.Fatal(err)
		}
	}
	if conns != 1 {
		t.Fatalf("%d connections for two calls, want 1 kept alive", conns)
	}
	c.Close()
	if _, err := c.Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, r); err != nil {
		t.Fatal(err)
	}
	if conns != 2 {
		t.Fatalf("after Close, %d connections, want a new one (2)", conns)
	}
}

// TestAccessDeniedKeyARN: the hint's doctor command names the key KMS
// named, from both of KMS's phrasings; without one, a placeholder.
func TestAccessDeniedKeyARN(t *testing.T) {
	f := newFakeKMS(t)
	const arn = "arn:aws:kms:eu-central-1:111122223333:key/0063c4a6-1111-2222-3333-444455556666"
	for _, tc := range []struct{ msg, want string }{
		{"User: arn:aws:sts::111122223333:assumed-role/r/i-1 is not authorized to perform: kms:Decrypt on resource: " + arn + " because no resource-based policy allows the kms:Decrypt action", arn},
		{"User: arn:aws:sts::111122223333:assumed-role/r/i-1 is not authorized to perform: kms:Decrypt on resource: " + arn + " with an explicit deny in a resource-based policy", arn},
		{"The attestation document in the request is not valid (bad signature)", ""},
	} {
		f.answer = func(w http.ResponseWriter, _ string, _ map[string]any) { kmsError(w, "AccessDeniedException", tc.msg) }
		_, err := f.client(t, nil).Decrypt(t.Context(), DecryptInput{CiphertextBlob: []byte("x")}, recipient(t, f.simCA, false))
		var ke *Error
		if !errors.As(err, &ke) || ke.KeyARN != tc.want {
			t.Fatalf("message %q: KeyARN %q, want %q", tc.msg, ke.KeyARN, tc.want)
		}
		want := "signer doctor --key-id " + tc.want
		if tc.want == "" {
			want = "signer doctor --key-id KEY"
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("hint lacks %q: %v", want, err)
		}
	}
}

// The recipient carries the NSM's time from its document, not the caller's.
func TestRecipientTimestampIsTheNSMs(t *testing.T) {
	ca, err := nsmsim.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	nsmTime := time.Date(2031, 3, 4, 5, 6, 7, 8_000_000, time.UTC)
	sim, err := nsmsim.New(nsmsim.Options{CA: ca, Now: func() time.Time { return nsmTime }})
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewKeySource(t.Context()).Take(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRecipient(sim, key)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Timestamp.Equal(nsmTime) {
		t.Errorf("Timestamp %v, want the NSM's %v", r.Timestamp, nsmTime)
	}
}

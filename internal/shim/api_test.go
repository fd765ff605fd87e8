package shim_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/fakeenclave"
	"github.com/enclave-signer/enclave-signer/internal/shim"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

type signAnswer struct {
	KeyID        string `json:"key_id"`
	Algorithm    string `json:"algorithm"`
	Signature    []byte `json:"signature"`
	RecoveryID   *int   `json:"recovery_id"`
	SignatureRSV []byte `json:"signature_rsv"`
}

func TestEndpoints(t *testing.T) {
	h := startReady(t, nil)
	msg := []byte("hello enclave")
	digest := sha256.Sum256(msg)

	t.Run("healthz", func(t *testing.T) {
		r := h.do("GET", "/healthz", "")
		if r.status != 200 || !strings.Contains(r.body, `"ok"`) {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("readyz", func(t *testing.T) {
		r := h.do("GET", "/readyz", "")
		if r.status != 200 || !strings.Contains(r.body, `"ready"`) {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("status", func(t *testing.T) {
		r := h.do("GET", "/v1/status", "")
		st := decode[map[string]any](t, r)
		if r.status != 200 || st["state"] != "ready" || st["attestation"] != "simulated" || st["debug_mode"] != false ||
			st["keys"] != 3.0 || st["version"] != "fakeenclave" {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		pcrs, _ := st["pcrs"].(map[string]any)
		if want := "aa" + strings.Repeat("00", 47); pcrs["0"] != want || len(pcrs) != 3 {
			t.Errorf("pcrs = %v, want 3 with \"0\": %s", pcrs, want)
		}
		if _, ok := st["error"]; ok {
			t.Errorf("status of a ready enclave has an error: %s", r.body)
		}
		shimState, _ := st["shim"].(map[string]any)
		if shimState["enclave"] != h.fe.Addr.String() || shimState["last_success"] == nil {
			t.Errorf("shim state = %v, want the enclave address and a last_success", shimState)
		}
	})
	t.Run("keys", func(t *testing.T) {
		r := h.do("GET", "/v1/keys", "")
		got := decode[struct {
			Keys []map[string]string `json:"keys"`
		}](t, r)
		if r.status != 200 || len(got.Keys) != 3 {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		if k := got.Keys[0]; k["id"] != "ed" || k["algorithm"] != "ed25519" || !strings.HasPrefix(k["public_key_pem"], "-----BEGIN PUBLIC KEY-----") {
			t.Errorf("first key = %v", k)
		}
		if _, ok := got.Keys[0]["ethereum_address"]; ok {
			t.Errorf("ed25519 key has an ethereum_address: %v", got.Keys[0])
		}
		if got.Keys[2]["ethereum_address"] != fakeenclave.EthereumAddress {
			t.Errorf("secp256k1 key = %v, want ethereum_address %s", got.Keys[2], fakeenclave.EthereumAddress)
		}
		// keyset_digest: the enclave's, in hex, the digest of the keys
		// listed beside it.
		kl, err := attestation.ParseKeyListJSON([]byte(r.body))
		if err != nil {
			t.Fatalf("the answer is not a key list a relying party can read: %v", err)
		}
		want, _ := attestation.KeySetDigest(kl.Keys)
		if !bytes.Equal(kl.ClaimedDigest, want) || !strings.Contains(r.body, `"keyset_digest":"`+hex.EncodeToString(want)+`"`) {
			t.Errorf("keyset_digest %x, want %x (lowercase hex) in %s", kl.ClaimedDigest, want, r.body)
		}
	})
	t.Run("sign ed25519 message", func(t *testing.T) {
		r := h.do("POST", "/v1/keys/ed/sign", `{"message": "`+b64(msg)+`"}`)
		a := decode[signAnswer](t, r)
		if r.status != 200 || a.KeyID != "ed" || a.Algorithm != "ed25519" || !ed25519.Verify(h.fe.Ed25519, msg, a.Signature) {
			t.Fatalf("got %d %s; want a valid ed25519 signature", r.status, r.body)
		}
		if strings.Contains(r.body, "recovery_id") || strings.Contains(r.body, "signature_rsv") {
			t.Errorf("ed25519 answer has secp256k1 fields: %s", r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
	})
	t.Run("sign empty message", func(t *testing.T) {
		r := h.do("POST", "/v1/keys/ed/sign", `{"message":""}`)
		a := decode[signAnswer](t, r)
		if r.status != 200 || !ed25519.Verify(h.fe.Ed25519, nil, a.Signature) {
			t.Fatalf("got %d %s; want a valid signature of the empty message", r.status, r.body)
		}
	})
	t.Run("sign p256 digest", func(t *testing.T) {
		r := h.do("POST", "/v1/keys/p256/sign", "\n{ \"digest\" :\t\""+b64(digest[:])+"\" }\n")
		a := decode[signAnswer](t, r)
		if r.status != 200 || a.Algorithm != "ecdsa-p256" || !ecdsa.VerifyASN1(h.fe.P256, digest[:], a.Signature) {
			t.Fatalf("got %d %s; want a valid p256 signature", r.status, r.body)
		}
	})
	t.Run("sign secp256k1", func(t *testing.T) {
		r := h.do("POST", "/v1/keys/eth/sign", `{"digest":"`+b64(digest[:])+`"}`)
		a := decode[signAnswer](t, r)
		if r.status != 200 || a.RecoveryID == nil || *a.RecoveryID != 1 || len(a.SignatureRSV) != 65 || a.SignatureRSV[64] != 1 {
			t.Fatalf("got %d %s; want recovery_id 1 and a 65-byte signature_rsv", r.status, r.body)
		}
	})
	t.Run("sign escaped JSON string", func(t *testing.T) {
		// "\/" is a legal JSON escape for "/", which base64 uses.
		m := []byte{0xff, 0xff, 0xff} // base64 "////"
		r := h.do("POST", "/v1/keys/ed/sign", `{"message":"\/\/\/\/"}`)
		a := decode[signAnswer](t, r)
		if r.status != 200 || !ed25519.Verify(h.fe.Ed25519, m, a.Signature) {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("attestation", func(t *testing.T) {
		r := h.do("POST", "/v1/attestation", `{"nonce":"`+b64([]byte("n0nce"))+`","user_data":"`+b64([]byte("ud"))+`"}`)
		got := decode[struct{ Document []byte }](t, r)
		if r.status != 200 || !bytes.Contains(got.Document, []byte("nonce=n0nce|user_data=ud")) {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		r = h.do("POST", "/v1/attestation", "")
		if r.status != 200 || !strings.Contains(r.body, `"document"`) {
			t.Fatalf("attestation with no body: got %d %s", r.status, r.body)
		}
	})
	t.Run("provision", func(t *testing.T) {
		n := len(h.fe.Provisions())
		r := h.do("POST", "/v1/provision", "")
		st := decode[map[string]any](t, r)
		if r.status != 200 || st["state"] != "ready" {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		if got := len(h.fe.Provisions()); got != n+1 {
			t.Errorf("the enclave got %d provisions, want %d", got, n+1)
		}
	})
	t.Run("head", func(t *testing.T) {
		if r := h.do("HEAD", "/healthz", ""); r.status != 200 {
			t.Fatalf("HEAD /healthz: %d", r.status)
		}
	})
}

func TestProvisionRequestContents(t *testing.T) {
	h := startReady(t, nil)
	p := h.fe.Provisions()
	if len(p) != 1 {
		t.Fatalf("the enclave got %d provisions, want 1", len(p))
	}
	req := p[0]
	if req.Region != "eu-west-1" || req.Credentials.AccessKeyID != testAKID ||
		string(req.Credentials.SecretAccessKey) != testSecret || string(req.Credentials.SessionToken) != testSession ||
		!req.Credentials.Expiration.IsZero() {
		t.Errorf("credentials/region = %s %v; want %s with the static secret and token and no expiry", req.Region, req.Credentials, testAKID)
	}
	if string(req.IdentityCiphertext) != "kms-ciphertext-blob" || len(req.Keyrings) != 1 ||
		string(req.Keyrings[0].Data) != "age-encryption.org/v1 stand-in" || req.Keyrings[0].Name != h.cfg.Keyrings[0] {
		t.Errorf("sealed files = %q %v", req.IdentityCiphertext, req.Keyrings)
	}
	if req.EncryptionContext["app"] != "signer" {
		t.Errorf("encryption context = %v", req.EncryptionContext)
	}
}

// TestErrors sends every kind of bad request, checks its status and error
// code, and after each checks that the service still signs.
func TestErrors(t *testing.T) {
	h := startReady(t, nil)
	d := sha256.Sum256([]byte("x"))
	big := `{"message":"` + strings.Repeat("A", shimMaxBody) + `"}`
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
		inMessage                string
	}{
		{"bad JSON", "POST", "/v1/keys/ed/sign", `{"message":`, 400, "malformed_request", ""},
		{"not an object", "POST", "/v1/keys/ed/sign", `["x"]`, 400, "malformed_request", "JSON object"},
		{"empty body", "POST", "/v1/keys/ed/sign", ``, 400, "malformed_request", ""},
		{"both", "POST", "/v1/keys/ed/sign", `{"message":"eA==","digest":"` + b64(d[:]) + `"}`, 400, "malformed_request", "both"},
		{"neither", "POST", "/v1/keys/ed/sign", `{}`, 400, "malformed_request", "neither"},
		{"bad base64", "POST", "/v1/keys/ed/sign", `{"message":"not base64!"}`, 400, "malformed_request", "base64"},
		{"unpadded base64", "POST", "/v1/keys/ed/sign", `{"message":"eA"}`, 400, "malformed_request", "base64"},
		{"unknown field", "POST", "/v1/keys/ed/sign", `{"message":"eA==","extra":1}`, 400, "malformed_request", `unknown field "extra"`},
		{"number value", "POST", "/v1/keys/ed/sign", `{"message":12}`, 400, "malformed_request", "base64 string"},
		{"null value", "POST", "/v1/keys/ed/sign", `{"message":null}`, 400, "malformed_request", "base64 string"},
		{"duplicate field", "POST", "/v1/keys/ed/sign", `{"message":"eA==","message":"eA=="}`, 400, "malformed_request", "twice"},
		{"trailing data", "POST", "/v1/keys/ed/sign", `{"message":"eA=="} {}`, 400, "malformed_request", "after"},
		{"unknown key", "POST", "/v1/keys/nope/sign", `{"message":"eA=="}`, 404, "unknown_key", `"nope"`},
		{"too large", "POST", "/v1/keys/ed/sign", big, 413, "too_large", "1048576"},
		{"invalid digest", "POST", "/v1/keys/p256/sign", `{"digest":"` + b64(d[:31]) + `"}`, 422, "invalid_digest", "31"},
		{"digest not allowed", "POST", "/v1/keys/ed/sign", `{"digest":"` + b64(d[:]) + `"}`, 422, "digest_not_allowed", "ed25519"},
		{"internal", "POST", "/v1/keys/" + fakeenclave.KeyInternalError + "/sign", `{"message":"eA=="}`, 500, "internal", "internal"},
		{"method not allowed", "GET", "/v1/keys/ed/sign", ``, 405, "method_not_allowed", "POST"},
		{"method not allowed on keys", "DELETE", "/v1/keys", ``, 405, "method_not_allowed", "GET"},
		{"no such route", "GET", "/v2/nothing", ``, 404, "not_found", "/v2/nothing"},
		{"attestation unknown field", "POST", "/v1/attestation", `{"nonce":"eA==","x":1}`, 400, "malformed_request", "x"},
		{"attestation bad base64", "POST", "/v1/attestation", `{"nonce":"!!"}`, 400, "malformed_request", ""},
		{"attestation trailing", "POST", "/v1/attestation", `{}{}`, 400, "malformed_request", "after"},
		{"attestation too large", "POST", "/v1/attestation", big, 413, "too_large", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.method, tc.path, tc.body)
			if r.status != tc.status || r.errorCode() != tc.code {
				t.Fatalf("%s %s: got %d %.200s\nwant %d with code %s", tc.method, tc.path, r.status, r.body, tc.status, tc.code)
			}
			if !strings.Contains(r.errorMessage(), tc.inMessage) {
				t.Errorf("message %q does not mention %q", r.errorMessage(), tc.inMessage)
			}
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
			// The service keeps serving.
			if r := h.do("POST", "/v1/keys/ed/sign", `{"message":"eA=="}`); r.status != 200 {
				t.Fatalf("sign after %q: %d %s", tc.name, r.status, r.body)
			}
		})
	}
}

const shimMaxBody = 1 << 20

func TestTooLargeWithoutContentLength(t *testing.T) {
	h := startReady(t, nil)
	// A chunked body (ContentLength -1) must be cut at the limit while
	// reading, not trusted.
	body := io.MultiReader(strings.NewReader(`{"message":"`), strings.NewReader(strings.Repeat("A", 2*shimMaxBody)), strings.NewReader(`"}`))
	r := h.doReader("POST", "/v1/keys/ed/sign", body, -1)
	if r.status != 413 || r.errorCode() != "too_large" {
		t.Fatalf("got %d %s, want 413 too_large", r.status, r.body)
	}
	// Just under the limit is fine.
	msg := bytes.Repeat([]byte{7}, 700_000)
	r = h.do("POST", "/v1/keys/ed/sign", `{"message":"`+b64(msg)+`"}`)
	a := decode[signAnswer](t, r)
	if r.status != 200 || !ed25519.Verify(h.fe.Ed25519, msg, a.Signature) {
		t.Fatalf("700 kB message: got %d %.200s", r.status, r.body)
	}
}

func TestNotReady(t *testing.T) {
	fe := fakeenclave.Start(t)
	fe.FailProvisioning(&wire.StatusError{
		Step: "kms_decrypt", Message: "kms decrypt: access denied",
		KMSCode: "AccessDeniedException", KMSMessage: "User is not authorized to perform: kms:Decrypt",
		PCR0: bytes.Repeat([]byte{0xab}, 48),
	})
	h := start(t, fe, nil)
	if _, err := fe.WaitProvisions(3, 3*time.Second); err != nil {
		t.Fatalf("a failing enclave must be retried with backoff: %v", err)
	}
	pcr0 := strings.Repeat("ab", 48)

	r := h.do("GET", "/readyz", "")
	if r.status != 503 || r.errorCode() != "not_ready" {
		t.Fatalf("/readyz while failed: %d %s", r.status, r.body)
	}
	for _, want := range []string{"kms_decrypt", "AccessDeniedException", "not authorized", pcr0, "to fix: the key policy does not admit this enclave"} {
		if !strings.Contains(r.errorMessage(), want) {
			t.Errorf("/readyz reason %q does not mention %q", r.errorMessage(), want)
		}
	}
	r = h.do("GET", "/v1/status", "")
	st := decode[struct {
		State string            `json:"state"`
		Error map[string]string `json:"error"`
		Shim  map[string]any    `json:"shim"`
	}](t, r)
	if r.status != 200 || st.State != "failed" || st.Error["step"] != "kms_decrypt" || st.Error["kms_code"] != "AccessDeniedException" ||
		st.Error["kms_message"] == "" || st.Error["pcr0"] != pcr0 || st.Error["message"] == "" ||
		!strings.Contains(st.Error["hint"], "key policy") || !strings.Contains(st.Error["hint"], "PCR0 "+pcr0) {
		t.Fatalf("/v1/status while failed: %d %s", r.status, r.body)
	}
	if st.Shim["last_error"] == nil {
		t.Errorf("shim.last_error missing while failing: %s", r.body)
	}
	for _, path := range []string{"/v1/keys/ed/sign", "/v1/keys"} {
		method, body := "POST", `{"message":"eA=="}`
		if path == "/v1/keys" {
			method, body = "GET", ""
		}
		if r := h.do(method, path, body); r.status != 503 || r.errorCode() != "not_ready" {
			t.Errorf("%s %s while failed: %d %s, want 503 not_ready", method, path, r.status, r.body)
		}
	}
	r = h.do("POST", "/v1/provision", "")
	if r.status != 500 || r.errorCode() != "internal" || !strings.Contains(r.errorMessage(), "kms_decrypt") || !strings.Contains(r.body, `"status":{`) {
		t.Errorf("POST /v1/provision while failing: %d %s; want 500 internal naming the step, with the status", r.status, r.body)
	}

	// The cause goes away: the shim's own retries make the enclave ready.
	fe.FailProvisioning(nil)
	h.waitReady(3 * time.Second)
}

func TestWaitingReason(t *testing.T) {
	h := start(t, nil, func(c *shim.Config, _ *shim.Options) {
		c.Identity = "/nonexistent/identity.enc"
	})
	if _, err := h.fe.WaitProvisions(1, 200*time.Millisecond); err == nil {
		t.Fatal("the enclave was provisioned without an identity")
	}
	deadline := time.Now().Add(2 * time.Second)
	var r response
	for time.Now().Before(deadline) {
		r = h.do("GET", "/readyz", "")
		if strings.Contains(r.errorMessage(), "last attempt") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r.status != 503 || !strings.Contains(r.errorMessage(), "waiting") || !strings.Contains(r.errorMessage(), "/nonexistent/identity.enc") {
		t.Fatalf("/readyz with a missing identity file: %d %s; want 503 naming the file", r.status, r.body)
	}
	r = h.do("POST", "/v1/provision", "")
	if r.status != 500 || r.errorCode() != "internal" || !strings.Contains(r.errorMessage(), "identity") {
		t.Fatalf("POST /v1/provision with a missing identity file: %d %s", r.status, r.body)
	}
}

var metricLine = regexp.MustCompile(`^([a-z_]+)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|\+Inf|NaN)$`)

func TestMetrics(t *testing.T) {
	h := startReady(t, nil)
	for range 5 {
		h.do("POST", "/v1/keys/ed/sign", `{"message":"eA=="}`)
	}
	h.do("POST", "/v1/keys/nope/sign", `{"message":"eA=="}`)
	h.do("GET", "/nowhere", "")
	r := h.do("GET", "/metrics", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("got %d %s", r.status, r.header.Get("Content-Type"))
	}
	for _, want := range []string{
		`signer_http_requests_total{route="POST /v1/keys/{id}/sign",code="200"} 5`,
		`signer_http_requests_total{route="POST /v1/keys/{id}/sign",code="404"} 1`,
		`signer_http_requests_total{route="other",code="404"} 1`,
		`signer_http_errors_total{code="unknown_key"} 1`,
		`signer_http_errors_total{code="not_found"} 1`,
		`signer_http_request_duration_seconds_count{route="POST /v1/keys/{id}/sign"} 6`,
		`signer_http_request_duration_seconds_bucket{route="POST /v1/keys/{id}/sign",le="+Inf"} 6`,
		`signer_enclave_state{state="ready"} 1`,
		`signer_enclave_state{state="waiting"} 0`,
		`signer_enclave_keys 3`,
		`signer_provisions_total{result="ok"} 1`,
	} {
		if !strings.Contains(r.body, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Exposition format: every family declared before its samples, every
	// sample well formed, buckets cumulative.
	declared := map[string]string{}
	var lastBucket = map[string]float64{}
	for _, line := range strings.Split(strings.TrimSuffix(r.body, "\n"), "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			declared[name] = typ
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := metricLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("malformed sample line %q", line)
			continue
		}
		family := m[1]
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(family, suf); ok && declared[base] == "histogram" {
				family = base
			}
		}
		if declared[family] == "" {
			t.Errorf("sample %q before its # TYPE", line)
		}
		if strings.HasSuffix(m[1], "_bucket") {
			v, _ := strconv.ParseFloat(m[3], 64)
			route := m[2][:strings.Index(m[2], ",le=")]
			if v < lastBucket[route] {
				t.Errorf("bucket %q decreases", line)
			}
			lastBucket[route] = v
		}
	}
}

func TestNoSecretsInLogs(t *testing.T) {
	fe := fakeenclave.Start(t)
	fe.FailProvisioning(&wire.StatusError{Step: "kms_decrypt", Message: "denied"})
	h := start(t, fe, nil)
	fe.WaitProvisions(2, 2*time.Second)
	fe.FailProvisioning(nil)
	h.waitReady(3 * time.Second)
	var bodies []string
	for _, p := range []string{"/v1/status", "/readyz", "/metrics"} {
		bodies = append(bodies, h.do("GET", p, "").body)
	}
	bodies = append(bodies, h.do("POST", "/v1/provision", "").body)
	secretMsg := "super-secret-message-body"
	h.do("POST", "/v1/keys/ed/sign", `{"message":"`+b64([]byte(secretMsg))+`"}`)
	all := h.logs.String() + strings.Join(bodies, "\n")
	if !strings.Contains(h.logs.String(), testAKID) {
		t.Fatalf("logs never mention the access key id; is the log capture working?\n%s", h.logs)
	}
	for _, secret := range []string{testSecret, testSession, secretMsg, b64([]byte(secretMsg))} {
		if strings.Contains(all, secret) {
			t.Errorf("%q appears in the logs or answers", secret)
		}
	}
}

func TestKeyIDs(t *testing.T) {
	h := startReady(t, nil)
	// The key id comes back in the enclave's message; the answer must stay
	// valid JSON whatever it contains.
	id := "we\"ird\\key\u2028\x01"
	r := h.do("POST", "/v1/keys/"+url.PathEscape(id)+"/sign", `{"message":"eA=="}`)
	if r.status != 404 || r.errorCode() != "unknown_key" || !strings.Contains(r.errorMessage(), "ird") {
		t.Fatalf("got %d %q; want 404 unknown_key as valid JSON naming the id", r.status, r.body)
	}
	// An id that is not UTF-8 is refused by the shim: sent on, it would be
	// a malformed frame and cost the connection every request on it.
	before := h.shim.Client().Connects()
	r = h.do("POST", "/v1/keys/"+url.PathEscape("k\xff")+"/sign", `{"message":"eA=="}`)
	if r.status != 400 || r.errorCode() != "malformed_request" || !strings.Contains(r.errorMessage(), "UTF-8") {
		t.Fatalf("non-UTF-8 key id: got %d %q; want 400 malformed_request", r.status, r.body)
	}
	if r := h.do("POST", "/v1/keys/ed/sign", `{"message":"eA=="}`); r.status != 200 || h.shim.Client().Connects() != before {
		t.Fatalf("after a non-UTF-8 key id: sign %d, connects %d (was %d); want 200 on the same connections", r.status, h.shim.Client().Connects(), before)
	}
	r = h.do("POST", "/v1/keys//sign", `{"message":"eA=="}`)
	if r.status/100 != 4 || r.errorCode() == "" {
		t.Fatalf("empty key id: got %d %q; want a 4xx error body", r.status, r.body)
	}
}

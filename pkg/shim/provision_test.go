package shim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/enclave-signer/enclave-signer/pkg/shim"
	"github.com/enclave-signer/enclave-signer/pkg/wire"
)

func TestEnclaveRestartReprovisions(t *testing.T) {
	h := startReady(t, nil)
	for i := range 2 {
		if err := h.fe.Restart(); err != nil {
			t.Fatal(err)
		}
		if _, err := h.fe.WaitProvisions(i+2, 3*time.Second); err != nil {
			t.Fatalf("restart %d: the shim did not re-provision by itself: %v", i+1, err)
		}
		h.waitReady(3 * time.Second)
		if r := h.do("POST", "/v1/keys/ed/sign", `{"message":"eA=="}`); r.status != 200 {
			t.Fatalf("sign after restart %d: %d %s", i+1, r.status, r.body)
		}
	}
}

func TestInFlightDuringRestartGet503(t *testing.T) {
	h := startReady(t, nil)
	h.fe.HoldSigns()
	const n = 6
	results := make(chan response, n)
	for range n {
		go func() { results <- h.do("POST", "/v1/keys/ed/sign", `{"message":"eA=="}`) }()
	}
	for range n {
		<-h.fe.SignsHeld()
	}
	start := time.Now()
	if err := h.fe.Restart(); err != nil {
		t.Fatal(err)
	}
	for range n {
		r := <-results
		if r.status != 503 || r.errorCode() != "not_ready" || !strings.Contains(r.errorMessage(), "unavailable") {
			t.Errorf("in-flight sign during a restart: %d %s; want 503 not_ready saying the enclave is unavailable", r.status, r.body)
		}
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("in-flight requests took %s to fail (request timeout %s): they must fail when the connection drops", el, h.cfg.RequestTimeout.D())
	}
	h.fe.ReleaseSigns()
	h.waitReady(3 * time.Second)
}

func TestSlowEnclaveTimesOut(t *testing.T) {
	h := startReady(t, func(c *shim.Config, _ *shim.Options) { c.RequestTimeout = shim.Duration(100 * time.Millisecond) })
	h.fe.HoldSigns()
	defer h.fe.ReleaseSigns()
	start := time.Now()
	r := h.do("POST", "/v1/keys/ed/sign", `{"message":"eA=="}`)
	if r.status != 503 || r.errorCode() != "not_ready" || !strings.Contains(r.errorMessage(), "100ms") {
		t.Fatalf("got %d %s; want 503 not_ready naming the 100ms timeout", r.status, r.body)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %s", el)
	}
}

// fakeIMDS serves IMDSv2 role credentials: the first credentials request
// gets credentials expiring in firstTTL, every later one new credentials
// valid for an hour.
type fakeIMDS struct {
	firstTTL time.Duration
	creds    atomic.Int32
	mu       sync.Mutex
	issued   []time.Time
}

func (f *fakeIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == "PUT" && r.URL.Path == "/latest/api/token":
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
		fmt.Fprint(w, "imds-token")
	case r.Header.Get("X-Aws-Ec2-Metadata-Token") != "imds-token":
		http.Error(w, "no token", http.StatusUnauthorized)
	case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
		fmt.Fprint(w, "signer-role")
	case r.URL.Path == "/latest/meta-data/iam/security-credentials/signer-role":
		n := f.creds.Add(1)
		ttl, id := time.Hour, fmt.Sprintf("ASIANEW%d", n)
		if n == 1 {
			ttl, id = f.firstTTL, "ASIAFIRST"
		}
		exp := time.Now().Add(ttl).UTC().Truncate(time.Second)
		f.mu.Lock()
		f.issued = append(f.issued, exp)
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{
			"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": time.Now().UTC().Format(time.RFC3339),
			"AccessKeyId": id, "SecretAccessKey": "imds-secret-" + id, "Token": "imds-token-" + id,
			"Expiration": exp.Format(time.RFC3339),
		})
	default:
		http.NotFound(w, r)
	}
}

func TestCredentialRefreshFromIMDS(t *testing.T) {
	fake := &fakeIMDS{firstTTL: 5*time.Minute + 1500*time.Millisecond}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	provider := aws.NewCredentialsCache(ec2rolecreds.New(func(o *ec2rolecreds.Options) {
		o.Client = imds.New(imds.Options{Endpoint: srv.URL, ClientEnableState: imds.ClientEnabled})
	}))
	h := start(t, nil, func(c *shim.Config, o *shim.Options) {
		o.AWS = aws.Config{Region: "eu-west-1", Credentials: provider}
		// The default margin: the first credentials are due for refresh
		// 1.5 s after they are issued.
		c.CredentialRefresh = 0
	})
	p, err := h.fe.WaitProvisions(2, 5*time.Second)
	if err != nil {
		t.Fatalf("no second provisioning before the credentials expired: %v", err)
	}
	first, second := p[0].Credentials, p[1].Credentials
	fake.mu.Lock()
	issued := append([]time.Time(nil), fake.issued...)
	fake.mu.Unlock()
	if first.AccessKeyID != "ASIAFIRST" || string(first.SessionToken) != "imds-token-ASIAFIRST" || !first.Expiration.Equal(issued[0]) {
		t.Errorf("first provisioning: credentials %v, want ASIAFIRST expiring %s", first, issued[0])
	}
	if !strings.HasPrefix(second.AccessKeyID, "ASIANEW") || string(second.SecretAccessKey) != "imds-secret-"+second.AccessKeyID ||
		time.Until(second.Expiration) < 50*time.Minute {
		t.Errorf("second provisioning: credentials %v, want new ones valid for about an hour", second)
	}
	// Once refreshed, no more provisioning until the new ones near expiry.
	time.Sleep(300 * time.Millisecond)
	if n := len(h.fe.Provisions()); n != 2 {
		t.Errorf("%d provisionings after the refresh, want 2", n)
	}
	r := h.do("GET", "/v1/status", "")
	if !strings.Contains(r.body, `"credentials_expiration":"`+second.Expiration.UTC().Format(time.RFC3339)) {
		t.Errorf("status does not show the new credentials' expiration %s: %s", second.Expiration, r.body)
	}
	if m := h.do("GET", "/metrics", "").body; !strings.Contains(m, fmt.Sprintf("signer_credentials_expiry_timestamp_seconds %d\n", second.Expiration.Unix())) {
		t.Errorf("metrics lack the credentials expiry %d", second.Expiration.Unix())
	}
}

// fakeS3 serves objects under path-style addressing (GET /BUCKET/KEY),
// checking that each request is SigV4-signed by the expected access key.
type fakeS3 struct {
	t       *testing.T
	objects map[string][]byte
	mu      sync.Mutex
	paths   []string
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.paths = append(f.paths, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	if auth := r.Header.Get("Authorization"); !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+testAKID+"/") || !strings.Contains(auth, "/eu-west-1/s3/aws4_request") {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<Error><Code>AccessDenied</Code><Message>bad Authorization %q</Message></Error>`, auth)
		return
	}
	data, ok := f.objects[r.URL.Path]
	if r.Method != "GET" || !ok {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>`)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.Write(data)
}

func TestS3Sources(t *testing.T) {
	s3 := &fakeS3{t: t, objects: map[string][]byte{
		"/sealed/identity.enc":       []byte("identity-from-s3"),
		"/sealed/keyrings/main.age":  []byte("keyring-from-s3"),
		"/sealed/keyrings/extra.age": []byte("extra-from-s3"),
	}}
	srv := httptest.NewServer(s3)
	defer srv.Close()
	h := start(t, nil, func(c *shim.Config, _ *shim.Options) {
		c.Identity = "s3://sealed/identity.enc"
		c.Keyrings = append(c.Keyrings, "s3://sealed/keyrings/main.age", "s3://sealed/keyrings/extra.age")
		c.S3Endpoint = srv.URL
		c.S3UsePathStyle = true
	})
	h.waitReady(3 * time.Second)
	p := h.fe.Provisions()[0]
	if string(p.IdentityCiphertext) != "identity-from-s3" || len(p.Keyrings) != 3 ||
		string(p.Keyrings[1].Data) != "keyring-from-s3" || p.Keyrings[1].Name != "s3://sealed/keyrings/main.age" ||
		string(p.Keyrings[2].Data) != "extra-from-s3" {
		t.Fatalf("provisioned identity %q keyrings %v", p.IdentityCiphertext, p.Keyrings)
	}
	s3.mu.Lock()
	paths := strings.Join(s3.paths, ",")
	s3.mu.Unlock()
	if paths != "GET /sealed/identity.enc,GET /sealed/keyrings/main.age,GET /sealed/keyrings/extra.age" {
		t.Errorf("S3 requests: %s", paths)
	}

	// A missing object: provisioning fails naming the URI and S3's code.
	h2 := start(t, nil, func(c *shim.Config, _ *shim.Options) {
		c.Identity = "s3://sealed/missing.enc"
		c.S3Endpoint = srv.URL
		c.S3UsePathStyle = true
	})
	r := h2.do("POST", "/v1/provision", "")
	if r.status != 500 || !strings.Contains(r.errorMessage(), "s3://sealed/missing.enc") || !strings.Contains(r.errorMessage(), "NoSuchKey") {
		t.Fatalf("provisioning from a missing object: %d %s", r.status, r.body)
	}
}

func TestProvisionUnreachable(t *testing.T) {
	h := start(t, nil, nil)
	h.fe.Stop()
	r := h.do("POST", "/v1/provision", "")
	if r.status != 503 || r.errorCode() != "not_ready" || !strings.Contains(r.errorMessage(), h.fe.Addr.String()) {
		t.Fatalf("provision with no enclave: %d %s; want 503 not_ready naming the address", r.status, r.body)
	}
	r = h.do("GET", "/readyz", "")
	if r.status != 503 || r.errorCode() != "not_ready" {
		t.Fatalf("/readyz with no enclave: %d %s", r.status, r.body)
	}
	if m := h.do("GET", "/metrics", "").body; !strings.Contains(m, `signer_enclave_state{state="unreachable"} 1`) {
		t.Errorf("metrics do not show the enclave unreachable")
	}
}

func TestFailedReprovisionKeepsServing(t *testing.T) {
	h := startReady(t, nil)
	h.fe.FailProvisioning(&wire.StatusError{Step: "keyring", Message: "keyring \"b.age\": duplicate key id"})
	r := h.do("POST", "/v1/provision", "")
	st := decode[struct {
		Status struct {
			State string            `json:"state"`
			Error map[string]string `json:"error"`
		} `json:"status"`
	}](t, r)
	if r.status != 500 || r.errorCode() != "internal" || !strings.Contains(r.errorMessage(), "keep serving") ||
		st.Status.State != "ready" || st.Status.Error["step"] != "keyring" {
		t.Fatalf("a failed re-provisioning: %d %s; want 500 with the status (still ready, error step keyring)", r.status, r.body)
	}
	if r := h.do("POST", "/v1/keys/ed/sign", `{"message":"eA=="}`); r.status != 200 {
		t.Fatalf("sign after a failed re-provisioning: %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/readyz", ""); r.status != 200 {
		t.Fatalf("/readyz after a failed re-provisioning: %d %s", r.status, r.body)
	}
	// A ready enclave is not re-provisioned in a loop after the failure.
	n := len(h.fe.Provisions())
	time.Sleep(200 * time.Millisecond)
	if got := len(h.fe.Provisions()); got != n {
		t.Errorf("%d provisionings in 200ms after a failed re-provisioning of a ready enclave, want none", got-n)
	}
}

// TestInstanceInStatus: the label given in the configuration is in
// /v1/status's shim section, so whoever started the shim can tell it from
// another process answering on the same address.
func TestInstanceInStatus(t *testing.T) {
	h := startReady(t, func(c *shim.Config, _ *shim.Options) { c.Instance = "dev-3f9a" })
	st := decode[struct {
		Shim map[string]any `json:"shim"`
	}](t, h.do("GET", "/v1/status", ""))
	if st.Shim["instance"] != "dev-3f9a" {
		t.Fatalf("shim section %v, want instance dev-3f9a", st.Shim)
	}
}

// TestEmptySealedFileNamed: a keyring or identity file of 0 bytes fails on
// the host side, before the enclave is asked; the error names the file,
// says it is empty and what it should hold, in /v1/status and /readyz.
func TestEmptySealedFileNamed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		empty func(c *shim.Config) string
		want  []string
	}{
		{"keyring", func(c *shim.Config) string { return c.Keyrings[0] }, []string{"keyring ", "is empty (0 bytes)", "holds no keys", "signer keyring new"}},
		{"identity", func(c *shim.Config) string { return c.Identity }, []string{"identity ", "is empty (0 bytes)", "signer seal"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var path string
			h := start(t, nil, func(c *shim.Config, _ *shim.Options) {
				path = tc.empty(c)
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			})
			deadline := time.Now().Add(5 * time.Second)
			for {
				st := decode[struct {
					State string         `json:"state"`
					Shim  map[string]any `json:"shim"`
				}](t, h.do("GET", "/v1/status", ""))
				msg, _ := st.Shim["last_error"].(string)
				if msg != "" {
					for _, want := range append(tc.want, path) {
						if !strings.Contains(msg, want) {
							t.Errorf("last_error %q does not contain %q", msg, want)
						}
					}
					if st.State != "waiting" {
						t.Errorf("state %s: a host-side failure leaves the enclave waiting", st.State)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no last_error after 5 s: %v", st)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if r := h.do("GET", "/readyz", ""); r.status != 503 || !strings.Contains(r.errorMessage(), "is empty (0 bytes)") {
				t.Errorf("/readyz: %d %s, want 503 saying the file is empty", r.status, r.body)
			}
		})
	}
}

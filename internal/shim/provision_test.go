package shim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/enclave-signer/enclave-signer/internal/fakeenclave"
	"github.com/enclave-signer/enclave-signer/internal/shim"
	"github.com/enclave-signer/enclave-signer/internal/wire"
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
	denied  map[string]bool // paths answered AccessDenied
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
	if f.denied[r.URL.Path] {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`)
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
	if paths != "GET /sealed/identity.enc,GET /sealed/keyrings/main.age,GET /sealed/keyrings/main.age.sig,GET /sealed/keyrings/extra.age,GET /sealed/keyrings/extra.age.sig" {
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

// metricValue returns the value of one sample line of /metrics, -1 if absent.
func (h *harness) metricValue(sample string) int {
	h.t.Helper()
	for _, line := range strings.Split(h.do("GET", "/metrics", "").body, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				h.t.Fatalf("metric %s: %q", sample, v)
			}
			return n
		}
	}
	return -1
}

// TestPermanentErrorNotRetried: a keyring that can never fit in a
// provisioning fails at once, with a status that says so and what to do,
// instead of being retried with backoff forever. A manual provisioning
// after the fix succeeds.
func TestPermanentErrorNotRetried(t *testing.T) {
	var keyring string
	h := start(t, nil, func(c *shim.Config, _ *shim.Options) {
		keyring = c.Keyrings[0]
		// Under the per-file limit, over what one provisioning carries.
		if err := writeFile(keyring, strings.Repeat("k", wire.MaxFrameSize-8<<10)); err != nil {
			t.Fatal(err)
		}
	})
	const failed = `signer_provisions_total{result="failed"}`
	deadline := time.Now().Add(3 * time.Second)
	for h.metricValue(failed) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no provisioning attempt within 3 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Backoff is 20 ms to 200 ms here: a retry loop would make several
	// more attempts in this time.
	time.Sleep(600 * time.Millisecond)
	if n := h.metricValue(failed); n != 1 {
		t.Errorf("%d failed attempts, want 1: a permanent error must not be retried", n)
	}
	if n := len(h.fe.Provisions()); n != 0 {
		t.Errorf("the enclave got %d provisionings", n)
	}
	r := h.do("GET", "/v1/status", "")
	st := decode[struct {
		State string         `json:"state"`
		Shim  map[string]any `json:"shim"`
	}](t, r)
	lastErr, _ := st.Shim["last_error"].(string)
	if st.State != "waiting" || !strings.Contains(lastErr, "one provisioning carries at most") || st.Shim["last_error_permanent"] != true || st.Shim["next_attempt"] != nil {
		t.Fatalf("status after a permanent failure: %s\nwant waiting, last_error saying why, last_error_permanent true and no next_attempt", r.body)
	}
	r = h.do("GET", "/readyz", "")
	if r.status != 503 || !strings.Contains(r.errorMessage(), "not retried") || !strings.Contains(r.errorMessage(), "signer provision") {
		t.Errorf("/readyz after a permanent failure: %d %s; want 503 saying it is not retried and to run signer provision", r.status, r.body)
	}

	// An enclave restart is worth one more attempt (a new signerd may
	// accept what the old one refused), not a loop.
	if err := h.fe.Restart(); err != nil {
		t.Fatal(err)
	}
	for h.metricValue(failed) < 2 {
		if time.Now().After(deadline.Add(3 * time.Second)) {
			t.Fatal("no attempt after an enclave restart")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(600 * time.Millisecond)
	if n := h.metricValue(failed); n != 2 {
		t.Errorf("%d failed attempts after a restart, want 2", n)
	}

	// Fixed: a manual provisioning succeeds and clears the error.
	if err := writeFile(keyring, "age-encryption.org/v1 stand-in"); err != nil {
		t.Fatal(err)
	}
	if r := h.do("POST", "/v1/provision", ""); r.status != 200 {
		t.Fatalf("POST /v1/provision after the fix: %d %s", r.status, r.body)
	}
	r = h.do("GET", "/v1/status", "")
	if strings.Contains(r.body, "last_error") {
		t.Errorf("status after a successful provisioning still has an error: %s", r.body)
	}
}

// TestForbiddenNotRetried: an enclave that refuses the shim as an
// unprivileged peer (its source port is not below 1024) refuses it again
// whatever the shim sends: the shim does not retry by itself, says why
// in its status, and POST /v1/provision answers 403 forbidden with the
// enclave's message.
func TestForbiddenNotRetried(t *testing.T) {
	fe := fakeenclave.Start(t)
	const why = "provisioning is accepted only from a privileged source port (below 1024)"
	fe.RefuseProvisioning(wire.NewError(wire.CodeForbidden, why))
	h := start(t, fe, nil)
	const failed = `signer_provisions_total{result="failed"}`
	deadline := time.Now().Add(3 * time.Second)
	for h.metricValue(failed) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no provisioning attempt within 3 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(600 * time.Millisecond) // backoff is 20 to 200 ms here
	if n := h.metricValue(failed); n != 1 {
		t.Errorf("%d failed attempts, want 1: a refusal of the shim itself must not be retried", n)
	}
	r := h.do("GET", "/v1/status", "")
	st := decode[struct {
		Shim map[string]any `json:"shim"`
	}](t, r)
	if lastErr, _ := st.Shim["last_error"].(string); !strings.Contains(lastErr, why) || st.Shim["last_error_permanent"] != true {
		t.Errorf("status after the refusal: %s\nwant last_error with the enclave's reason, last_error_permanent true", r.body)
	}
	r = h.do("POST", "/v1/provision", "")
	if r.status != 403 || !strings.Contains(r.body, `"code":"forbidden"`) || !strings.Contains(r.errorMessage(), why) {
		t.Errorf("POST /v1/provision: %d %s; want 403 forbidden with the enclave's message", r.status, r.body)
	}
	if n := len(fe.Provisions()); n != 0 {
		t.Errorf("the enclave recorded %d provisionings", n)
	}
}

// TestTransientErrorRetried: a missing file may appear (a deploy still
// copying it): the shim keeps trying with backoff, as before.
func TestTransientErrorRetried(t *testing.T) {
	var identity string
	h := start(t, nil, func(c *shim.Config, _ *shim.Options) {
		identity = c.Identity
		c.Identity += ".missing"
	})
	const failed = `signer_provisions_total{result="failed"}`
	deadline := time.Now().Add(3 * time.Second)
	for h.metricValue(failed) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d failed attempts in 3 s, want retries with backoff", h.metricValue(failed))
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := h.do("GET", "/v1/status", "")
	st := decode[struct {
		Shim map[string]any `json:"shim"`
	}](t, r)
	if st.Shim["next_attempt"] == nil || st.Shim["last_error_permanent"] != nil {
		t.Errorf("status while retrying: %s; want a next_attempt and no last_error_permanent", r.body)
	}
	if err := os.Rename(identity, identity+".missing"); err != nil {
		t.Fatal(err)
	}
	h.waitReady(3 * time.Second)
}

// TestNoNextAttemptWhileReady: no automatic provisioning follows a failed
// one while the enclave is ready, so the status must not announce one:
// not after a manual provisioning that failed (the enclave keeps its
// keys), and not once the enclave is ready again after failures.
func TestNoNextAttemptWhileReady(t *testing.T) {
	// One connection: the pool's second connection, opened later, would
	// count as a reconnection, which resets the backoff by itself.
	h := startReady(t, func(c *shim.Config, _ *shim.Options) { c.EnclaveConnections = 1 })
	h.fe.FailProvisioning(&wire.StatusError{Step: "keyring", Message: `keyring "b.age": duplicate key id`})
	if r := h.do("POST", "/v1/provision", ""); r.status != 500 || strings.Contains(r.body, "next_attempt") {
		t.Errorf("a failed manual provisioning of a ready enclave: %d %s; want 500 without a next_attempt", r.status, r.body)
	}
	// Several status checks later, still none.
	time.Sleep(10 * h.cfg.StatusInterval.D())
	r := h.do("GET", "/v1/status", "")
	if strings.Contains(r.body, "next_attempt") || !strings.Contains(r.body, `"last_error"`) {
		t.Errorf("status of a ready enclave after a failed manual provisioning: %s; want the last_error and no next_attempt", r.body)
	}

	// Failing until the enclave becomes ready by other means (here: forced).
	fe := fakeenclave.Start(t)
	fe.FailProvisioning(&wire.StatusError{Step: "kms_decrypt", Message: "denied", KMSCode: "AccessDeniedException"})
	h2 := start(t, fe, func(c *shim.Config, _ *shim.Options) { c.EnclaveConnections = 1 })
	if _, err := h2.fe.WaitProvisions(2, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	h2.fe.SetState(wire.StateReady, nil)
	h2.waitReady(3 * time.Second)
	time.Sleep(10 * h2.cfg.StatusInterval.D())
	if r := h2.do("GET", "/v1/status", ""); strings.Contains(r.body, "next_attempt") {
		t.Errorf("status of an enclave ready again after failures: %s; want no next_attempt", r.body)
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

// TestKeyringSignatureFiles: the shim sends each keyring's signature file,
// KEYRING.sig next to it (a local file or an S3 object), with the keyring;
// a keyring without one goes without; an empty one or one S3 refuses to
// give is an error, not a silent omission.
func TestKeyringSignatureFiles(t *testing.T) {
	s3 := &fakeS3{t: t, objects: map[string][]byte{
		"/sealed/identity.enc":      []byte("identity-from-s3"),
		"/sealed/signed.age":        []byte("signed-keyring"),
		"/sealed/signed.age.sig":    []byte("signature-of-signed"),
		"/sealed/unsigned.age":      []byte("unsigned-keyring"),
		"/sealed/empty-sig.age":     []byte("k"),
		"/sealed/empty-sig.age.sig": {},
		"/sealed/denied.age":        []byte("k"),
	}, denied: map[string]bool{"/sealed/denied.age.sig": true}}
	srv := httptest.NewServer(s3)
	defer srv.Close()
	h := start(t, nil, func(c *shim.Config, _ *shim.Options) {
		if err := os.WriteFile(c.Keyrings[0]+".sig", []byte("signature-of-local"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.Keyrings = append(c.Keyrings, "s3://sealed/signed.age", "s3://sealed/unsigned.age")
		c.S3Endpoint = srv.URL
		c.S3UsePathStyle = true
	})
	h.waitReady(3 * time.Second)
	p := h.fe.Provisions()[0]
	if len(p.Keyrings) != 3 || string(p.Keyrings[0].Signature) != "signature-of-local" ||
		string(p.Keyrings[1].Data) != "signed-keyring" || string(p.Keyrings[1].Signature) != "signature-of-signed" ||
		p.Keyrings[2].Signature != nil {
		t.Fatalf("provisioned keyrings: %+v", p.Keyrings)
	}
	if !strings.Contains(h.logs.String(), "keyring has no signature file") {
		t.Error("a keyring without a signature file is not logged")
	}

	h2 := start(t, nil, func(c *shim.Config, _ *shim.Options) {
		c.Keyrings = []string{"s3://sealed/empty-sig.age"}
		c.S3Endpoint = srv.URL
		c.S3UsePathStyle = true
	})
	r := h2.do("POST", "/v1/provision", "")
	if r.status != 500 || !strings.Contains(r.errorMessage(), "s3://sealed/empty-sig.age.sig is empty") {
		t.Fatalf("an empty signature file: %d %s", r.status, r.body)
	}
	// S3 refuses (as it does for a missing object when the role may not
	// list the bucket): an error naming the object, not "unsigned".
	h3 := start(t, nil, func(c *shim.Config, _ *shim.Options) {
		c.Keyrings = []string{"s3://sealed/denied.age"}
		c.S3Endpoint = srv.URL
		c.S3UsePathStyle = true
	})
	r = h3.do("POST", "/v1/provision", "")
	if r.status != 500 || !strings.Contains(r.errorMessage(), "s3://sealed/denied.age.sig: AccessDenied") {
		t.Fatalf("a signature file S3 refuses: %d %s", r.status, r.body)
	}
}

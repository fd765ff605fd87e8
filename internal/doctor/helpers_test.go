package doctor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/policy"
)

const (
	pcr0v1      = "287b24930a9f0fe14b01a71ecdc00d8be8fad90f9834d547158854b8279c74095c43f8d7f047714e98deb7903f20e3dd"
	pcr0v2      = "d980c72546e1ef1b507a28a468f1c8924a645df8fb379c7204f2cd28b076d2fef74342bfbcc03271cc3fae78757514aa"
	enclaveRole = "arn:aws:iam::123456789012:role/NitroEnclaveInstanceRole"
	sessionARN  = "arn:aws:sts::123456789012:assumed-role/NitroEnclaveInstanceRole/i-1234567890abcdef0"
	keyID       = "1234abcd-12ab-34cd-56ef-1234567890ab"
	// The fixture credentials' secrets, which must never be printed.
	fixtureSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	fixtureToken  = "IQoJb3JpZ2luX2VjEXAMPLETOKENdoctortestfixture"
)

// fixtureExpiry is the Expiration in testdata/imds/credentials.json.
var fixtureExpiry = time.Date(2026, 11, 20, 16, 0, 0, 0, time.UTC)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeRunner answers one command with recorded output.
type fakeRunner struct {
	out   []byte
	err   error
	mu    sync.Mutex
	calls []string
}

func (f *fakeRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, strings.Join(append([]string{name}, args...), " "))
	f.mu.Unlock()
	return f.out, f.err
}

// procFS builds a /proc with the given PIDs' cmdline fixtures.
func procFS(t testing.TB, cmdlines map[string]string) fstest.MapFS {
	m := fstest.MapFS{"self/status": {Data: []byte("Name: doctor\n")}}
	for pid, name := range cmdlines {
		m[pid+"/cmdline"] = &fstest.MapFile{Data: fixture(t, "cmdline/"+name)}
	}
	return m
}

// rootFS builds a root file system holding the default allowlist path.
func rootFS(t testing.TB, allowlist string) fstest.MapFS {
	m := fstest.MapFS{}
	if allowlist != "" {
		m["etc/nitro_enclaves/vsock-proxy.yaml"] = &fstest.MapFile{Data: fixture(t, "allowlist/"+allowlist)}
	}
	return m
}

// fakeIMDS is an IMDSv2 server on loopback: PUT /latest/api/token with a
// TTL header gives a token; every GET must carry it.
type fakeIMDS struct {
	t           testing.TB
	tokenStatus int    // non-zero: the token PUT answers this
	noRole      bool   // no instance profile: security-credentials 404
	credentials []byte // default: testdata/imds/credentials.json
	noIdentity  bool
}

const imdsToken = "AQAEAFakeImdsTokenForDoctorTests=="

func (f *fakeIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut || r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "bad token request", http.StatusBadRequest)
			return
		}
		if f.tokenStatus != 0 {
			w.WriteHeader(f.tokenStatus)
			return
		}
		w.Write([]byte(imdsToken))
		return
	}
	if r.Method != http.MethodGet || r.Header.Get("X-aws-ec2-metadata-token") != imdsToken {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/latest/dynamic/instance-identity/document":
		if f.noIdentity {
			http.NotFound(w, r)
			return
		}
		w.Write(fixture(f.t, "imds/instance-identity.json"))
	case "/latest/meta-data/iam/security-credentials/":
		if f.noRole {
			http.NotFound(w, r)
			return
		}
		w.Write(fixture(f.t, "imds/security-credentials.txt"))
	case "/latest/meta-data/iam/security-credentials/NitroEnclaveInstanceRole":
		if f.noRole {
			http.NotFound(w, r)
			return
		}
		if f.credentials != nil {
			w.Write(f.credentials)
			return
		}
		w.Write(fixture(f.t, "imds/credentials.json"))
	case "/latest/meta-data/iam/info":
		if f.noRole {
			http.NotFound(w, r)
			return
		}
		w.Write(fixture(f.t, "imds/iam-info.json"))
	default:
		f.t.Errorf("fake IMDS: unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	}
}

func serve(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server not on loopback: %s", srv.URL)
	}
	return srv.URL
}

// fakeShim answers /healthz, /readyz and /v1/status.
type fakeShim struct {
	t          testing.TB
	healthz    int    // default 200
	readyz     int    // default 200
	readyzBody []byte // default empty (200) or testdata/shim/readyz-503.json
	status     []byte // /v1/status body
	statusCode int    // default 200
}

func (f *fakeShim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code := func(c int) int {
		if c == 0 {
			return http.StatusOK
		}
		return c
	}
	switch r.URL.Path {
	case "/healthz":
		w.WriteHeader(code(f.healthz))
	case "/readyz":
		w.WriteHeader(code(f.readyz))
		w.Write(f.readyzBody)
	case "/v1/status":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code(f.statusCode))
		w.Write(f.status)
	default:
		f.t.Errorf("fake shim: unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	}
}

// fakePolicy serves one key policy document.
type fakePolicy struct {
	doc   string
	err   error
	keyID string
}

func (f *fakePolicy) GetKeyPolicy(_ context.Context, keyID string) (string, error) {
	f.keyID = keyID
	return f.doc, f.err
}

// renderPolicy renders the guide's policy for PCR0 values, with the debug
// statement when debug is set.
func renderPolicy(t testing.TB, debug bool, pcr0s ...string) string {
	t.Helper()
	p, _, err := policy.Render(policy.RenderOptions{
		ImageSha384: pcr0s,
		EnclaveRole: enclaveRole,
		EncryptRole: "arn:aws:iam::123456789012:role/KeyManagementRole",
		AdminRole:   "arn:aws:iam::123456789012:role/KMSAdminRole",
		Debug:       debug,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(p.Marshal())
}

func measurements(t testing.TB, pcr0 string) *policy.Measurements {
	t.Helper()
	m, err := policy.ParseMeasurements("eif.json", []byte(`{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": "`+pcr0+`", "PCR1": "aca6e62ffbf5f7deccac452d7f8cee1b94048faf62afc16c8ab68c9fed8c38010c73a669f9a36e596032f0b973d21895", "PCR2": "0315f483ae1220b5e023d8c80ff1e135edcca277e70860c31f3003b36e3b2aaec5d043c9ce3a679e3bbd5b3b93b61d6f"}}`))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// want describes an expected result: its status and substrings of its
// message and fix.
type want struct {
	status Status
	msg    string
	fix    string
}

func checkResults(t *testing.T, got []Result, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("got %d results, want %d:\n%s", len(got), len(wants), dump(got))
	}
	for i, w := range wants {
		g := got[i]
		if g.Status != w.status || !strings.Contains(g.Message, w.msg) || !strings.Contains(g.Fix, w.fix) {
			t.Errorf("result %d:\n got %s %q\n     fix %q\nwant %s containing %q\n     fix containing %q", i, g.Status, g.Message, g.Fix, w.status, w.msg, w.fix)
		}
		if g.Status == OK && g.Fix != "" {
			t.Errorf("result %d is ok but has a fix: %q", i, g.Fix)
		}
		if (g.Status == Error || g.Status == Warning) && g.Fix == "" {
			t.Errorf("result %d is %s without a fix: %q", i, g.Status, g.Message)
		}
	}
}

func dump(rs []Result) string {
	var b strings.Builder
	(&Report{Results: rs}).WriteText(&b)
	return b.String()
}

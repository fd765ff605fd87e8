package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/report-*.golden")

// scenario is a whole instance, every seam faked.
type scenario struct {
	describe  string // nitro-cli fixture
	procs     map[string]string
	allowlist string
	imds      fakeIMDS
	shim      fakeShim
	policy    string
	eif       string // PCR0 of --measurements, "" for none
	now       time.Time
}

func (s scenario) config(t *testing.T) Config {
	t.Helper()
	s.imds.t, s.shim.t = t, t
	cfg := Config{
		Runner:       &fakeRunner{out: fixture(t, "nitro-cli/"+s.describe)},
		ProcFS:       procFS(t, s.procs),
		RootFS:       rootFS(t, s.allowlist),
		HTTP:         &http.Client{},
		IMDSEndpoint: serve(t, &s.imds),
		ShimEndpoint: "http://127.0.0.1:1", // down unless a status is given
		KeyID:        keyID,
		Now:          func() time.Time { return s.now },
		NewPolicyGetter: func(_ context.Context, region string) (PolicyGetter, error) {
			return &fakePolicy{doc: s.policy}, nil
		},
	}
	if s.shim.status != nil {
		cfg.ShimEndpoint = serve(t, &s.shim)
	}
	if s.eif != "" {
		cfg.Measurements, cfg.MeasurementsName = measurements(t, s.eif), "measurements.json"
	}
	return cfg
}

func TestRunGolden(t *testing.T) {
	tests := []struct {
		name   string
		s      scenario
		failed bool
		counts [4]int // ok, warning, error, skipped
	}{
		{name: "healthy", s: scenario{
			describe: "describe-running.json", procs: map[string]string{"1": "sshd.cmdline", "812": "systemd-unit.cmdline"},
			allowlist: "default-style.yaml", shim: fakeShim{status: fixture(t, "shim/status-ready.json")},
			policy: renderPolicy(t, false, pcr0v1), eif: pcr0v1, now: fixtureExpiry.Add(-5 * time.Hour),
		}, counts: [4]int{8, 0, 0, 0}},
		{name: "debug-denied", s: scenario{
			describe: "describe-debug.json", procs: map[string]string{"900": "zh-guide-5000.cmdline", "901": "imds.cmdline"},
			allowlist: "with-imds.yaml",
			shim:      fakeShim{readyz: 503, readyzBody: fixture(t, "shim/readyz-503.json"), status: fixture(t, "shim/status-failed-debug-accessdenied.json")},
			policy:    renderPolicy(t, false, pcr0v1), eif: pcr0v1, now: fixtureExpiry.Add(-3 * time.Minute),
		}, failed: true, counts: [4]int{4, 4, 3, 0}},
		{name: "bare", s: scenario{
			describe: "describe-empty.json", procs: map[string]string{"1": "sshd.cmdline"},
			imds: fakeIMDS{noRole: true}, now: fixtureExpiry,
		}, failed: true, counts: [4]int{0, 0, 4, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.s.config(t)
			if tt.name == "bare" {
				cfg.KeyID = ""
			}
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var text bytes.Buffer
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			// The shim's and IMDS's random loopback ports vary per run.
			got := normalizePorts(text.String())
			golden := filepath.Join("testdata", "report-"+tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("report differs from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
			if rep.Failed() != tt.failed {
				t.Errorf("Failed() = %v, want %v", rep.Failed(), tt.failed)
			}
			if c := [4]int{rep.Count(OK), rep.Count(Warning), rep.Count(Error), rep.Count(Skipped)}; c != tt.counts {
				t.Errorf("counts ok/warning/error/skipped = %v, want %v", c, tt.counts)
			}
			// Results come in report order.
			last := 0
			for _, r := range rep.Results {
				i := indexOf(checkOrder, r.Check)
				if i < last {
					t.Errorf("%s result after a later check", r.Check)
				}
				last = i
			}
			for _, secret := range []string{fixtureSecret, fixtureToken, imdsToken, "ASIAIOSFODNN7EXAMPLE"} {
				if strings.Contains(text.String(), secret) {
					t.Errorf("report holds a credential: %q", secret)
				}
			}
		})
	}
}

func normalizePorts(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "http://127.0.0.1:")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i] + "http://127.0.0.1:PORT")
		s = s[i+len("http://127.0.0.1:"):]
		j := 0
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		s = s[j:]
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func TestReportJSON(t *testing.T) {
	rep := &Report{Results: []Result{
		{Check: CheckNitroCLI, Status: OK, Message: "enclave x RUNNING, CID 16"},
		{Check: CheckShim, Status: Error, Message: "down", Fix: "start it"},
		{Check: CheckKeyPolicy, Status: Skipped, Message: "no --key-id"},
	}}
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Results []map[string]string `json:"results"`
		OK      int                 `json:"ok"`
		Errors  int                 `json:"errors"`
		Skipped int                 `json:"skipped"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got.Results) != 3 || got.OK != 1 || got.Errors != 1 || got.Skipped != 1 ||
		got.Results[1]["fix"] != "start it" || got.Results[1]["status"] != "error" || got.Results[1]["check"] != "shim" {
		t.Errorf("JSON: %s", b.String())
	}
	if _, ok := got.Results[0]["fix"]; ok {
		t.Error("an ok result carries a fix field")
	}
	if s := rep.Summary(); s != "1 error, 0 warnings, 1 ok, 1 skipped" {
		t.Errorf("Summary() = %q", s)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	want := "ok      nitro-cli: enclave x RUNNING, CID 16\nerror   shim: down\n        fix: start it\nskipped key-policy: no --key-id\n"
	if text.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", text.String(), want)
	}
}

func TestOneLine(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		// A newline in a server's message must not forge a report line.
		{"a\nok      forged: line", 100, "a ok      forged: line"},
		{"bell\x07 and \x1b[31mred", 100, "bell and [31mred"},
		{"  padded\t", 100, "padded"},
		{strings.Repeat("é", 10), 9, "éééé…"}, // cut on a rune boundary
		{"abcdefghij", 4, "abcd…"},
	}
	for _, tt := range tests {
		if got := oneLine(tt.in, tt.max); got != tt.want {
			t.Errorf("oneLine(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Config{}); err == nil {
		t.Error("Run with a cancelled context succeeded")
	}
}

package shim_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/audit"
	"github.com/enclave-signer/enclave-signer/internal/fakeenclave"
	"github.com/enclave-signer/enclave-signer/internal/shim"
	"github.com/enclave-signer/enclave-signer/internal/testsupport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// auditHarness is a shim draining a fake enclave's audit trail into a
// file.
type auditHarness struct {
	*harness
	path   string
	paused atomic.Bool
}

func startAudit(t *testing.T, fe *fakeenclave.Enclave, path string) *auditHarness {
	t.Helper()
	if fe == nil {
		fe = fakeenclave.Start(t)
		fe.EnableAudit(t)
	}
	if path == "" {
		path = filepath.Join(t.TempDir(), "audit.jsonl")
	}
	ah := &auditHarness{path: path}
	ah.harness = start(t, fe, func(c *shim.Config, o *shim.Options) {
		c.AuditLog = path
		o.AuditPaused = ah.paused.Load
	})
	ah.waitReady(3 * time.Second)
	return ah
}

func (ah *auditHarness) sign(n int, key string) {
	ah.t.Helper()
	for i := range n {
		ah.do("POST", "/v1/keys/"+key+"/sign", fmt.Sprintf(`{"message":"%s"}`, "bXNn"+strings.Repeat("A", i%3*4)))
	}
}

// waitWritten waits until the file holds the enclave's last entry.
func (ah *auditHarness) waitWritten(seq uint64) {
	ah.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := decode[struct {
			Shim struct {
				AuditLog *shim.AuditLogState `json:"audit_log"`
			} `json:"shim"`
		}](ah.t, ah.do("GET", "/v1/status", ""))
		key := base64.StdEncoding.EncodeToString(ah.fe.AuditKey())
		if l := st.Shim.AuditLog; l != nil && l.AuditKey == key && l.LastSeq >= seq && l.State == "draining" {
			return
		}
		if time.Now().After(deadline) {
			ah.t.Fatalf("audit_log not written up to seq %d: %+v", seq, st.Shim.AuditLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (ah *auditHarness) verify(head *audit.Head) *audit.Report {
	ah.t.Helper()
	f, err := os.Open(ah.path)
	if err != nil {
		ah.t.Fatal(err)
	}
	defer f.Close()
	rep, err := audit.Verify(f, audit.Options{PCR0: ah.fe.AuditPCR0(), Roots: ah.fe.AuditRoots(), Head: head})
	if err != nil {
		b, _ := os.ReadFile(ah.path)
		ah.t.Fatalf("the log does not verify: %v\n%s", err, b)
	}
	return rep
}

// TestAuditDrain: the shim drains every decision into audit_log, after a
// boot record whose document attests the key, syncing as it goes: the log
// verifies. A restarted enclave starts a second boot; a restarted shim
// resumes where its file ends, without repeating anything.
func TestAuditDrain(t *testing.T) {
	ah := startAudit(t, nil, "")
	ah.sign(30, fakeenclave.KeyEd25519)
	ah.sign(5, "nope")
	ah.waitWritten(35)
	rep := ah.verify(nil)
	if len(rep.Boots) != 1 || rep.Boots[0].Decisions != 35 || rep.Boots[0].Refused != 5 {
		t.Fatalf("report %+v", rep.Boots[0])
	}
	if fi, _ := os.Stat(ah.path); fi.Mode().Perm() != 0o600 {
		t.Errorf("audit_log mode %v, want 0600", fi.Mode().Perm())
	}

	// The enclave restarts: a new boot, a new key.
	if err := ah.fe.Restart(); err != nil {
		t.Fatal(err)
	}
	ah.waitReady(5 * time.Second)
	ah.sign(7, fakeenclave.KeyEd25519)
	ah.waitWritten(7)
	if rep := ah.verify(nil); len(rep.Boots) != 2 || rep.Boots[1].Decisions != 7 {
		t.Fatalf("after the enclave's restart: %+v", rep.Boots)
	}

	// The shim restarts on the same file, whose last line was cut short.
	fe, path := ah.fe, ah.path
	ah.stop()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"type":"decision","seq":8,"ti`)
	f.Close()
	ah2 := startAudit(t, fe, path)
	ah2.sign(4, fakeenclave.KeyEd25519)
	ah2.waitWritten(11)
	rep = ah2.verify(nil)
	if len(rep.Boots) != 2 || rep.Boots[1].Decisions != 11 {
		t.Fatalf("after the shim's restart: %+v", rep.Boots[1])
	}
	if !strings.Contains(ah2.logs.String(), "cut off mid-record") || !strings.Contains(ah2.logs.String(), "resuming") {
		t.Errorf("the shim did not say it cut the last line and resumed:\n%s", ah2.logs)
	}
}

// TestAuditPause: the test hook stops draining (the enclave's records
// wait), and draining picks up where it stopped.
func TestAuditPause(t *testing.T) {
	ah := startAudit(t, nil, "")
	ah.sign(3, fakeenclave.KeyEd25519)
	ah.waitWritten(3)
	ah.paused.Store(true)
	time.Sleep(300 * time.Millisecond) // a poll or two
	ah.sign(4, fakeenclave.KeyEd25519)
	time.Sleep(300 * time.Millisecond)
	st := decode[struct {
		Shim struct {
			AuditLog shim.AuditLogState `json:"audit_log"`
		} `json:"shim"`
	}](t, ah.do("GET", "/v1/status", ""))
	if l := st.Shim.AuditLog; l.State != "paused" || l.LastSeq != 3 {
		t.Fatalf("paused: %+v", l)
	}
	if m := ah.do("GET", "/metrics", "").body; !strings.Contains(m, `signer_audit_log_state{state="paused"} 1`) {
		t.Errorf("metrics do not show the pause:\n%s", m)
	}
	ah.paused.Store(false)
	ah.waitWritten(7)
	ah.verify(nil)
	if !strings.Contains(ah.logs.String(), "TEST HOOK") {
		t.Errorf("no warning about the test hook:\n%s", ah.logs)
	}
}

// TestAuditHead: GET /v1/audit/head?nonce=HEX answers the enclave's head
// as JSON; the log verifies against it once drained; a bad nonce is 400.
func TestAuditHead(t *testing.T) {
	ah := startAudit(t, nil, "")
	ah.sign(6, fakeenclave.KeyEd25519)
	nonce := bytes.Repeat([]byte{0x5c}, 32)
	r := ah.do("GET", "/v1/audit/head?nonce="+hex.EncodeToString(nonce), "")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("head: %d %s", r.status, r.body)
	}
	head, err := audit.ParseHead([]byte(r.body))
	if err != nil || head.Verify() != nil || head.Seq != 6 || !bytes.Equal(head.Nonce, nonce) || !bytes.Equal(head.AuditKey, ah.fe.AuditKey()) {
		t.Fatalf("head %s: %+v, %v", r.body, head, err)
	}
	ah.waitWritten(6)
	if rep := ah.verify(head); rep.Head == nil || !rep.Head.OK {
		t.Fatalf("the log against the head: %+v", rep.Head)
	}
	for _, q := range []string{"", "?nonce=zz", "?nonce=00", "?nonce=" + hex.EncodeToString(make([]byte, 257)), "?nonce=" + hex.EncodeToString(nonce) + "&x=1"} {
		if r := ah.do("GET", "/v1/audit/head"+q, ""); r.status != 400 || r.errorCode() != "malformed_request" || !strings.Contains(r.errorMessage(), "nonce=HEX") {
			t.Errorf("head%s: %d %s", q, r.status, r.body)
		}
	}
}

// TestAuditDrainFailing: an enclave that refuses the shim's reads (as
// signerd refuses an unprivileged peer) leaves the file as it was; the
// state says failing, with the error, in status and metrics.
func TestAuditDrainFailing(t *testing.T) {
	fe := fakeenclave.Start(t)
	fe.EnableAudit(t)
	fe.RefuseAuditReads(wire.NewError(wire.CodeForbidden, "the audit trail is read only from a privileged source port"))
	ah := startAudit(t, fe, "")
	ah.sign(2, fakeenclave.KeyEd25519)
	deadline := time.Now().Add(3 * time.Second)
	for {
		st := decode[struct {
			Shim struct {
				AuditLog shim.AuditLogState `json:"audit_log"`
			} `json:"shim"`
		}](t, ah.do("GET", "/v1/status", ""))
		if l := st.Shim.AuditLog; l.State == "failing" && l.Errors > 0 && strings.Contains(l.LastError, "privileged source port") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %+v", st.Shim.AuditLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, _ := os.ReadFile(ah.path); len(b) != 0 {
		t.Fatalf("a refused drain wrote %q", b)
	}
	if m := ah.do("GET", "/metrics", "").body; !strings.Contains(m, `signer_audit_log_state{state="failing"} 1`) {
		t.Errorf("metrics:\n%s", m)
	}
}

// TestAuditLogConfig: audit_log must be a local regular file; without it
// the shim warns that nothing drains the trail.
func TestAuditLogConfig(t *testing.T) {
	fe := fakeenclave.Start(t)
	for _, tc := range []struct{ path, want string }{
		{"s3://bucket/audit.jsonl", "want a local file path"},
		{t.TempDir(), "is not a regular file"},
	} {
		c := testConfig(t, fe)
		c.AuditLog = tc.path
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "audit_log: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("audit_log %q: %v, want %q", tc.path, err, tc.want)
		}
	}
	logs := &testsupport.SyncBuffer{}
	c := testConfig(t, fe)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := shim.New(c, shim.Options{AWS: staticAWS(), Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !strings.Contains(logs.String(), "no audit_log") {
		t.Errorf("no warning without audit_log:\n%s", logs)
	}
	// A file whose last complete line is not a record is not appended to.
	bad := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(bad, []byte("not a record\n"), 0o600)
	fe.EnableAudit(t)
	ah := &auditHarness{path: bad}
	ah.harness = start(t, fe, func(c *shim.Config, o *shim.Options) { c.AuditLog = bad })
	ah.waitReady(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for ctx.Err() == nil && !strings.Contains(ah.logs.String(), "audit_log cannot be opened") {
		time.Sleep(10 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("no error about the file in the logs:\n%s", ah.logs)
	}
	if b, _ := os.ReadFile(bad); string(b) != "not a record\n" {
		t.Fatalf("the file was changed: %q", b)
	}
}

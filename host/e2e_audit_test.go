//go:build unix

package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/audit"
)

// The end-to-end tests of the audit trail (docs/audit.md) with the real
// binaries: signer dev's shim drains signerd's trail into DIR/audit.jsonl,
// and the real signer audit verify judges it.

// auditState is what /v1/status says of the audit trail.
type auditState struct {
	PCRs  map[string]string `json:"pcrs"`
	Audit struct {
		Buffered, Capacity, Unrecorded, Refused uint64
		LastSeq                                 uint64 `json:"last_seq"`
		State                                   string
	} `json:"audit"`
	Shim struct {
		AuditLog struct {
			State   string
			LastSeq uint64 `json:"last_seq"`
			Records uint64
		} `json:"audit_log"`
	} `json:"shim"`
}

func (p *devProc) auditState() auditState {
	p.t.Helper()
	var st auditState
	if code, err := p.getJSON("/v1/status", &st); code != 200 || err != nil {
		p.t.Fatalf("GET /v1/status: %d %v", code, err)
	}
	return st
}

// waitAuditDrained waits until the shim has written the enclave's last
// entry, after the second that flushes counted refusals has passed.
func (p *devProc) waitAuditDrained() auditState {
	p.t.Helper()
	time.Sleep(1500 * time.Millisecond)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := p.auditState()
		if st.Audit.LastSeq > 0 && st.Shim.AuditLog.LastSeq == st.Audit.LastSeq && st.Shim.AuditLog.State == "draining" {
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the shim did not drain the audit trail: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// auditVerifyReport is the part of signer audit verify's JSON the tests read.
type auditVerifyReport struct {
	Valid bool
	Error *struct{ Reason, Detail string }
	Boots []struct {
		Entries, Decisions, Allowed, Refused, Gaps, Unrecorded uint64
		Counted                                                uint64 `json:"counted_refusals"`
		UnrecordedAllowed                                      uint64 `json:"unrecorded_allowed"`
		LastCheckpoint                                         uint64 `json:"last_checkpoint"`
	}
	Head *struct{ OK bool }
}

// auditVerify runs the real signer audit verify on log.
func (p *devProc) auditVerify(log string, extra ...string) (int, auditVerifyReport, string) {
	p.t.Helper()
	pcr0 := p.auditState().PCRs["0"]
	args := append([]string{"audit", "verify", log, "--expect-pcr", "0=" + pcr0, "--root", filepath.Join(p.dir, "ca", "root.pem")}, extra...)
	cmd := exec.Command(filepath.Join(builtBinaries(p.t), "signer"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatal(err)
	}
	var rep auditVerifyReport
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		p.t.Fatalf("signer audit verify printed no report (exit %d): %v\n%s%s", code, jerr, out.String(), errb.String())
	}
	return code, rep, errb.String()
}

// TestDevAuditTrail: 10,000 mixed requests through signer dev --auth
// (allowed; 401, 403, 429; unknown key; a digest of the wrong length),
// from 8 concurrent clients, make a log that signer audit verify passes,
// against a fresh head too, whose counts are the answers' exactly. The same
// log with one line edited, one deleted, two swapped, the tail cut, cut at
// a checkpoint (against the head), and re-signed with another key fails,
// each with its own reason.
func TestDevAuditTrail(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir, "--auth")
	app1, app2 := p.client("app1"), p.client("app2")
	const total, workers = 10000, 8
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < total; i += workers {
				msg := msgBody(fmt.Sprint("audit ", i))
				var a authAnswer
				switch i % 10 {
				case 5: // no credential: 401, counted, not one entry each
					a = app1.sendHeader("POST", "/v1/keys/dev-ed25519/sign", msg, "")
				case 6: // app2 on app1's key: 403
					a = app2.send("POST", "/v1/keys/dev-app1/sign", msg, nil)
				case 7: // 5/s: mostly 429
					a = app1.send("POST", "/v1/keys/dev-limited/sign", msg, nil)
				case 8: // no such key: 404
					a = app1.send("POST", "/v1/keys/nope/sign", msg, nil)
				case 9: // a 16-byte digest for a P-256 key: 422, refused before the decision
					a = app1.send("POST", "/v1/keys/dev-p256/sign", []byte(`{"digest":"`+strings.Repeat("A", 22)+`=="}`), nil)
				default:
					a = app1.send("POST", "/v1/keys/dev-ed25519/sign", msg, nil)
				}
				mu.Lock()
				statuses[a.status]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, s := range []int{200, 401, 403, 404, 422, 429} {
		if statuses[s] == 0 {
			t.Errorf("no %d among the answers: %v", s, statuses)
		}
	}
	if n := statuses[200] + statuses[401] + statuses[403] + statuses[404] + statuses[422] + statuses[429]; n != total {
		t.Fatalf("answers %v: %d of %d are none of 200, 401, 403, 404, 422, 429", statuses, total-n, total)
	}
	p.waitAuditDrained()
	head := filepath.Join(dir, "head.json")
	cmd := exec.Command(filepath.Join(builtBinaries(t), "signer"), "audit", "head", "--endpoint", p.url, "--out", head)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("signer audit head: %v\n%s", err, out)
	}
	logPath := filepath.Join(dir, "audit.jsonl")
	code, rep, stderr := p.auditVerify(logPath, "--head", head)
	if code != 0 || !rep.Valid || len(rep.Boots) != 1 || rep.Head == nil || !rep.Head.OK {
		t.Fatalf("the log: exit %d, %+v\n%s", code, rep, stderr)
	}
	b := rep.Boots[0]
	t.Logf("answers %v; boot: %+v", statuses, b)
	// Every request is one decision: the 401s counted, the others one entry each.
	if b.Allowed != uint64(statuses[200]) || b.Counted != uint64(statuses[401]) ||
		b.Refused != uint64(statuses[403]+statuses[404]+statuses[422]+statuses[429]) || b.Gaps != 0 {
		t.Fatalf("the log's counts %+v do not match the answers %v", b, statuses)
	}

	lines := strings.SplitAfter(strings.TrimSuffix(string(mustRead(t, logPath)), "\n"), "\n")
	mid := len(lines) / 2
	for !strings.Contains(lines[mid], `"type":"decision"`) || !strings.Contains(lines[mid+1], `"type":"decision"`) || !strings.Contains(lines[mid], `"outcome":"allowed"`) {
		mid++
	}
	lastCP := lastIndex(lines, `"type":"checkpoint"`)
	midCP := lastIndex(lines[:mid], `"type":"checkpoint"`)
	for _, tc := range []struct {
		name   string
		lines  []string
		head   bool
		reason string
	}{
		{"one line edited", replaced(lines, mid, strings.Replace(lines[mid], `"outcome":"allowed"`, `"outcome":"forbidden"`, 1)), false, "tampered"},
		{"one line deleted", slices.Delete(slices.Clone(lines), mid, mid+1), false, "deleted"},
		{"two lines swapped", swapped(lines, mid, mid+1), false, "reordered"},
		{"the tail cut", lines[:lastCP], false, "truncated"},
		{"cut at a checkpoint, against the head", lines[:midCP+1], true, "truncated"},
		{"re-signed with another key", resignLog(t, lines), false, "wrong_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "damaged.jsonl")
			if err := os.WriteFile(path, []byte(strings.Join(tc.lines, "")), 0o600); err != nil {
				t.Fatal(err)
			}
			var extra []string
			if tc.head {
				extra = []string{"--head", head}
			}
			code, rep, stderr := p.auditVerify(path, extra...)
			if code != 1 || rep.Valid || rep.Error == nil || rep.Error.Reason != tc.reason || !strings.Contains(stderr, "signer: audit log "+path+": "+tc.reason+":") {
				t.Fatalf("exit %d, error %+v, want %s\n%s", code, rep.Error, tc.reason, stderr)
			}
		})
	}
}

// TestDevAuditFailClosed: with the shim's drain stopped (its test hook),
// signing stops with 503 audit_unavailable within the buffer's size, and
// resumes once the trail is drained again; the log then verifies, its gap
// entry counting what went unrecorded, none of it allowed.
func TestDevAuditFailClosed(t *testing.T) {
	dir := t.TempDir()
	pause := filepath.Join(t.TempDir(), "pause")
	t.Setenv("SIGNER_TEST_AUDIT_PAUSE_FILE", pause)
	const buffer = 64
	p := startDev(t, dir, "--audit-buffer", fmt.Sprint(buffer))
	for i := range 5 {
		if code, _, body := p.sign("dev-ed25519", "message", []byte(fmt.Sprint("before ", i))); code != 200 {
			t.Fatalf("signing: %d %s", code, body)
		}
	}
	p.waitAuditDrained()
	if err := os.WriteFile(pause, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.auditState().Shim.AuditLog.State != "paused" {
		if time.Now().After(deadline) {
			t.Fatal("the shim's drain did not pause")
		}
		time.Sleep(20 * time.Millisecond)
	}
	signed, refused := 0, 0
	for i := 0; refused < 3; i++ {
		code, _, body := p.sign("dev-ed25519", "message", []byte(fmt.Sprint("paused ", i)))
		switch {
		case code == 200 && refused == 0:
			signed++
		case code == 503 && strings.Contains(string(body), `"code":"audit_unavailable"`):
			refused++
		default:
			t.Fatalf("request %d while the drain is paused: %d %s", i, code, body)
		}
		if signed > buffer {
			t.Fatalf("%d signatures with the audit trail not drained and a buffer of %d", signed, buffer)
		}
	}
	if signed == 0 {
		t.Fatal("refused at once: the buffer held nothing")
	}
	if st := p.auditState(); st.Audit.State != "full" || st.Audit.Refused != 3 {
		t.Fatalf("status while full: %+v", st.Audit)
	}
	if err := os.Remove(pause); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, _, body := p.sign("dev-ed25519", "message", []byte("after"))
		if code == 200 {
			break
		}
		if time.Now().After(deadline) || code != 503 {
			t.Fatalf("after the drain resumed: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := p.waitAuditDrained()
	code, rep, stderr := p.auditVerify(filepath.Join(dir, "audit.jsonl"))
	if code != 0 || len(rep.Boots) != 1 {
		t.Fatalf("the log: exit %d %+v\n%s", code, rep, stderr)
	}
	b := rep.Boots[0]
	t.Logf("signed %d of a %d-record buffer, then refused; boot %+v; status %+v", signed, buffer, b, st.Audit)
	// Every signature is in the log; what went unrecorded (the refusals
	// while full) is in its gap entries, none of it a signature.
	if b.Allowed != uint64(5+signed+1) || b.Gaps == 0 || b.Unrecorded < 3 || b.UnrecordedAllowed != 0 || b.Unrecorded != st.Audit.Unrecorded {
		t.Fatalf("the log %+v: want %d allowed, and gaps counting the %d unrecorded, none allowed", b, 5+signed+1, st.Audit.Unrecorded)
	}
}

func lastIndex(lines []string, sub string) int {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return i
		}
	}
	return -1
}

func replaced(lines []string, i int, l string) []string {
	out := slices.Clone(lines)
	out[i] = l
	return out
}

func swapped(lines []string, i, j int) []string {
	out := slices.Clone(lines)
	out[i], out[j] = out[j], out[i]
	return out
}

// resignLog rewrites a log as the host could: a key of its own in the
// boot records, every chain recomputed, every checkpoint signed again. It
// cannot make an attestation document for that key.
func resignLog(t *testing.T, lines []string) []string {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	var chain *audit.Chain
	out := make([]string, len(lines))
	for i, l := range lines {
		rec, err := audit.ParseLine([]byte(strings.TrimSuffix(l, "\n")))
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		switch r := rec.(type) {
		case *audit.Boot:
			r.AuditKey, chain = pub, audit.NewChain(pub)
		case *audit.Entry:
			chain.Append(r)
		case *audit.Checkpoint:
			seq, h := chain.Head()
			rec = audit.SignCheckpoint(priv, seq, h, r.Time)
		}
		out[i] = string(rec.AppendJSON(nil)) + "\n"
	}
	return out
}

package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/audit"
	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// auditFixture is a simulated enclave's audit log on disk: its root, its
// PCR0, the lines, and a head over them.
type auditFixture struct {
	dir, root, pcr0 string
	lines           []string
	priv            ed25519.PrivateKey
	chain           *audit.Chain
}

func newAuditFixture(t *testing.T, entries int) *auditFixture {
	t.Helper()
	dir := t.TempDir()
	ca, err := nsmsim.LoadOrCreateCA(filepath.Join(dir, "ca"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sim, err := nsmsim.New(nsmsim.Options{CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	f := &auditFixture{dir: dir, root: filepath.Join(dir, "ca", nsmsim.RootCertFile), pcr0: hex.EncodeToString(sim.PCR(0))}
	f.priv = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	pub := f.priv.Public().(ed25519.PublicKey)
	spki, _ := attestation.MarshalAuditKey(pub)
	ud, _ := (&attestation.UserData{KeySet: make([]byte, 48), Audit: spki}).Marshal()
	doc, err := nsm.Attest(sim, nsm.AttestRequest{UserData: ud})
	if err != nil {
		t.Fatal(err)
	}
	f.lines = append(f.lines, string((&audit.Boot{AuditKey: pub, Attestation: doc}).AppendJSON(nil)))
	f.chain = audit.NewChain(pub)
	now := time.Now()
	for i := 1; i <= entries; i++ {
		e := &audit.Entry{Type: audit.Decision, Time: now, Key: "k", Kind: "message", Digest: sha256.Sum256([]byte(fmt.Sprint(i))), Outcome: audit.OutcomeAllowed}
		f.chain.Append(e)
		f.lines = append(f.lines, string(e.AppendJSON(nil)))
		if i%5 == 0 || i == entries {
			seq, h := f.chain.Head()
			f.lines = append(f.lines, string(audit.SignCheckpoint(f.priv, seq, h, now).AppendJSON(nil)))
		}
	}
	return f
}

func (f *auditFixture) write(t *testing.T, lines []string) string {
	t.Helper()
	path := filepath.Join(f.dir, fmt.Sprintf("audit-%d.jsonl", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (f *auditFixture) head(nonce []byte) *audit.Head {
	seq, h := f.chain.Head()
	return audit.SignHead(f.priv, seq, h, time.Now(), nonce)
}

// TestAuditVerifyCommand: a good log exits 0 with the report; a damaged
// one exits 1, the reason in the JSON and on stderr; mistakes in the
// call are usage errors.
func TestAuditVerifyCommand(t *testing.T) {
	f := newAuditFixture(t, 12)
	good := f.write(t, f.lines)
	code, out, stderr := signer(t, "", "audit", "verify", good, "--expect-pcr", "0="+f.pcr0, "--root", f.root)
	var rep struct {
		Valid bool
		Error *struct{ Reason, Detail string }
		Boots []struct {
			Entries, Decisions uint64
			AuditKey           string `json:"audit_key"`
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.Valid || len(rep.Boots) != 1 || rep.Boots[0].Decisions != 12 {
		t.Fatalf("a good log: exit %d, %+v (%v)\n%s%s", code, rep, err, out, stderr)
	}
	// From stdin too, and against a head it reaches.
	headFile := filepath.Join(f.dir, "head.json")
	os.WriteFile(headFile, f.head(bytes.Repeat([]byte{1}, 32)).AppendJSON(nil), 0o644)
	log, _ := os.ReadFile(good)
	if code, out, stderr := signer(t, string(log), "audit", "verify", "-", "--expect-pcr", "0="+f.pcr0, "--root", f.root, "--head", headFile); code != 0 || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("stdin with a head: exit %d\n%s%s", code, out, stderr)
	}

	edited := append([]string(nil), f.lines...)
	edited[3] = strings.Replace(edited[3], `"key":"k"`, `"key":"x"`, 1)
	code, out, stderr = signer(t, "", "audit", "verify", f.write(t, edited), "--expect-pcr", "0="+f.pcr0, "--root", f.root)
	rep.Valid, rep.Error = true, nil
	json.Unmarshal([]byte(out), &rep)
	if code != 1 || rep.Valid || rep.Error == nil || rep.Error.Reason != "tampered" || !strings.Contains(stderr, "tampered: line 5:") {
		t.Fatalf("an edited line: exit %d, %+v\n%s%s", code, rep.Error, out, stderr)
	}
	// Without the dev root, the documents do not chain to AWS's.
	if code, _, stderr := signer(t, "", "audit", "verify", good, "--expect-pcr", "0="+f.pcr0); code != 1 || !strings.Contains(stderr, "attestation:") {
		t.Fatalf("against the AWS root: exit %d\n%s", code, stderr)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{good}, "--expect-pcr 0=HEX is required"},
		{[]string{good, "--expect-pcr", "1=" + f.pcr0}, "want 0=HEX: audit verify takes PCR0 only"},
		{[]string{"--expect-pcr", "0=" + f.pcr0}, "want one log FILE"},
		{[]string{good, good, "--expect-pcr", "0=" + f.pcr0}, "want one log FILE"},
		{[]string{good, "--expect-pcr", "0=" + f.pcr0, "--head", good}, "--head " + good},
	} {
		if code, _, stderr := signer(t, "", append([]string{"audit", "verify"}, tc.args...)...); code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestAuditHeadCommand: signer audit head sends a fresh nonce, checks the
// answer carries it and is signed, and saves it; a head for another nonce
// or with a bad signature is refused.
func TestAuditHeadCommand(t *testing.T) {
	f := newAuditFixture(t, 3)
	var tamper func(*audit.Head)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/audit/head" {
			http.NotFound(w, r)
			return
		}
		nonce, err := hex.DecodeString(r.URL.Query().Get("nonce"))
		if err != nil || audit.CheckNonce(nonce) != nil {
			http.Error(w, `{"error":{"code":"malformed_request","message":"nonce"}}`, 400)
			return
		}
		h := f.head(nonce)
		if tamper != nil {
			tamper(h)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(h.AppendJSON(nil))
	}))
	defer srv.Close()
	out := filepath.Join(f.dir, "head.json")
	code, stdout, stderr := signer(t, "", "audit", "head", "--endpoint", srv.URL, "--out", out)
	b, _ := os.ReadFile(out)
	h, err := audit.ParseHead(b)
	if code != 0 || err != nil || h.Seq != 3 || len(h.Nonce) != 32 || !strings.Contains(stdout, `"seq": 3`) {
		t.Fatalf("exit %d, head %+v %v\n%s%s", code, h, err, stdout, stderr)
	}
	code, _, _ = signer(t, "", "audit", "head", "--endpoint", srv.URL, "--out", out)
	if b2, _ := os.ReadFile(out); code != 0 || bytes.Equal(b, b2) {
		t.Fatal("two heads with the same nonce: the default nonce is not random")
	}
	if code, _, _ := signer(t, "", "audit", "head", "--endpoint", srv.URL, "--nonce", strings.Repeat("ab", 16)); code != 0 {
		t.Fatalf("a given nonce: exit %d", code)
	}
	for name, tc := range map[string]struct {
		tamper func(*audit.Head)
		want   string
	}{
		"another nonce": {func(h *audit.Head) { h.Nonce = bytes.Repeat([]byte{7}, 32) }, "not the one sent"},
		"bad signature": {func(h *audit.Head) { h.Seq++ }, "does not verify"},
	} {
		tamper = tc.tamper
		if code, _, stderr := signer(t, "", "audit", "head", "--endpoint", srv.URL); code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, %s", name, code, stderr)
		}
	}
	if code, _, stderr := signer(t, "", "audit", "head", "--endpoint", srv.URL, "--nonce", "00"); code != 2 || !strings.Contains(stderr, "nonce is 1 bytes") {
		t.Errorf("a short nonce: exit %d, %s", code, stderr)
	}
}

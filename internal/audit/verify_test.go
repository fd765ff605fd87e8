package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

func verifyString(t *testing.T, s *enclaveSim, log string, head *Head) (*Report, error) {
	t.Helper()
	rep, err := Verify(strings.NewReader(log), Options{PCR0: s.pcr0, Roots: s.roots(), Head: head})
	if rep == nil {
		t.Fatalf("no report: %v", err)
	}
	return rep, err
}

// TestVerifyGood: two boots, the second in drop mode, verify; the report
// counts what each boot recorded.
func TestVerifyGood(t *testing.T) {
	s := newEnclaveSim(t)
	a := newBootLog(t, s, 1, "").standard(35)
	b := newBootLog(t, s, 2, "drop").standard(20)
	ls := lines(a.recs, b.recs)
	rep, err := verifyString(t, s, joinLog(ls), b.head(bytes.Repeat([]byte{9}, 32)))
	if err != nil {
		t.Fatalf("a good log: %v\n%s", err, joinLog(ls))
	}
	if len(rep.Boots) != 2 || rep.Lines != len(ls) || rep.Head == nil || !rep.Head.OK || rep.Head.Line != len(a.recs)+1 {
		t.Fatalf("report %+v, head %+v", rep, rep.Head)
	}
	r := rep.Boots[0]
	// 35 entries: 33 decisions (i%5==3 unknown_key, ==4 forbidden), a
	// refusals entry counting 12, a gap of 3; checkpoints at 10, 20, 30, 35.
	if r.Entries != 35 || r.Decisions != 33 || r.Allowed+r.Refused != 33 || r.Refused != 13 || r.Counted != 12 || r.Gaps != 1 || r.Unrecorded != 3 ||
		r.Checkpoints != 4 || r.LastCheckpoint != 35 || r.AuditOverflow != "" || r.Error != nil {
		t.Fatalf("boot 1: %+v", r)
	}
	if rep.Boots[1].AuditOverflow != "drop" || rep.Boots[1].Entries != 20 || rep.Boots[1].Checkpoints != 2 {
		t.Fatalf("boot 2: %+v", rep.Boots[1])
	}
	// CRLF line ends and a missing last newline change nothing.
	crlf := strings.Join(ls, "\r\n")
	if _, err := verifyString(t, s, crlf, nil); err != nil {
		t.Fatalf("CRLF, no final newline: %v", err)
	}
	// An empty log, and a boot with no entries yet, are fine.
	if _, err := verifyString(t, s, "", nil); err != nil {
		t.Fatalf("empty log: %v", err)
	}
	if _, err := verifyString(t, s, joinLog(lines(newBootLog(t, s, 3, "").recs)), nil); err != nil {
		t.Fatalf("a boot without entries: %v", err)
	}
}

// TestVerifyDamage: each kind of damage is reported with its own reason,
// at the right line.
func TestVerifyDamage(t *testing.T) {
	s := newEnclaveSim(t)
	a := newBootLog(t, s, 1, "").standard(40)
	good := lines(a.recs)
	nonce := bytes.Repeat([]byte{7}, 32)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, 32))

	edit := func(i int, from, to string) func([]string) []string {
		return func(ls []string) []string {
			if !strings.Contains(ls[i], from) {
				t.Fatalf("line %d has no %q: %s", i+1, from, ls[i])
			}
			ls[i] = strings.Replace(ls[i], from, to, 1)
			return ls
		}
	}
	del := func(i int) func([]string) []string {
		return func(ls []string) []string { return slices.Delete(ls, i, i+1) }
	}
	swap := func(i, j int) func([]string) []string {
		return func(ls []string) []string { ls[i], ls[j] = ls[j], ls[i]; return ls }
	}
	cut := func(n int) func([]string) []string { return func(ls []string) []string { return ls[:n] } }
	e5 := lineOf(t, good, `"seq":5,`, `"decision"`)
	e10 := lineOf(t, good, `"seq":10,`, `"decision"`)
	cp10 := lineOf(t, good, `"checkpoint","seq":10,`)
	cp30 := lineOf(t, good, `"checkpoint","seq":30,`)

	tests := []struct {
		name   string
		damage func([]string) []string
		head   *Head
		reason Reason
		line   int // 1-based; 0: do not check
		detail string
	}{
		{"outcome edited", edit(e5, `"outcome":"allowed"`, `"outcome":"forbidden"`), nil, ReasonTampered, e5 + 2, "this line or the one before was edited"},
		{"key edited before a checkpoint", edit(e10, `"key":"dev-ed25519"`, `"key":"dev-p256"`), nil, ReasonTampered, cp10 + 1, "an entry was edited"},
		{"seq edited", edit(e5, `"seq":5,`, `"seq":6,`), nil, ReasonTampered, e5 + 1, "sequence number was edited"},
		{"checkpoint signature edited", edit(cp10, `"sig":"`, `"sig":"A`+"A"), nil, ReasonMalformed, cp10 + 1, "sig"},
		{"checkpoint hash edited", func(ls []string) []string {
			c := lineRecord(t, ls[cp10]).(*Checkpoint)
			c.Hash[0] ^= 1
			ls[cp10] = string(c.AppendJSON(nil))
			return ls
		}, nil, ReasonTampered, cp10 + 1, "does not verify"},
		{"entry deleted", del(e5), nil, ReasonDeleted, e5 + 1, "entry seq 5 is missing"},
		{"three entries deleted", func(ls []string) []string { return slices.Delete(ls, e5, e5+3) }, nil, ReasonDeleted, e5 + 1, "entries seq 5 to 7 is missing"},
		{"boot record deleted", del(0), nil, ReasonDeleted, 1, "before any boot record"},
		{"two adjacent entries swapped", swap(e5, e5+1), nil, ReasonReordered, e5 + 1, "records were moved"},
		{"two distant entries swapped", swap(e5, lineOf(t, good, `"seq":25,`)), nil, ReasonReordered, e5 + 1, "turns up later"},
		{"entry and its checkpoint swapped", swap(e10, cp10), nil, ReasonReordered, e10 + 1, "records were moved"},
		{"a line moved back", func(ls []string) []string { l := ls[e5]; return slices.Insert(slices.Delete(ls, e5, e5+1), e10, l) }, nil, ReasonReordered, 0, ""},
		{"tail cut after the last checkpoint", cut(len(good) - 3), nil, ReasonTruncated, len(good) - 3, "covered by no signature"},
		{"tail cut mid-line", func(ls []string) []string { ls[len(ls)-1] = ls[len(ls)-1][:40]; return ls }, nil, ReasonTruncated, len(good), "cut off mid-record"},
		{"cut at a checkpoint, with a later head", cut(cp30 + 1), a.head(nonce), ReasonTruncated, cp30, "the head (nonce"},
		{"head of another boot", nil, SignHead(other, 3, [32]byte{}, a.now, nonce), ReasonTruncated, 0, "no boot in the log has the head's audit key"},
		{"head forged", nil, func() *Head { h := a.head(nonce); h.Seq++; return h }(), ReasonBadHead, 0, "does not verify"},
		{"head with a short nonce", nil, a.head([]byte("short")), ReasonBadHead, 0, "nonce is 5 bytes"},
		{"malformed line", edit(e5, `"prev":`, `"prev2":`), nil, ReasonMalformed, e5 + 1, `no "prev"`},
		{"re-signed with another key", func(ls []string) []string { return resign(t, ls, other) }, nil, ReasonWrongKey, 1, "re-signed with another key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := slices.Clone(good)
			if tt.damage != nil {
				ls = tt.damage(ls)
			}
			log := joinLog(ls)
			if strings.HasSuffix(tt.name, "mid-line") {
				log = strings.TrimSuffix(log, "\n") // cut: no newline after it
			}
			rep, err := verifyString(t, s, log, tt.head)
			var ve *Error
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a %s error", err, tt.reason)
			}
			if ve.Reason != tt.reason || !errors.Is(err, &Error{Reason: tt.reason}) || (tt.line > 0 && ve.Line != tt.line) || !strings.Contains(ve.Detail, tt.detail) {
				t.Fatalf("got %v (line %d), want %s at line %d, containing %q", err, ve.Line, tt.reason, tt.line, tt.detail)
			}
			if len(rep.Problems) == 0 || rep.Problems[0] != ve {
				t.Fatalf("report problems %v", rep.Problems)
			}
		})
	}
	// Re-signing includes recomputing the chain: an edit under a new key
	// is still the new key's chain, refused for the key.
	resigned := resign(t, edit(e5, `"outcome":"allowed"`, `"outcome":"forbidden"`)(slices.Clone(good)), other)
	if _, err := verifyString(t, s, joinLog(resigned), nil); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("edited and re-signed: %v", err)
	}
}

// TestVerifyBoots: a problem stops its boot only; the next is verified.
func TestVerifyBoots(t *testing.T) {
	s := newEnclaveSim(t)
	a := lines(newBootLog(t, s, 1, "").standard(20).recs)
	b := lines(newBootLog(t, s, 2, "").standard(20).recs)
	a = slices.Delete(a, 3, 4)
	rep, err := verifyString(t, s, joinLog(append(a, b...)), nil)
	if !errors.Is(err, ErrDeleted) || len(rep.Problems) != 1 || rep.Boots[0].Error == nil || rep.Boots[1].Error != nil || rep.Boots[1].Entries != 20 {
		t.Fatalf("%v; %+v %+v", err, rep.Boots[0], rep.Boots[1])
	}
}

// TestVerifyAttestation: a boot whose document is of another image, from
// another CA, or attests no audit key is refused for its attestation.
func TestVerifyAttestation(t *testing.T) {
	s := newEnclaveSim(t)
	ls := lines(newBootLog(t, s, 1, "").standard(12).recs)
	other := newEnclaveSim(t)
	_, err := Verify(strings.NewReader(joinLog(ls)), Options{PCR0: s.pcr0, Roots: other.roots()})
	if !errors.Is(err, ErrAttestation) || !strings.Contains(err.Error(), "root") {
		t.Fatalf("another root: %v", err)
	}
	wrongPCR := bytes.Repeat([]byte{1}, 48)
	if _, err := Verify(strings.NewReader(joinLog(ls)), Options{PCR0: wrongPCR, Roots: s.roots()}); !errors.Is(err, ErrAttestation) || !strings.Contains(err.Error(), "PCR0") {
		t.Fatalf("another PCR0: %v", err)
	}
	if _, err := Verify(strings.NewReader(""), Options{}); err == nil || errors.As(err, new(*Error)) {
		t.Fatalf("no PCR0: %v", err)
	}
	// A document without "audit".
	boot := lineRecord(t, ls[0]).(*Boot)
	ud, _ := (&attestation.UserData{KeySet: make([]byte, attestation.KeySetDigestSize)}).Marshal()
	doc, err := nsm.Attest(s.sim, nsm.AttestRequest{UserData: ud})
	if err != nil {
		t.Fatal(err)
	}
	boot.Attestation = doc
	ls[0] = string(boot.AppendJSON(nil))
	if _, err := verifyString(t, s, joinLog(ls), nil); !errors.Is(err, ErrAttestation) || !strings.Contains(err.Error(), "attests no audit key") {
		t.Fatalf("no audit key attested: %v", err)
	}
}

// TestReportJSON: the report renders as the CLI prints it.
func TestReportJSON(t *testing.T) {
	s := newEnclaveSim(t)
	ls := lines(newBootLog(t, s, 1, "").standard(3).recs)
	rep, err := verifyString(t, s, joinLog(ls[:len(ls)-1]), nil)
	if !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	for _, want := range []string{`"reason":"truncated"`, `"entries":3`, `"problems":[{`, `"audit_overflow":""`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("no %s in %s", want, b)
		}
	}
}

func lineRecord(t testing.TB, l string) Record {
	t.Helper()
	r, err := ParseLine([]byte(l))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// resign rewrites a log as someone holding another key would: the boot
// record names the new key, the chain is recomputed from its genesis and
// every checkpoint signed again. The attestation document stays: nobody
// but the enclave can make one.
func resign(t testing.TB, ls []string, key ed25519.PrivateKey) []string {
	t.Helper()
	pub := key.Public().(ed25519.PublicKey)
	var chain *Chain
	out := make([]string, len(ls))
	for i, l := range ls {
		switch r := lineRecord(t, l).(type) {
		case *Boot:
			r.AuditKey = pub
			chain = NewChain(pub)
			out[i] = string(r.AppendJSON(nil))
		case *Entry:
			chain.Append(r)
			out[i] = string(r.AppendJSON(nil))
		case *Checkpoint:
			seq, h := chain.Head()
			out[i] = string(SignCheckpoint(key, seq, h, r.Time).AppendJSON(nil))
		}
	}
	return out
}

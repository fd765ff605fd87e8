package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// enclaveSim is a simulated enclave: its NSM (under a CA of its own) and
// the PCR0 it presents.
type enclaveSim struct {
	ca   *nsmsim.CA
	sim  *nsmsim.Simulator
	pcr0 []byte
}

func newEnclaveSim(t testing.TB) *enclaveSim {
	t.Helper()
	ca, err := nsmsim.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sim, err := nsmsim.New(nsmsim.Options{CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	return &enclaveSim{ca: ca, sim: sim, pcr0: sim.PCR(0)}
}

func (s *enclaveSim) roots() *x509.CertPool { return s.ca.Roots() }

// document attests pub as the audit key (and overflow as the pin).
func (s *enclaveSim) document(t testing.TB, pub ed25519.PublicKey, overflow string) []byte {
	t.Helper()
	spki, err := attestation.MarshalAuditKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	ud, err := (&attestation.UserData{KeySet: make([]byte, attestation.KeySetDigestSize), Audit: spki, Pins: attestation.Pins{AuditOverflow: overflow}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := nsm.Attest(s.sim, nsm.AttestRequest{UserData: ud})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// bootLog is one boot's records as signerd makes them.
type bootLog struct {
	priv  ed25519.PrivateKey
	pub   ed25519.PublicKey
	chain *Chain
	now   time.Time
	recs  []Record
}

func newBootLog(t testing.TB, s *enclaveSim, seed byte, overflow string) *bootLog {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	b := &bootLog{priv: priv, pub: pub, chain: NewChain(pub), now: time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)}
	b.recs = append(b.recs, &Boot{AuditKey: pub, Attestation: s.document(t, pub, overflow)})
	return b
}

func (b *bootLog) tick() time.Time {
	b.now = b.now.Add(1234567 * time.Nanosecond)
	return b.now
}

// decision appends a decision; i picks its outcome among a mix.
func (b *bootLog) decision(i int) *Entry {
	e := &Entry{Type: Decision, Time: b.tick(), Client: "", Key: "dev-ed25519", Kind: "message",
		Digest: sha256.Sum256([]byte(fmt.Sprint("message ", i))), Outcome: OutcomeAllowed}
	switch i % 5 {
	case 3:
		e.Key, e.Outcome, e.Reason = "nope", "unknown_key", `unknown key "nope"`
	case 4:
		e.Client, e.Outcome, e.Reason = "app1", "forbidden", "client app1 may not use key dev-ed25519"
	}
	b.chain.Append(e)
	b.recs = append(b.recs, e)
	return e
}

func (b *bootLog) add(e *Entry) {
	b.chain.Append(e)
	b.recs = append(b.recs, e)
}

func (b *bootLog) checkpoint() *Checkpoint {
	seq, h := b.chain.Head()
	c := SignCheckpoint(b.priv, seq, h, b.tick())
	b.recs = append(b.recs, c)
	return c
}

func (b *bootLog) head(nonce []byte) *Head {
	seq, h := b.chain.Head()
	return SignHead(b.priv, seq, h, b.tick(), nonce)
}

// standard is a boot of n decisions with a checkpoint every 10 entries
// and at the end, a refusals entry and a gap entry among them.
func (b *bootLog) standard(n int) *bootLog {
	for i := 1; i <= n; i++ {
		switch i {
		case 7:
			from := b.tick()
			b.add(&Entry{Type: Refusals, From: from, Time: b.tick(), Count: 12, Outcome: "unauthenticated"})
		case 13:
			from := b.tick()
			b.add(&Entry{Type: Gap, From: from, Time: b.tick(), Count: 3})
		default:
			b.decision(i)
		}
		if i%10 == 0 {
			b.checkpoint()
		}
	}
	if s, _ := b.chain.Head(); n%10 != 0 && s > 0 {
		b.checkpoint()
	}
	return b
}

// lines renders records as the log's lines.
func lines(recs ...[]Record) []string {
	var out []string
	for _, rs := range recs {
		for _, r := range rs {
			out = append(out, string(r.AppendJSON(nil)))
		}
	}
	return out
}

func joinLog(ls []string) string {
	if len(ls) == 0 {
		return ""
	}
	return strings.Join(ls, "\n") + "\n"
}

// lineOf returns the index of the first line containing all of subs.
func lineOf(t testing.TB, ls []string, subs ...string) int {
	t.Helper()
	for i, l := range ls {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return i
		}
	}
	t.Fatalf("no line contains %q", subs)
	return -1
}

package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// vectorRecords are the records of testdata/vector.golden.jsonl: a fixed
// key (seed 32 bytes of 0x01), fixed times, every entry type, a reason
// that needs escaping, and a checkpoint and a head over the result.
func vectorRecords() (ed25519.PrivateKey, []Record, *Head) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	t0 := time.Date(2026, 12, 7, 20, 57, 53, 123456789, time.UTC)
	c := NewChain(pub)
	entries := []*Entry{
		{Type: Decision, Time: t0, Key: "dev-ed25519", Kind: "message", Digest: sha256.Sum256([]byte("hello")), Outcome: OutcomeAllowed},
		{Type: Refusals, From: t0.Add(time.Millisecond), Time: t0.Add(time.Second), Count: 17, Outcome: "unauthenticated"},
		{Type: Gap, From: t0.Add(2 * time.Second), Time: t0.Add(3 * time.Second), Count: 5, Allowed: 2},
		{Type: Decision, Time: t0.Add(4 * time.Second), Client: "app1", Key: "eth", Kind: "digest", Digest: sha256.Sum256(make([]byte, 32)),
			Outcome: "forbidden", Reason: "client \"app1\" may not use key eth\n\t(policy.clients) ✓"},
	}
	var recs []Record
	for _, e := range entries {
		c.Append(e)
		recs = append(recs, e)
	}
	seq, h := c.Head()
	recs = append(recs, SignCheckpoint(priv, seq, h, t0.Add(5*time.Second)))
	head := SignHead(priv, seq, h, t0.Add(6*time.Second), bytes.Repeat([]byte{0xab}, 32))
	return priv, recs, head
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", path, got, want)
	}
}

// TestVector pins the exact lines, the canonical encoding of the first
// entry, the hashes and the signed messages (docs/audit.md shows them): an
// implementation in another language checks itself against these.
func TestVector(t *testing.T) {
	priv, recs, head := vectorRecords()
	pub := priv.Public().(ed25519.PublicKey)
	var log []byte
	for _, r := range recs {
		log = append(r.AppendJSON(log), '\n')
	}
	log = append(head.AppendJSON(log), '\n')
	golden(t, "vector.golden.jsonl", log)

	var v strings.Builder
	e1 := recs[0].(*Entry)
	cp := recs[len(recs)-1].(*Checkpoint)
	g := Genesis(pub)
	h1 := e1.Hash()
	fmt.Fprintf(&v, "audit_key_seed %x\naudit_key %x\ngenesis %x\n", bytes.Repeat([]byte{1}, 32), []byte(pub), g)
	fmt.Fprintf(&v, "entry1_canonical %x\nentry1_hash %x\n", e1.AppendCanonical(nil), h1)
	for _, r := range recs[1:4] {
		fmt.Fprintf(&v, "entry%d_hash %x\n", r.(*Entry).Seq, r.(*Entry).Hash())
	}
	fmt.Fprintf(&v, "checkpoint_message %x\nhead_message %x\n", CheckpointMessage(cp.Seq, cp.Hash, cp.Time), HeadMessage(head.Seq, head.Hash, head.Time, head.Nonce))
	golden(t, "vector.golden.txt", []byte(v.String()))

	if want := sha256.Sum256(append([]byte("enclave-signer/audit/genesis/v1\x00"), pub...)); g != want {
		t.Fatalf("genesis %x, want %x", g, want)
	}
	if h1 != sha256.Sum256(e1.AppendCanonical(nil)) || recs[1].(*Entry).Prev != h1 {
		t.Fatal("entry 2 does not link to entry 1's hash")
	}
	if !cp.Verify(pub) || head.Verify() != nil {
		t.Fatal("the vector's signatures do not verify")
	}
	// The canonical encoding of entry 1, spelled out.
	var want []byte
	want = append(want, "enclave-signer/audit/entry/v1\x00"...)
	want = append(want, 1)
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 1)                   // seq
	want = append(want, u64(uint64(e1.Time.UnixNano()))...)       // time
	want = append(want, make([]byte, 8+8+8)...)                   // from, count, allowed
	want = append(want, 0, 0)                                     // client ""
	want = append(append(want, 0, 11), "dev-ed25519"...)          // key
	want = append(append(want, 0, 7), "message"...)               // kind
	want = append(want, e1.Digest[:]...)                          // sha256
	want = append(append(append(want, 0, 7), "allowed"...), 0, 0) // outcome, reason ""
	want = append(want, g[:]...)                                  // prev
	if got := e1.AppendCanonical(nil); !bytes.Equal(got, want) {
		t.Fatalf("canonical:\n got %x\nwant %x", got, want)
	}
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	for i := range 8 {
		b[7-i] = byte(v >> (8 * i))
	}
	return b
}

// TestParseLineRoundTrip: every record of the vector parses back to
// itself, and so does the head.
func TestParseLineRoundTrip(t *testing.T) {
	_, recs, head := vectorRecords()
	for _, r := range recs {
		line := r.AppendJSON(nil)
		back, err := ParseLine(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("%s:\n got %+v\nwant %+v", line, back, r)
		}
	}
	h, err := ParseHead(append(head.AppendJSON(nil), '\n'))
	if err != nil || !reflect.DeepEqual(h, head) {
		t.Fatalf("head: %+v, %v", h, err)
	}
}

// TestParseLineRefuses: each way a line can be wrong is refused, saying
// what is wrong.
func TestParseLineRefuses(t *testing.T) {
	_, recs, _ := vectorRecords()
	dec := string(recs[0].AppendJSON(nil))
	gap := string(recs[2].AppendJSON(nil))
	cp := string(recs[4].AppendJSON(nil))
	boot := string((&Boot{AuditKey: make([]byte, 32), Attestation: []byte{1, 2, 3}}).AppendJSON(nil))
	if _, err := ParseLine([]byte(boot)); err != nil {
		t.Fatalf("boot: %v", err)
	}
	// A refusal decided before the key or kind were known parses.
	early := &Entry{Type: Decision, Seq: 9, Time: time.Unix(1, 0).UTC(), Client: "app1", Outcome: "auth_unavailable", Reason: "the nonce cache is full"}
	if back, err := ParseLine(early.AppendJSON(nil)); err != nil || !reflect.DeepEqual(back, early) {
		t.Fatalf("a refusal without key or kind: %+v, %v", back, err)
	}
	rep := func(s, old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("%s has no %s", s, old)
		}
		return strings.Replace(s, old, new, 1)
	}
	for _, tt := range []struct{ name, line, want string }{
		{"empty", "", "want a JSON object"},
		{"array", "[]", "want a JSON object"},
		{"trailing", dec + "{}", "data after"},
		{"duplicate", rep(dec, `"seq":1,`, `"seq":1,"seq":1,`), `"seq" appears twice`},
		{"unknown", rep(dec, `"seq":1,`, `"seq":1,"x":"y",`), `unknown member "x"`},
		{"missing", rep(dec, `"kind":"message",`, ``), `no "kind"`},
		{"nested", rep(dec, `"client":""`, `"client":{}`), "want a string or an integer"},
		{"bool", rep(dec, `"client":""`, `"client":true`), "want a string or an integer"},
		{"type", rep(dec, `"decision"`, `"verdict"`), `"type" is "verdict"`},
		{"seq string", rep(dec, `"seq":1`, `"seq":"1"`), "want an unsigned integer"},
		{"seq negative", rep(dec, `"seq":1`, `"seq":-1`), "want an unsigned integer"},
		{"seq fraction", rep(dec, `"seq":1`, `"seq":1.0`), "want an unsigned integer"},
		{"seq zero", rep(dec, `"seq":1`, `"seq":0`), "numbered from 1"},
		{"time offset", rep(dec, `Z"`, `+00:00"`), "nine fractional digits"},
		{"time short", rep(dec, `.123456789Z`, `.123Z`), "nine fractional digits"},
		{"hex upper", rep(dec, `"sha256":"2c`, `"sha256":"2C`), "lowercase hex"},
		{"hex short", rep(dec, `"sha256":"2c`, `"sha256":"`), "64 lowercase hex"},
		{"key too long", rep(dec, `"dev-ed25519"`, `"`+strings.Repeat("k", MaxIDSize+1)+`"`), "more than 128"},
		{"decision with count", rep(dec, `"seq":1,`, `"seq":1,"count":3,`), `unknown member "count"`},
		{"allowed without a kind", rep(dec, `"kind":"message"`, `"kind":""`), "an allowed one a key and a kind"},
		{"no outcome", rep(dec, `"outcome":"allowed"`, `"outcome":""`), "needs an outcome"},
		{"gap allowed over count", rep(gap, `"allowed":2`, `"allowed":9`), "allowed at most count"},
		{"gap count zero", rep(gap, `"count":5`, `"count":0`), "at least one"},
		{"checkpoint sig long", rep(cp, `"sig":"`, `"sig":"AAAA`), "more than 88"},
		{"checkpoint sig short", rep(cp, `"sig":"Z6AY`, `"sig":"`), "base64 of 64 to 64 bytes"},
		{"invalid UTF-8", rep(dec, `"dev-ed25519"`, "\"dev-\xff\""), "invalid UTF-8"},
		{"boot version", rep(boot, `"v":1`, `"v":2`), `"v" is 2`},
		{"boot key short", rep(boot, `"audit_key":"AAAA`, `"audit_key":"`), "base64 of 32 to 32 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseLine([]byte(tt.line))
			if err == nil || r != nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%s\n-> %v, %v; want an error containing %q", tt.line, r, err, tt.want)
			}
		})
	}
	if _, err := ParseLine(make([]byte, MaxLineSize+1)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("a line over the limit: %v", err)
	}
}

// TestSanitize: text is made valid UTF-8 and cut at a character boundary,
// with the cut marked, before it is hashed.
func TestSanitize(t *testing.T) {
	e := &Entry{Key: strings.Repeat("é", 100), Reason: "bad \xff byte", Client: "ok"}
	e.Sanitize()
	if len(e.Key) > MaxIDSize || !strings.HasSuffix(e.Key, "…") || !strings.HasPrefix(e.Key, "éé") {
		t.Fatalf("key %q (%d bytes)", e.Key, len(e.Key))
	}
	if e.Reason != "bad \uFFFD byte" || e.Client != "ok" {
		t.Fatalf("reason %q client %q", e.Reason, e.Client)
	}
}

// FuzzParseLine: no panic; a record only without an error; whatever
// parses writes a line that parses to the same record and writes the
// same line again.
func FuzzParseLine(f *testing.F) {
	_, recs, head := vectorRecords()
	for _, r := range recs {
		f.Add(r.AppendJSON(nil))
	}
	f.Add(head.AppendJSON(nil))
	f.Add((&Boot{AuditKey: make([]byte, 32), Attestation: []byte("doc")}).AppendJSON(nil))
	f.Add([]byte(`{"type":"gap"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		if h, err := ParseHead(line); err == nil {
			again := h.AppendJSON(nil)
			if h2, err := ParseHead(again); err != nil || !reflect.DeepEqual(h, h2) {
				t.Fatalf("head %s: round trip %v", again, err)
			}
		}
		r, err := ParseLine(line)
		if err != nil {
			if r != nil || !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v with record %v, or not ErrSyntax", err, r)
			}
			return
		}
		again := r.AppendJSON(nil)
		back, err := ParseLine(again)
		if err != nil {
			t.Fatalf("%q parsed, but its own line %q does not: %v", line, again, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip: %+v became %+v", r, back)
		}
		if third := back.AppendJSON(nil); !bytes.Equal(third, again) {
			t.Fatalf("not stable: %s then %s", again, third)
		}
		if e, ok := r.(*Entry); ok {
			_ = hex.EncodeToString(e.AppendCanonical(nil)) // encodes whatever parsed
		}
	})
}

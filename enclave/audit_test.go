package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/audit"
	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// attestedAuditKey returns the audit key of a fresh document from e.
func attestedAuditKey(t *testing.T, e *env) []byte {
	t.Helper()
	resp, err := call[*wire.AttestResponse](t.Context(), e.dial(), &wire.AttestRequest{})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := attestation.Verify(resp.Document, attestation.VerifyOptions{Roots: e.simCA.Roots()})
	if err != nil {
		t.Fatal(err)
	}
	ud, err := doc.SignerdUserData()
	if err != nil {
		t.Fatal(err)
	}
	if ud.Audit == nil || ud.AuditKey() == nil {
		t.Fatalf("the document attests no ed25519 audit key: %+v", ud)
	}
	if err := doc.Check(attestation.Expect{PCRs: map[int][]byte{0: doc.PCRs[0]}, AuditKey: ud.Audit}); err != nil {
		t.Fatal(err)
	}
	return ud.Audit
}

// TestAuditKeyAttested: every document attests the boot's audit key, the
// same all boot long; another boot has another key.
func TestAuditKeyAttested(t *testing.T) {
	e := start(t)
	k1 := attestedAuditKey(t, e)
	if again := attestedAuditKey(t, e); !bytes.Equal(again, k1) {
		t.Fatalf("the audit key changed within a boot: %x, then %x", k1, again)
	}
	if k2 := attestedAuditKey(t, start(t)); bytes.Equal(k2, k1) {
		t.Fatalf("two boots attest the same audit key %x", k1)
	}
}

func newTestTrail(t *testing.T, capacity int, overflow string) *auditTrail {
	t.Helper()
	a, err := newAuditTrail(capacity, overflow, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	return a
}

// TestAuditKeyZeroedAtClose: closing the trail zeroes the private key's
// bytes where they were.
func TestAuditKeyZeroedAtClose(t *testing.T) {
	a, err := newAuditTrail(minAuditBuffer, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	priv := a.priv
	if bytes.Equal(priv, make([]byte, len(priv))) {
		t.Fatal("a zero key")
	}
	a.close()
	if !bytes.Equal(priv, make([]byte, len(priv))) || a.priv != nil {
		t.Fatalf("after close: %x", priv)
	}
	a.close() // twice is harmless
	if _, err := a.head(make([]byte, 32)); !errors.Is(err, errNotReady) {
		t.Fatalf("a head after close: %v", err)
	}
}

func allowed(i int) decision {
	return decision{Time: time.Now(), KeyID: "k", Kind: keyring.KindMessage, Digest: sha256.Sum256([]byte(fmt.Sprint(i))), Outcome: outcomeAllowed}
}

// drainer reads a trail as the shim does and keeps the lines.
type drainer struct {
	key    []byte
	cursor uint64
	lines  []string
}

func (dr *drainer) read(t *testing.T, a *auditTrail) *wire.AuditBatch {
	t.Helper()
	b, err := a.read(&wire.AuditReadRequest{AuditKey: dr.key, Cursor: dr.cursor})
	if err != nil {
		t.Fatal(err)
	}
	dr.key, dr.cursor = b.AuditKey, b.Next
	for _, r := range b.Records {
		dr.lines = append(dr.lines, string(r))
	}
	return b
}

func (dr *drainer) entries(t *testing.T, typ audit.EntryType) []*audit.Entry {
	t.Helper()
	var out []*audit.Entry
	for _, l := range dr.lines {
		r, err := audit.ParseLine([]byte(l))
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if e, ok := r.(*audit.Entry); ok && e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestAuditFailClosed: a full buffer refuses allowed requests with
// errAuditUnavailable (and only them), within its capacity; a read frees
// it, a gap entry then counts what went unrecorded, and signing resumes.
func TestAuditFailClosed(t *testing.T) {
	a := newTestTrail(t, minAuditBuffer, "")
	var dr drainer
	dr.read(t, a) // a reader: learns the key
	n := 0
	for ; n < 100; n++ {
		if err := a.record(allowed(n)); err != nil {
			if !errors.Is(err, errAuditUnavailable) || !strings.Contains(err.Error(), "full") {
				t.Fatalf("refusal: %v", err)
			}
			break
		}
	}
	if n == 0 || n > minAuditBuffer {
		t.Fatalf("refused after %d, want within the buffer's %d", n, minAuditBuffer)
	}
	if st := a.status(); st.State != wire.AuditFull || st.Refused != 1 || st.Buffered != minAuditBuffer {
		t.Fatalf("status %+v", st)
	}
	// Refusals are never refused: counted for the gap.
	if err := a.record(decision{Time: time.Now(), KeyID: "x", Kind: "message", Outcome: outcomeUnknownKey, Reason: "no"}); err != nil {
		t.Fatalf("a refusal when full: %v", err)
	}
	if err := a.record(allowed(-1)); !errors.Is(err, errAuditUnavailable) {
		t.Fatalf("still full: %v", err)
	}
	dr.read(t, a) // returns what is held
	dr.read(t, a) // acknowledges it: room again
	if err := a.record(allowed(1000)); err != nil {
		t.Fatalf("after the drain: %v", err)
	}
	a.tick(time.Now())
	dr.read(t, a)
	gaps := dr.entries(t, audit.Gap)
	if len(gaps) != 1 || gaps[0].Count != 3 || gaps[0].Allowed != 0 {
		t.Fatalf("gap entries %+v, want one counting 3 (2 refused, 1 unknown key), none allowed", gaps)
	}
	if st := a.status(); st.State != wire.AuditOK || st.Refused != 2 || st.Unrecorded != 3 || st.LastDrain == 0 {
		t.Fatalf("status after: %+v", st)
	}
}

// TestAuditDrop: with --audit-overflow drop nothing is refused; the gap
// entry counts the allowed ones it missed.
func TestAuditDrop(t *testing.T) {
	a := newTestTrail(t, minAuditBuffer, overflowDrop)
	var dr drainer
	for i := range 50 {
		if err := a.record(allowed(i)); err != nil {
			t.Fatalf("drop mode refused: %v", err)
		}
	}
	if st := a.status(); st.State != wire.AuditDropping || st.Unrecorded != 50-minAuditBuffer || st.Refused != 0 {
		t.Fatalf("status %+v", st)
	}
	dr.read(t, a)
	dr.read(t, a)
	dr.read(t, a)
	gaps := dr.entries(t, audit.Gap)
	if len(gaps) != 1 || gaps[0].Count != 50-minAuditBuffer || gaps[0].Allowed != 50-minAuditBuffer {
		t.Fatalf("gap %+v", gaps)
	}
}

// TestAuditUnauthenticatedCounted: a flood of unauthenticated refusals
// takes no room; each interval writes one entry counting them.
func TestAuditUnauthenticatedCounted(t *testing.T) {
	a := newTestTrail(t, minAuditBuffer, "")
	for range 10000 {
		if err := a.record(decision{Time: time.Now(), Kind: "message", Outcome: outcomeUnauthenticated, Reason: "bad MAC"}); err != nil {
			t.Fatal(err)
		}
	}
	if st := a.status(); st.Buffered != 0 {
		t.Fatalf("unauthenticated refusals took room: %+v", st)
	}
	a.tick(time.Now())
	if err := a.record(decision{Time: time.Now(), Outcome: outcomeUnauthenticated}); err != nil {
		t.Fatal(err)
	}
	a.tick(time.Now())
	var dr drainer
	dr.read(t, a)
	got := dr.entries(t, audit.Refusals)
	if len(got) != 2 || got[0].Count != 10000 || got[1].Count != 1 || got[0].Outcome != "unauthenticated" {
		t.Fatalf("refusals entries %+v", got)
	}
}

// TestAuditCursor: a cursor frees only the records before it, and only
// for its own boot; past the end it is refused.
func TestAuditCursor(t *testing.T) {
	a := newTestTrail(t, 64, "")
	for i := range 5 {
		a.record(allowed(i))
	}
	b, _ := a.read(&wire.AuditReadRequest{})
	if len(b.Records) != 6 || b.Next != 2*5+2 || b.More { // 5 entries and the checkpoint a read to the end adds
		t.Fatalf("first read: %d records, next %d, more %v", len(b.Records), b.Next, b.More)
	}
	other := bytes.Repeat([]byte{1}, 32)
	if b2, _ := a.read(&wire.AuditReadRequest{AuditKey: other, Cursor: b.Next}); len(b2.Records) != 6 {
		t.Fatalf("another boot's cursor freed records: %d left", len(b2.Records))
	}
	if b3, _ := a.read(&wire.AuditReadRequest{AuditKey: a.pub, Cursor: 4}); len(b3.Records) != 5 {
		t.Fatalf("cursor 4 (after entry 1): %d records, want 4 entries and the checkpoint", len(b3.Records))
	}
	if _, err := a.read(&wire.AuditReadRequest{AuditKey: a.pub, Cursor: 1000}); !errors.Is(err, errInvalidRequest) {
		t.Fatalf("a cursor past the end: %v", err)
	}
	b4, _ := a.read(&wire.AuditReadRequest{AuditKey: a.pub, Cursor: b.Next, Max: 2})
	if len(b4.Records) != 0 || b4.Next != b.Next {
		t.Fatalf("all acknowledged: %+v", b4)
	}
	for i := range 5 {
		a.record(allowed(i))
	}
	b5, _ := a.read(&wire.AuditReadRequest{AuditKey: a.pub, Cursor: b.Next, Max: 2})
	if len(b5.Records) != 2 || !b5.More || b5.Next != 2*7+1 {
		t.Fatalf("max 2: %d records, next %d, more %v", len(b5.Records), b5.Next, b5.More)
	}
}

// TestAuditHead: a head signs the chain's end with the caller's nonce.
func TestAuditHead(t *testing.T) {
	a := newTestTrail(t, 64, "")
	a.record(allowed(1))
	nonce := bytes.Repeat([]byte{3}, 32)
	h, err := a.head(nonce)
	if err != nil {
		t.Fatal(err)
	}
	head := &audit.Head{AuditKey: h.AuditKey, Seq: h.Seq, Time: time.Unix(0, h.Time), Nonce: h.Nonce, Sig: h.Sig}
	copy(head.Hash[:], h.Hash)
	if err := head.Verify(); err != nil || h.Seq != 1 || !bytes.Equal(h.AuditKey, a.pub) {
		t.Fatalf("head %+v: %v", h, err)
	}
	for _, n := range [][]byte{nil, make([]byte, 15), make([]byte, 257)} {
		if _, err := a.head(n); !errors.Is(err, errInvalidRequest) {
			t.Errorf("nonce of %d bytes: %v", len(n), err)
		}
	}
}

// TestAuditStop: stopping writes a final checkpoint; after it nothing is
// recorded and allowed requests are refused not_ready.
func TestAuditStop(t *testing.T) {
	a := newTestTrail(t, 64, "")
	var dr drainer
	a.record(allowed(1))
	dr.read(t, a)
	a.record(allowed(2))
	key, cursor := dr.key, dr.cursor
	go func() {
		for range 10 {
			time.Sleep(30 * time.Millisecond)
			if b, err := a.read(&wire.AuditReadRequest{AuditKey: key, Cursor: cursor}); err == nil {
				cursor = b.Next
			}
		}
	}()
	begin := time.Now()
	a.stop(auditDrainWait)
	if el := time.Since(begin); el > auditDrainWait {
		t.Errorf("stop waited %v", el)
	}
	err := a.record(allowed(3))
	if !errors.Is(err, errNotReady) || !errors.Is(err, errAuditUnavailable) {
		t.Fatalf("after stop: %v", err)
	}
	if seq, _ := a.chain.Head(); seq != 2 || a.lastCP != 2 {
		t.Fatalf("final checkpoint covers %d of %d", a.lastCP, seq)
	}
}

// auditLog drains e's trail through the wire and returns the log: a boot
// record (with a fresh document) and the lines.
func auditLog(t *testing.T, e *env, c *wire.Conn) string {
	t.Helper()
	var key []byte
	var cursor uint64
	var lines []string
	for {
		m, err := c.Call(t.Context(), &wire.AuditReadRequest{AuditKey: key, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		b := m.(*wire.AuditBatch)
		key, cursor = b.AuditKey, b.Next
		for _, r := range b.Records {
			lines = append(lines, string(r))
		}
		if len(b.Records) == 0 {
			break
		}
	}
	resp, err := call[*wire.AttestResponse](t.Context(), c, &wire.AttestRequest{})
	if err != nil {
		t.Fatal(err)
	}
	boot := (&audit.Boot{AuditKey: key, Attestation: resp.Document}).AppendJSON(nil)
	return string(boot) + "\n" + strings.Join(lines, "\n") + "\n"
}

// TestAuditEndToEnd: signatures and refusals through signerd's wire,
// from concurrent callers, drained as the shim drains, make a log that
// verifies against the enclave's PCR0; each decision is one entry.
func TestAuditEndToEnd(t *testing.T) {
	e := start(t, "--audit-buffer", "4096")
	c := e.dial()
	e.provision(c, e.keyringFor("k.age", newKey(t, "k", keyring.Ed25519)))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				id := "k"
				if i%10 == 9 {
					id = "nope"
				}
				call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: id, Data: []byte(fmt.Sprint(g, i))})
			}
		})
	}
	wg.Wait()
	// A digest the ed25519 key cannot sign is refused before the
	// decision: recorded as refused, never as allowed.
	if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "k", Data: make([]byte, 32), IsDigest: true}); !errors.Is(err, wire.ErrDigestNotAllowed) {
		t.Fatalf("a digest for ed25519: %v", err)
	}
	st, err := call[*wire.Status](t.Context(), c, &wire.StatusRequest{})
	if err != nil || st.Audit == nil || st.Audit.LastSeq != 401 || st.Audit.Capacity != 4096 || st.Audit.State != wire.AuditOK {
		t.Fatalf("status %+v, %v", st.Audit, err)
	}
	log := auditLog(t, e, c)
	rep, err := audit.Verify(strings.NewReader(log), audit.Options{PCR0: st.PCRs[0], Roots: e.simCA.Roots()})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if b := rep.Boots[0]; b.Decisions != 401 || b.Allowed != 360 || b.Refused != 41 || b.LastCheckpoint != 401 {
		t.Fatalf("report %+v", b)
	}
	for _, want := range []string{`"key":"nope","kind":"message"`, `"outcome":"unknown_key"`, `"kind":"digest","sha256":"66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925","outcome":"invalid"`} {
		if !strings.Contains(log, want) {
			t.Errorf("no %s in the log:\n%s", want, log)
		}
	}
}

// TestAuditReadOnlyFromPrivilegedPeers: over TCP, an audit read from an
// ephemeral source port is refused and frees nothing; heads are open.
func TestAuditReadOnlyFromPrivilegedPeers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostport := ln.Addr().String()
	ln.Close()
	start(t, "--listen", "tcp://"+hostport)
	taddr := transport.Addr{Scheme: transport.TCP, HostPort: hostport}
	plain, err := wire.Dial(t.Context(), func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, taddr) })
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	call[*wire.SignResponse](t.Context(), plain, &wire.SignRequest{KeyID: "k", Data: []byte("m")}) // not ready: a refusal, recorded
	_, err = plain.Call(t.Context(), &wire.AuditReadRequest{})
	if !errors.Is(err, wire.ErrForbidden) || !strings.Contains(err.Error(), "privileged source port") {
		t.Fatalf("an unprivileged read: %v", err)
	}
	m, err := plain.Call(t.Context(), &wire.AuditHeadRequest{Nonce: make([]byte, 32)})
	if err != nil || m.(*wire.AuditHead).Seq != 1 {
		t.Fatalf("a head from an unprivileged peer: %+v, %v", m, err)
	}
	if st, _ := call[*wire.Status](t.Context(), plain, &wire.StatusRequest{}); st.Audit.Buffered != 1 || st.Audit.LastDrain != 0 {
		t.Fatalf("the refused read touched the buffer: %+v", st.Audit)
	}
}

// TestAuditConfig: --audit-buffer's bounds; --audit-overflow takes refuse
// or drop, also from SIGNERD_AUDIT_OVERFLOW, is attested, and shows in
// status.
func TestAuditConfig(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--audit-buffer", "15"}, nil, "--audit-buffer: want 16 to 4194304 records, got 15"},
		{[]string{"--audit-buffer", "5000000"}, nil, "--audit-buffer: want 16"},
		{[]string{"--audit-overflow", "ignore"}, nil, `want refuse (a full audit buffer stops signing until it is drained) or drop`},
		{nil, map[string]string{"SIGNERD_AUDIT_OVERFLOW": "yes"}, "SIGNERD_AUDIT_OVERFLOW (the image's pins, make image AUDIT_OVERFLOW=…)"},
	} {
		_, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
	cfg, err := parseConfig([]string{"--audit-overflow", "refuse"}, func(k string) string { return map[string]string{"SIGNERD_AUDIT_OVERFLOW": "drop"}[k] }, io.Discard)
	if err != nil || cfg.Pins.AuditOverflow != "" || cfg.AuditBuffer != defaultAuditBuffer {
		t.Fatalf("the command line after the image: %+v, %v", cfg, err)
	}

	e := startEnv(t, map[string]string{"SIGNERD_AUDIT_OVERFLOW": "drop"})
	c := e.dial()
	st, err := call[*wire.Status](t.Context(), c, &wire.StatusRequest{})
	if err != nil || st.Pins == nil || st.Pins.AuditOverflow != overflowDrop || st.Pinned {
		t.Fatalf("status pins %+v, %v", st.Pins, err)
	}
	resp, err := call[*wire.AttestResponse](t.Context(), c, &wire.AttestRequest{})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := attestation.Parse(resp.Document)
	if ud, err := doc.SignerdUserData(); err != nil || ud.Pins.AuditOverflow != overflowDrop {
		t.Fatalf("attested pins %+v, %v", ud, err)
	}
	if !strings.Contains(e.logs.String(), `"audit_overflow":"drop"`) {
		t.Errorf("the start log does not say audit_overflow drop:\n%s", e.logs)
	}
}

// BenchmarkRecord is what the audit trail costs signerd per decision:
// "record" the entry's hash and its place in the buffer (the buffer freed
// every 1024 entries without encoding them), "record+drain" that and the
// drain's work, a checkpoint (ed25519) per read and each record's JSON.
func BenchmarkRecord(b *testing.B) {
	for _, drain := range []bool{false, true} {
		name := "record"
		if drain {
			name = "record+drain"
		}
		b.Run(name, func(b *testing.B) {
			a, err := newAuditTrail(defaultAuditBuffer, "", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer a.close()
			d := allowed(1)
			n := 0
			for b.Loop() {
				if err := a.record(d); err != nil {
					b.Fatal(err)
				}
				if n++; n%1024 != 0 {
					continue
				}
				if !drain {
					a.mu.Lock()
					next := a.nextPos
					a.mu.Unlock()
					a.read(&wire.AuditReadRequest{AuditKey: a.pub, Cursor: next, Max: 1})
					continue
				}
				for {
					a.mu.Lock()
					start := uint64(0)
					if a.n > 0 {
						start = audit.Position(a.ring[a.start].record())
					}
					a.mu.Unlock()
					bt, _ := a.read(&wire.AuditReadRequest{AuditKey: a.pub, Cursor: start})
					a.read(&wire.AuditReadRequest{AuditKey: a.pub, Cursor: bt.Next, Max: 1})
					if !bt.More {
						break
					}
				}
			}
		})
	}
}

// TestAuditAuthenticatedDecisions: authenticated requests through the real
// recorder: allowed and forbidden ones are decisions naming the client; a
// refusal decided before the kind was known (a method the endpoint does not
// take) is one too, without a kind; unauthenticated ones are counted into
// one refusals entry; the drained log verifies.
func TestAuditAuthenticatedDecisions(t *testing.T) {
	var d *daemon
	setTestOnlyDaemon(func(x *daemon) { d = x })
	t.Cleanup(func() { setTestOnlyDaemon(nil) })
	e := start(t)
	c := e.dial()
	app1, app2 := newClient("app1", 1), newClient("app2", 1)
	k1 := newKey(t, "k1", keyring.Ed25519)
	ring := policedRingJSON("pay", testAudience, []testClient{app1, app2}, policedKey{k1, map[string]any{"clients": []string{"app1"}}})
	if st := e.provision(c, wire.SealedKeyring{Name: "pay.age", Data: sealKeyring(t, e.identity.Recipient(), ring)}); st.State != wire.StateReady {
		t.Fatalf("provisioning: %+v", st.Error)
	}
	send := func(secret []byte, p signreq.Params) error {
		_, err := c.Call(t.Context(), authRequest(t, secret, p))
		return err
	}
	p := signreq.Params{Audience: testAudience, Client: "app1", Path: "/v1/keys/k1/sign", Body: messageBody("pay 1")}
	if err := send(app1.secrets[0], p); err != nil {
		t.Fatalf("allowed: %v", err)
	}
	p2 := p
	p2.Client = "app2"
	if err := send(app2.secrets[0], p2); !errors.Is(err, wire.ErrForbidden) {
		t.Fatalf("app2 on k1: %v", err)
	}
	p3 := p
	p3.Method = "GET"
	if err := send(app1.secrets[0], p3); !errors.Is(err, wire.ErrInvalidRequest) {
		t.Fatalf("GET: %v", err)
	}
	for range 5 {
		if err := send(app2.secrets[0], p); !errors.Is(err, wire.ErrUnauthenticated) { // app1's request, app2's secret
			t.Fatalf("a wrong MAC: %v", err)
		}
	}
	d.audit.tick(time.Now())
	log := auditLog(t, e, c)
	st, _ := call[*wire.Status](t.Context(), c, &wire.StatusRequest{})
	rep, err := audit.Verify(strings.NewReader(log), audit.Options{PCR0: st.PCRs[0], Roots: e.simCA.Roots()})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if b := rep.Boots[0]; b.Decisions != 3 || b.Allowed != 1 || b.Refused != 2 || b.Counted != 5 {
		t.Fatalf("report %+v\n%s", b, log)
	}
	for _, want := range []string{
		`"client":"app1","key":"k1","kind":"message"`,
		`"client":"app2","key":"k1","kind":"message"`,
		`"client":"app1","key":"","kind":"","sha256":"0000000000000000000000000000000000000000000000000000000000000000","outcome":"invalid"`,
		`"type":"refusals"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("no %s in the log:\n%s", want, log)
		}
	}
}

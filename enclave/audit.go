package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/audit"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// The audit trail's settings (docs/audit.md).
const (
	// defaultAuditBuffer is how many records (entries and checkpoints)
	// wait for the host to drain them by default (--audit-buffer): some
	// 14 MiB, and at 20 000 signatures a second three seconds of a shim
	// that stopped draining (restarting, say) before signing stops.
	defaultAuditBuffer = 65536
	minAuditBuffer     = 16
	maxAuditBuffer     = 1 << 22
	// auditInterval is how often a checkpoint is signed while entries
	// arrive, and the span one refusals entry counts.
	auditInterval = time.Second
	// A batch holds at most auditReadMax records and about
	// auditReadBytes of them: well within a wire frame.
	auditReadMax   = 1024
	auditReadBytes = 512 << 10
	// auditDrainWait bounds how long a stopping signerd waits for the
	// host to drain its last records, final checkpoint included.
	auditDrainWait = 2 * time.Second
)

// The values of --audit-overflow; overflowDrop is the one attested.
const (
	overflowRefuse = "refuse"
	overflowDrop   = "drop"
)

// auditTrail is signerd's recorder (docs/audit.md): every decision
// becomes an entry of this boot's hash chain, held in a bounded buffer
// until the host drains it (audit_read_request). A checkpoint, the chain
// signed by the boot's audit key, is added at least once a second while
// entries arrive, and whenever a read reaches the end. The key is an
// ed25519 key generated at boot, held in memory only and attested in the
// "audit" of every document signerd makes.
//
// When the buffer is full an allowed request is refused
// (errAuditUnavailable: nothing is signed that is not recorded) unless
// the image pins --audit-overflow drop; either way the decisions that
// found no room are counted into one gap entry, written as soon as there
// is room. Unauthenticated refusals are counted into one entry per
// interval, so junk cannot fill the buffer.
type auditTrail struct {
	pub      ed25519.PublicKey
	spki     []byte // pub's DER SubjectPublicKeyInfo, as user_data carries it
	drop     bool
	capacity int
	log      *slog.Logger
	done     chan struct{} // closed by close: ends the ticker

	mu    sync.Mutex
	priv  ed25519.PrivateKey // nil once closed
	chain *audit.Chain
	// ring holds the records not yet drained: n of them from start.
	ring     []auditRecord
	start, n int
	nextPos  uint64 // the position after the last record appended
	lastCP   uint64 // the sequence number the last checkpoint covers
	unauth   counted
	gap      counted
	refused  uint64 // requests refused audit_unavailable
	lost     uint64 // decisions counted into gap entries, in all
	drained  time.Time
	wasFull  bool // for logging the changes only
	stopped  bool // the final checkpoint is made: nothing more is recorded
	afterEnd uint64
}

// auditRecord is an entry, or (cp set) a checkpoint.
type auditRecord struct {
	entry audit.Entry
	cp    *audit.Checkpoint
}

func (r *auditRecord) record() audit.Record {
	if r.cp != nil {
		return r.cp
	}
	return &r.entry
}

// counted is what a refusals or gap entry will say: how many, of which
// allowed, from when to when.
type counted struct {
	n, allowed uint64
	from, to   time.Time
}

func (c *counted) add(t time.Time, allowed bool) {
	if c.n == 0 || t.Before(c.from) {
		c.from = t
	}
	if t.After(c.to) {
		c.to = t
	}
	c.n++
	if allowed {
		c.allowed++
	}
}

// newAuditTrail generates this boot's audit key and starts the trail.
func newAuditTrail(capacity int, overflow string, log *slog.Logger) (*auditTrail, error) {
	if capacity < minAuditBuffer || capacity > maxAuditBuffer {
		return nil, fmt.Errorf("audit buffer: want %d to %d records, got %d", minAuditBuffer, maxAuditBuffer, capacity)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	spki, err := attestation.MarshalAuditKey(pub)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &auditTrail{
		pub: pub, spki: spki, priv: priv, drop: overflow == overflowDrop, capacity: capacity, log: log,
		done: make(chan struct{}), chain: audit.NewChain(pub), ring: make([]auditRecord, capacity),
	}
	go a.ticker()
	return a, nil
}

// record implements recorder.
func (a *auditTrail) record(d decision) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	allowed := d.Outcome == outcomeAllowed
	switch {
	case a.stopped:
		// After the final checkpoint: refuse, and only count (the log
		// at close says how many).
		a.afterEnd++
		if allowed {
			return fmt.Errorf("%w: signerd is shutting down (%w)", errNotReady, errAuditUnavailable)
		}
		return nil
	case d.Outcome == outcomeUnauthenticated:
		a.unauth.add(d.Time, false)
		return nil
	}
	a.flushGap()
	if a.gap.n == 0 && a.room() > 0 {
		a.append(auditRecord{entry: audit.Entry{Type: audit.Decision, Time: d.Time, Client: d.Client, Key: d.KeyID, Kind: d.Kind,
			Digest: d.Digest, Outcome: d.Outcome, Reason: d.Reason}})
		return nil
	}
	a.noteFull()
	if allowed && !a.drop {
		a.refused++
		a.lost++
		a.gap.add(d.Time, false) // this refusal (audit_unavailable) goes unrecorded too
		return fmt.Errorf("%w: the buffer of %d records is full: the host is not draining it (docs/audit.md)", errAuditUnavailable, a.capacity)
	}
	a.lost++
	a.gap.add(d.Time, allowed)
	return nil
}

func (a *auditTrail) room() int { return a.capacity - a.n }

// append adds r: an entry is linked into the chain first.
func (a *auditTrail) append(r auditRecord) {
	if r.cp == nil {
		a.chain.Append(&r.entry)
	}
	a.ring[(a.start+a.n)%a.capacity] = r
	a.n++
	a.nextPos = audit.Position(r.record()) + 1
}

// flushGap writes the pending gap entry if there is room.
func (a *auditTrail) flushGap() {
	if a.gap.n == 0 || a.room() == 0 {
		return
	}
	a.append(auditRecord{entry: audit.Entry{Type: audit.Gap, From: a.gap.from, Time: a.gap.to, Count: a.gap.n, Allowed: a.gap.allowed}})
	a.gap = counted{}
	if a.wasFull {
		a.wasFull = false
		a.log.Info("audit buffer drained: recording again", "buffered", a.n, "capacity", a.capacity)
	}
}

// flushUnauth writes the pending refusals entry if there is room.
func (a *auditTrail) flushUnauth() {
	if a.unauth.n == 0 || a.room() == 0 {
		return
	}
	a.append(auditRecord{entry: audit.Entry{Type: audit.Refusals, From: a.unauth.from, Time: a.unauth.to, Count: a.unauth.n, Outcome: outcomeUnauthenticated}})
	a.unauth = counted{}
}

// checkpoint signs the chain's end, if it is not covered yet and there
// is room.
func (a *auditTrail) checkpoint(now time.Time) {
	seq, hash := a.chain.Head()
	if seq == a.lastCP || a.room() == 0 || a.priv == nil {
		return
	}
	a.append(auditRecord{cp: audit.SignCheckpoint(a.priv, seq, hash, now)})
	a.lastCP = seq
}

func (a *auditTrail) noteFull() {
	if !a.wasFull {
		a.wasFull = true
		what := "signing is refused (audit_unavailable) until it is drained"
		if a.drop {
			what = "decisions are counted into a gap entry (--audit-overflow drop)"
		}
		a.log.Warn("audit buffer full: the host is not draining it; "+what, "capacity", a.capacity, "last_drain", a.drained)
	}
}

// ticker flushes the counted refusals and signs a checkpoint every
// interval, until close.
func (a *auditTrail) ticker() {
	t := time.NewTicker(auditInterval)
	defer t.Stop()
	for {
		select {
		case <-a.done:
			return
		case now := <-t.C:
			a.tick(now)
		}
	}
}

// tick is one interval's work: the pending gap and counted refusals are
// written, and a checkpoint covers what came since the last.
func (a *auditTrail) tick(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.stopped {
		a.flushGap()
		a.flushUnauth()
		a.checkpoint(now)
	}
}

// read answers an audit_read_request: it lets go of the records before
// the cursor (when it is this boot's) and returns those after, ending
// with a fresh checkpoint when they reach the chain's end.
func (a *auditTrail) read(r *wire.AuditReadRequest) (*wire.AuditBatch, error) {
	max := int(r.Max)
	if max == 0 || max > auditReadMax {
		max = auditReadMax
	}
	a.mu.Lock()
	if bytes.Equal(r.AuditKey, a.pub) {
		if r.Cursor > a.nextPos {
			a.mu.Unlock()
			return nil, fmt.Errorf("%w: audit cursor %d is past the last record's position (%d): a cursor comes from a batch's next", errInvalidRequest, r.Cursor, a.nextPos)
		}
		for a.n > 0 && audit.Position(a.ring[a.start].record()) < r.Cursor {
			a.ring[a.start] = auditRecord{}
			a.start = (a.start + 1) % a.capacity
			a.n--
		}
	}
	a.drained = time.Now()
	if !a.stopped {
		a.flushGap()
		a.checkpoint(a.drained)
	}
	recs := make([]auditRecord, 0, min(a.n, max))
	for i := 0; i < a.n && len(recs) < max; i++ {
		recs = append(recs, a.ring[(a.start+i)%a.capacity])
	}
	next := a.nextPos
	if bytes.Equal(r.AuditKey, a.pub) && a.n == 0 {
		next = r.Cursor
	}
	a.mu.Unlock()

	// Encoded outside the lock, so signing does not wait for it, into
	// one buffer the lines share (a record's line is 200 to 600 bytes).
	b := &wire.AuditBatch{AuditKey: a.pub, Next: next, Records: make([][]byte, 0, len(recs))}
	buf := make([]byte, 0, min(len(recs)*400, auditReadBytes))
	for i := range recs {
		start := len(buf)
		buf = recs[i].record().AppendJSON(buf)
		if len(buf) > auditReadBytes && i > 0 {
			recs = recs[:i]
			break
		}
		b.Records = append(b.Records, buf[start:len(buf):len(buf)])
	}
	if len(recs) > 0 {
		b.Next = audit.Position(recs[len(recs)-1].record()) + 1
		b.More = b.Next < next
	}
	return b, nil
}

// head signs the chain's end with the caller's nonce.
func (a *auditTrail) head(nonce []byte) (*wire.AuditHead, error) {
	if err := audit.CheckNonce(nonce); err != nil {
		return nil, fmt.Errorf("%w: audit_head_request: %v", errInvalidRequest, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.priv == nil {
		return nil, fmt.Errorf("%w: signerd is shutting down", errNotReady)
	}
	seq, hash := a.chain.Head()
	h := audit.SignHead(a.priv, seq, hash, time.Now(), nonce)
	return &wire.AuditHead{AuditKey: h.AuditKey, Seq: h.Seq, Hash: h.Hash[:], Time: h.Time.UnixNano(), Nonce: h.Nonce, Sig: h.Sig}, nil
}

// status reports the trail's state.
func (a *auditTrail) status() *wire.AuditStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	seq, _ := a.chain.Head()
	s := &wire.AuditStatus{Buffered: uint64(a.n), Capacity: uint64(a.capacity), Unrecorded: a.lost, Refused: a.refused, LastSeq: seq, State: wire.AuditOK}
	if a.room() == 0 || a.gap.n > 0 && a.room() < 2 {
		s.State = wire.AuditFull
		if a.drop {
			s.State = wire.AuditDropping
		}
	}
	if !a.drained.IsZero() {
		s.LastDrain = uint64(a.drained.UnixMilli())
	}
	return s
}

// stop ends the trail as signerd shuts down: the counted refusals and
// gap are written, a final checkpoint covers everything, and nothing is
// recorded after it. If anyone has been draining, it waits (up to wait)
// for them to drain the rest, so the log ends on a checkpoint.
func (a *auditTrail) stop(wait time.Duration) {
	a.mu.Lock()
	a.flushGap()
	a.flushUnauth()
	a.checkpoint(time.Now())
	a.stopped = true
	draining := !a.drained.IsZero()
	a.mu.Unlock()
	if !draining {
		return
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		n := a.n
		a.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.log.Warn("stopping with audit records not drained: the host's log will end before this boot's final checkpoint", "buffered", a.n)
}

// close zeroes the audit key (nothing can be signed for this boot after)
// and stops the ticker.
func (a *auditTrail) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.priv == nil {
		return
	}
	clear(a.priv)
	a.priv = nil
	close(a.done)
	if a.afterEnd > 0 {
		a.log.Info("decisions after the audit trail's final checkpoint were refused and not recorded", "count", a.afterEnd)
	}
}

// checkAuditReader refuses an audit read from an unprivileged peer, as
// checkProvisioner refuses a provisioning: a read lets signerd free the
// records before its cursor, so any local user could otherwise make
// entries vanish before the shim stored them.
func checkAuditReader(ctx context.Context) error {
	p, ok := wire.PeerFromContext(ctx)
	if ok && p.Privileged {
		return nil
	}
	from := "a peer of unknown address"
	if ok && p.Addr != nil {
		from = p.Addr.Network() + " peer " + p.Addr.String()
	}
	return fmt.Errorf("%w: the audit trail is read only from a privileged source port (below 1024, which only root or CAP_NET_BIND_SERVICE can bind), and this request came from %s; nothing was read or freed: the host shim drains it", errForbidden, from)
}

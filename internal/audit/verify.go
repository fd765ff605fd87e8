package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// Reason names what a verification found wrong. Each is distinct: a
// verifier tells an edited line from a deleted one, a moved one, a cut
// tail and a chain re-signed with a key the enclave never attested.
type Reason string

const (
	// ReasonMalformed: a line is not a record of the log.
	ReasonMalformed Reason = "malformed"
	// ReasonAttestation: a boot's attestation document does not verify
	// against the root, is not from the expected image (PCR0), or attests
	// no audit key.
	ReasonAttestation Reason = "attestation"
	// ReasonWrongKey: a boot record names an audit key other than the one
	// its attestation document attests: the chain was re-signed with
	// another key.
	ReasonWrongKey Reason = "wrong_key"
	// ReasonTampered: an entry does not hash to what the next one (or a
	// checkpoint) says, a checkpoint's signature does not verify, or an
	// entry's sequence number was changed: a line was edited.
	ReasonTampered Reason = "tampered"
	// ReasonDeleted: entries are missing (a sequence number skipped, the
	// missing ones nowhere after), or a boot record is.
	ReasonDeleted Reason = "deleted"
	// ReasonReordered: records are out of order (a sequence number comes
	// back, or the missing ones turn up later).
	ReasonReordered Reason = "reordered"
	// ReasonTruncated: the log ends before what it must hold: entries
	// after a boot's last checkpoint (covered by no signature), a last line
	// cut off, or less than a given head.
	ReasonTruncated Reason = "truncated"
	// ReasonBadHead: the head given to check the log against is itself
	// not valid.
	ReasonBadHead Reason = "bad_head"
)

// Error is one problem found, at a line (1-based; 0 when it concerns no
// line). errors.Is matches the sentinels below by Reason.
type Error struct {
	Reason Reason `json:"reason"`
	Line   int    `json:"line,omitempty"`
	Detail string `json:"detail"`
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d: %s", e.Reason, e.Line, e.Detail)
	}
	return fmt.Sprintf("%s: %s", e.Reason, e.Detail)
}

// Is reports whether target is an *Error with the same Reason and no
// Detail (a sentinel).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason && t.Detail == ""
}

// Sentinels, one per Reason, for errors.Is.
var (
	ErrMalformed   = &Error{Reason: ReasonMalformed}
	ErrAttestation = &Error{Reason: ReasonAttestation}
	ErrWrongKey    = &Error{Reason: ReasonWrongKey}
	ErrTampered    = &Error{Reason: ReasonTampered}
	ErrDeleted     = &Error{Reason: ReasonDeleted}
	ErrReordered   = &Error{Reason: ReasonReordered}
	ErrTruncated   = &Error{Reason: ReasonTruncated}
	ErrBadHead     = &Error{Reason: ReasonBadHead}
)

// OutcomeAllowed is the outcome of a decision that let a signature be
// made.
const OutcomeAllowed = "allowed"

// Options are what Verify requires of a log.
type Options struct {
	// PCR0 is the image every boot must have run (48 bytes). Required: an
	// audit key attested by any image proves nothing.
	PCR0 []byte
	// Roots verify the attestation documents; nil means the AWS Nitro
	// Enclaves root.
	Roots *x509.CertPool
	// AllowDebug accepts boots of debug-mode enclaves (development only).
	AllowDebug bool
	// Head, when set, is a head the log must reach: its boot must be in
	// the log, up to its sequence number, with its chain hash.
	Head *Head
	// Lookahead bounds how many lines Verify reads past a skipped
	// sequence number to tell moved entries from deleted ones; 0 means
	// DefaultLookahead.
	Lookahead int
}

// DefaultLookahead is Options.Lookahead's default.
const DefaultLookahead = 4096

// maxLookaheadBytes bounds the memory the look-ahead holds.
const maxLookaheadBytes = 16 << 20

// Report is what Verify found.
type Report struct {
	Lines int           `json:"lines"`
	Boots []*BootReport `json:"boots"`
	// Head is the outcome of checking Options.Head; nil without one.
	Head *HeadReport `json:"head,omitempty"`
	// Problems are every problem found, in the order found; Verify's
	// error is the first.
	Problems []*Error `json:"problems"`
}

// BootReport describes one boot's chain.
type BootReport struct {
	Line          int       `json:"line"`
	AuditKey      string    `json:"audit_key"`
	PCR0          string    `json:"pcr0,omitempty"`
	AttestedAt    time.Time `json:"attested_at,omitzero"`
	AuditOverflow string    `json:"audit_overflow"`
	// Entries is the last sequence number verified; LastCheckpoint the
	// last one a checkpoint covers.
	Entries        uint64 `json:"entries"`
	Checkpoints    uint64 `json:"checkpoints"`
	LastCheckpoint uint64 `json:"last_checkpoint"`
	// Decisions are the decision entries, Allowed and Refused of them.
	Decisions uint64 `json:"decisions"`
	Allowed   uint64 `json:"allowed"`
	Refused   uint64 `json:"refused"`
	// Counted are the refusals counted by refusals entries.
	Counted uint64 `json:"counted_refusals"`
	// Gaps are the gap entries; Unrecorded the decisions they count,
	// UnrecordedAllowed the signatures among them (--audit-overflow drop).
	Gaps              uint64    `json:"gaps"`
	Unrecorded        uint64    `json:"unrecorded"`
	UnrecordedAllowed uint64    `json:"unrecorded_allowed"`
	First             time.Time `json:"first,omitzero"`
	Last              time.Time `json:"last,omitzero"`
	Error             *Error    `json:"error,omitempty"`
}

// HeadReport is the outcome of checking a head.
type HeadReport struct {
	AuditKey string `json:"audit_key"`
	Seq      uint64 `json:"seq"`
	// Line is the line of the boot record of the head's boot; 0 if none.
	Line int  `json:"boot_line"`
	OK   bool `json:"ok"`
}

// Verify reads a log and checks every boot's chain: the boot record's
// attestation document (against the roots, PCR0 expected) attests its
// audit key; each entry links to the one before through its hash, with
// sequence numbers from 1 and none missing or out of place; each
// checkpoint, right after the entry it covers, is signed by the audit key
// over the chain's hash there; and no entry comes after a boot's last
// checkpoint. With Options.Head, the log must also reach that head.
//
// Within a boot verification stops at the first problem (a chain broken
// once says nothing of what follows) and goes on with the next boot. The
// error is the first problem, an *Error; the report lists them all. Only
// a failure to read r is returned without a report.
func Verify(r io.Reader, opts Options) (*Report, error) {
	if len(opts.PCR0) == 0 {
		return nil, errors.New("audit: verify: the expected PCR0 is required: an audit key attested by any image proves nothing")
	}
	if opts.Lookahead <= 0 {
		opts.Lookahead = DefaultLookahead
	}
	v := &verifier{opts: opts, lr: newLineReader(r), rep: &Report{Boots: []*BootReport{}, Problems: []*Error{}}}
	if err := v.run(); err != nil {
		return nil, err
	}
	v.rep.Lines = v.lr.n
	if len(v.rep.Problems) > 0 {
		return v.rep, v.rep.Problems[0]
	}
	return v.rep, nil
}

type verifier struct {
	opts Options
	lr   *lineReader
	rep  *Report
	cur  *bootState
	// heads are the boots with the head's audit key.
	headBoot *bootState
}

// bootState is one boot being verified.
type bootState struct {
	rep      *BootReport
	key      ed25519.PublicKey
	seq      uint64
	hash     [32]byte
	seqLine  int // the line of entry seq
	cpLine   int // the line of the last checkpoint
	failed   bool
	headHash *[32]byte // the chain hash at the head's seq, once reached
}

func (v *verifier) problem(b *bootState, e *Error) {
	v.rep.Problems = append(v.rep.Problems, e)
	if b != nil && !b.failed {
		b.failed, b.rep.Error = true, e
	}
}

func (v *verifier) run() error {
	for {
		no, line, complete, err := v.lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("audit: reading the log: %w", err)
		}
		rec, perr := ParseLine(line)
		if perr != nil {
			reason, detail := ReasonMalformed, perr.Error()
			if !complete {
				reason, detail = ReasonTruncated, "the last line is cut off mid-record ("+detail+")"
			}
			v.problem(v.cur, &Error{Reason: reason, Line: no, Detail: detail})
			continue
		}
		switch r := rec.(type) {
		case *Boot:
			v.endBoot()
			v.startBoot(r, no)
		case *Entry:
			v.entry(r, no)
		case *Checkpoint:
			v.checkpoint(r, no)
		}
	}
	v.endBoot()
	v.checkHead()
	return nil
}

// orphan reports a record before any boot record: the boot record was
// deleted.
func (v *verifier) orphan(no int) bool {
	if v.cur != nil {
		return v.cur.failed
	}
	v.problem(nil, &Error{Reason: ReasonDeleted, Line: no, Detail: "a record before any boot record: the boot record of its chain was deleted"})
	v.cur = &bootState{rep: &BootReport{Line: no}, failed: true} // report the first only
	return true
}

func (v *verifier) startBoot(b *Boot, no int) {
	st := &bootState{
		rep:  &BootReport{Line: no, AuditKey: base64.StdEncoding.EncodeToString(b.AuditKey)},
		key:  b.AuditKey,
		hash: Genesis(b.AuditKey),
	}
	v.rep.Boots = append(v.rep.Boots, st.rep)
	v.cur = st
	if h := v.opts.Head; h != nil && bytes.Equal(h.AuditKey, b.AuditKey) {
		v.headBoot = st
	}
	if e := v.checkAttestation(st, b); e != nil {
		e.Line = no
		v.problem(st, e)
	}
}

// checkAttestation verifies the boot's document and that it attests the
// boot record's audit key.
func (v *verifier) checkAttestation(st *bootState, b *Boot) *Error {
	bad := func(format string, a ...any) *Error {
		return &Error{Reason: ReasonAttestation, Detail: "the boot's attestation document: " + fmt.Sprintf(format, a...)}
	}
	doc, err := attestation.Parse(b.Attestation)
	if err != nil {
		return bad("%v", err)
	}
	// A stored document is checked at its own time: its certificates
	// were valid when it was made, whatever they are now.
	if err := doc.Verify(attestation.VerifyOptions{Roots: v.opts.Roots, CurrentTime: doc.Timestamp}); err != nil {
		return bad("%v", err)
	}
	st.rep.PCR0, st.rep.AttestedAt = hex.EncodeToString(doc.PCRs[0]), doc.Timestamp
	if err := doc.Check(attestation.Expect{PCRs: map[int][]byte{0: v.opts.PCR0}, AllowDebug: v.opts.AllowDebug}); err != nil {
		return bad("%v", err)
	}
	ud, err := doc.SignerdUserData()
	if err != nil {
		return bad("%v", err)
	}
	st.rep.AuditOverflow = ud.Pins.AuditOverflow
	if ud.Audit == nil {
		return bad("it attests no audit key (no \"audit\" in its user_data): not a boot of a signerd with an audit trail")
	}
	spki, err := attestation.MarshalAuditKey(b.AuditKey)
	if err != nil {
		return bad("%v", err)
	}
	if err := doc.Check(attestation.Expect{PCRs: map[int][]byte{0: v.opts.PCR0}, AuditKey: spki, AllowDebug: v.opts.AllowDebug}); err != nil {
		if !bytes.Equal(ud.Audit, spki) {
			return &Error{Reason: ReasonWrongKey, Detail: fmt.Sprintf("the boot record's audit key %s is not the one its attestation document attests (%s): the chain was re-signed with another key",
				base64.StdEncoding.EncodeToString(b.AuditKey), base64.StdEncoding.EncodeToString(ud.AuditKey()))}
		}
		return bad("%v", err)
	}
	return nil
}

func (v *verifier) entry(e *Entry, no int) {
	if v.orphan(no) {
		return
	}
	b := v.cur
	want := b.seq + 1
	if e.Seq != want {
		if e.Prev == b.hash {
			v.problem(b, &Error{Reason: ReasonTampered, Line: no, Detail: fmt.Sprintf(
				"the entry links to seq %d (line %d) but says seq %d: its sequence number was edited", b.seq, b.seqLine, e.Seq)})
			return
		}
		v.misplaced(b, want, e.Seq, no, fmt.Sprintf("entry seq %d", e.Seq))
		return
	}
	if e.Prev != b.hash {
		prevWhat := "the genesis of the boot's audit key"
		if b.seq > 0 {
			prevWhat = fmt.Sprintf("the hash of entry seq %d (line %d)", b.seq, b.seqLine)
		}
		v.problem(b, &Error{Reason: ReasonTampered, Line: no, Detail: fmt.Sprintf(
			"entry seq %d says the chain before it is %x, but %s is %x: this line or the one before was edited", e.Seq, e.Prev, prevWhat, b.hash)})
		return
	}
	b.seq, b.hash, b.seqLine = e.Seq, e.Hash(), no
	if h := v.opts.Head; h != nil && v.headBoot == b && e.Seq == h.Seq {
		hh := b.hash
		b.headHash = &hh
	}
	b.count(e)
}

// count adds e to the boot's figures.
func (b *bootState) count(e *Entry) {
	r := b.rep
	r.Entries = e.Seq
	if r.First.IsZero() {
		r.First = e.Time
	}
	r.Last = e.Time
	switch e.Type {
	case Decision:
		r.Decisions++
		if e.Outcome == OutcomeAllowed {
			r.Allowed++
		} else {
			r.Refused++
		}
	case Refusals:
		r.Counted += e.Count
	case Gap:
		r.Gaps++
		r.Unrecorded += e.Count
		r.UnrecordedAllowed += e.Allowed
	}
}

func (v *verifier) checkpoint(c *Checkpoint, no int) {
	if v.orphan(no) {
		return
	}
	b := v.cur
	if !c.Verify(b.key) {
		v.problem(b, &Error{Reason: ReasonTampered, Line: no, Detail: fmt.Sprintf(
			"the checkpoint for seq %d does not verify under the boot's audit key: the line was edited (or signed by another key)", c.Seq)})
		return
	}
	switch {
	case c.Seq > b.seq:
		v.misplaced(b, b.seq+1, c.Seq+1, no, fmt.Sprintf("the checkpoint for seq %d", c.Seq))
	case c.Seq < b.seq || c.Seq == b.rep.LastCheckpoint && b.rep.Checkpoints > 0:
		v.problem(b, &Error{Reason: ReasonReordered, Line: no, Detail: fmt.Sprintf(
			"the checkpoint for seq %d comes after entry seq %d (line %d) or after another checkpoint for it: signerd writes each checkpoint once, right after the entry it covers",
			c.Seq, b.seq, b.seqLine)})
	case c.Hash != b.hash:
		v.problem(b, &Error{Reason: ReasonTampered, Line: no, Detail: fmt.Sprintf(
			"the checkpoint signs chain hash %x at seq %d, but the entries up to it (line %d) hash to %x: an entry was edited and the chain recomputed",
			c.Hash, c.Seq, b.seqLine, b.hash)})
	default:
		b.rep.Checkpoints++
		b.rep.LastCheckpoint, b.cpLine = c.Seq, no
	}
}

// misplaced classifies a record at line no that is not the next one: the
// entries lo to hi-1 should have come before it. If one of them turns up
// within the look-ahead, records were moved; otherwise they were deleted.
func (v *verifier) misplaced(b *bootState, lo, hi uint64, no int, what string) {
	if hi <= lo {
		v.problem(b, &Error{Reason: ReasonReordered, Line: no, Detail: fmt.Sprintf(
			"%s comes after entry seq %d (line %d): a record was moved back (or repeated)", what, b.seq, b.seqLine)})
		return
	}
	missing := fmt.Sprintf("entry seq %d", lo)
	if hi-lo > 1 {
		missing = fmt.Sprintf("entries seq %d to %d", lo, hi-1)
	}
	if at, seq := v.lookFor(lo, hi); at > 0 {
		v.problem(b, &Error{Reason: ReasonReordered, Line: no, Detail: fmt.Sprintf(
			"%s comes where %s should, and seq %d turns up later, at line %d: records were moved", what, missing, seq, at)})
		return
	}
	after := "the boot record"
	if b.seq > 0 {
		after = fmt.Sprintf("entry seq %d (line %d)", b.seq, b.seqLine)
	}
	v.problem(b, &Error{Reason: ReasonDeleted, Line: no, Detail: fmt.Sprintf(
		"%s is missing: %s follows %s", missing, what, after)})
}

// lookFor reads ahead, within the current boot, for an entry with a
// sequence number from lo to hi-1, and returns its line and number (0
// when none is found). The lines read are given back to the reader.
func (v *verifier) lookFor(lo, hi uint64) (int, uint64) {
	var held []heldLine
	defer func() {
		for i := len(held) - 1; i >= 0; i-- {
			v.lr.unread(held[i])
		}
	}()
	size := 0
	for len(held) < v.opts.Lookahead && size < maxLookaheadBytes {
		no, line, complete, err := v.lr.next()
		if err != nil {
			return 0, 0
		}
		held = append(held, heldLine{no, line, complete})
		size += len(line)
		rec, perr := ParseLine(line)
		if perr != nil {
			continue
		}
		switch r := rec.(type) {
		case *Boot:
			return 0, 0
		case *Entry:
			if r.Seq >= lo && r.Seq < hi {
				return no, r.Seq
			}
		}
	}
	return 0, 0
}

// endBoot finishes the current boot: entries after its last checkpoint
// are covered by no signature.
func (v *verifier) endBoot() {
	b := v.cur
	v.cur = nil
	if b == nil || b.failed || b.seq == b.rep.LastCheckpoint {
		return
	}
	cp := "there is no checkpoint"
	if b.rep.Checkpoints > 0 {
		cp = fmt.Sprintf("the last checkpoint (line %d) covers seq %d", b.cpLine, b.rep.LastCheckpoint)
	}
	v.problem(b, &Error{Reason: ReasonTruncated, Line: b.seqLine, Detail: fmt.Sprintf(
		"the boot's chain ends at seq %d, but %s: the entries after it are covered by no signature. The log was cut, or the enclave stopped before its next checkpoint was drained (a live log gets one at least every second: verify again, or against a head)",
		b.seq, cp)})
}

// checkHead checks the log against Options.Head.
func (v *verifier) checkHead() {
	h := v.opts.Head
	if h == nil {
		return
	}
	hr := &HeadReport{AuditKey: base64.StdEncoding.EncodeToString(h.AuditKey), Seq: h.Seq}
	v.rep.Head = hr
	if err := h.Verify(); err != nil {
		v.problem(nil, &Error{Reason: ReasonBadHead, Detail: "the head: " + err.Error()})
		return
	}
	b := v.headBoot
	if b == nil {
		v.problem(nil, &Error{Reason: ReasonTruncated, Detail: fmt.Sprintf(
			"no boot in the log has the head's audit key %s: that boot's records are missing entirely (or the head is from another deployment)", hr.AuditKey)})
		return
	}
	hr.Line = b.rep.Line
	switch {
	case b.failed:
		// Already reported; the head cannot be compared with a broken chain.
	case b.seq < h.Seq:
		v.problem(b, &Error{Reason: ReasonTruncated, Line: b.seqLine, Detail: fmt.Sprintf(
			"the boot's chain ends at seq %d, but the head (nonce %x) says the enclave had recorded %d: the log was cut", b.seq, h.Nonce, h.Seq)})
	case b.headHash != nil && *b.headHash != h.Hash || b.headHash == nil && h.Seq == 0 && Genesis(b.key) != h.Hash:
		v.problem(b, &Error{Reason: ReasonTampered, Detail: fmt.Sprintf(
			"at seq %d the log's chain hash differs from the one the head signs (%x): entries up to it were rewritten", h.Seq, h.Hash)})
	default:
		hr.OK = true
	}
}

// heldLine is a line read ahead and given back.
type heldLine struct {
	no       int
	b        []byte
	complete bool
}

// lineReader reads the log's lines, numbered from 1, and takes lines
// back for reading again.
type lineReader struct {
	br   *bufio.Reader
	n    int
	back []heldLine
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line without its newline, and whether it had
// one (false only for a last line cut off). A line over MaxLineSize is
// returned cut to that size, which ParseLine refuses.
func (r *lineReader) next() (int, []byte, bool, error) {
	if n := len(r.back); n > 0 {
		h := r.back[n-1]
		r.back = r.back[:n-1]
		return h.no, h.b, h.complete, nil
	}
	var line []byte
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(line) <= MaxLineSize {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF && len(line) == 0 {
			return 0, nil, false, io.EOF
		}
		if err != nil && err != io.EOF {
			return 0, nil, false, err
		}
		r.n++
		complete := len(line) > 0 && line[len(line)-1] == '\n'
		if complete {
			line = line[:len(line)-1]
		}
		return r.n, line, complete, nil
	}
}

func (r *lineReader) unread(h heldLine) { r.back = append(r.back, h) }

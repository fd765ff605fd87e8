package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// EntryType says what an entry records.
type EntryType uint8

// The entry types. The numbers are part of the canonical encoding: never
// reuse one.
const (
	// Decision is one decided sign request, allowed or refused.
	Decision EntryType = 1
	// Refusals counts the requests refused for one outcome (unauthenticated)
	// over an interval, From to Time: one entry instead of one each, so
	// that nobody can fill the trail with junk.
	Refusals EntryType = 2
	// Gap counts the decisions that were not recorded, From to Time,
	// because the buffer was full: refusals (including the requests
	// refused for that very reason, audit_unavailable) and, only with
	// --audit-overflow drop, Allowed signatures.
	Gap EntryType = 3
)

var entryTypeNames = map[EntryType]string{Decision: "decision", Refusals: "refusals", Gap: "gap"}

func (t EntryType) String() string {
	if n, ok := entryTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("entry_type(%d)", uint8(t))
}

// Limits of an entry's text fields, in bytes: signerd truncates longer
// values (Sanitize) before they are hashed, and the log parser refuses
// longer ones.
const (
	MaxIDSize     = 128 // Client, Key, Kind and Outcome
	MaxReasonSize = 256
)

// Entry is one link of an enclave boot's hash chain. Which fields a type
// uses is fixed (docs/audit.md); the others are zero, and the canonical
// encoding hashes every field whatever the type.
type Entry struct {
	Type EntryType
	// Seq numbers the entries of a boot from 1, without gaps.
	Seq uint64
	// Time is when the request was decided; for Refusals and Gap, when
	// the last one counted was.
	Time time.Time
	// From is when the first one counted was (Refusals, Gap); zero for a
	// Decision.
	From time.Time
	// Count is how many were counted (Refusals, Gap); 0 for a Decision.
	Count uint64
	// Allowed is how many of a Gap's Count were signed unrecorded (only
	// with --audit-overflow drop); 0 otherwise.
	Allowed uint64
	// Client is the authenticated client's id, "" when the request was
	// not authenticated (Decision only).
	Client string
	// Key is the key id the request named (Decision only).
	Key string
	// Kind is the request kind: "message", "digest", … (Decision only).
	Kind string
	// Digest is the SHA-256 of what was (or would have been) signed: the
	// message, or the digest bytes (Decision only).
	Digest [32]byte
	// Outcome is "allowed" or the refusal's name (Decision), the refusal
	// counted (Refusals); "" for a Gap.
	Outcome string
	// Reason is the rule or error that refused, short; "" for an allowed
	// Decision (Decision only).
	Reason string
	// Prev is the hash of the entry before, or Genesis for the first.
	Prev [32]byte
}

// Domain separation prefixes: a hash or signature of one kind can never
// be taken for another.
const (
	entryDomain      = "enclave-signer/audit/entry/v1\x00"
	genesisDomain    = "enclave-signer/audit/genesis/v1\x00"
	checkpointDomain = "enclave-signer/audit/checkpoint/v1\x00"
	headDomain       = "enclave-signer/audit/head/v1\x00"
)

// Genesis is the Prev of a boot's first entry: SHA-256 of the genesis
// domain and the boot's 32-byte audit public key, so that a chain
// belongs to one key.
func Genesis(key []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(genesisDomain))
	h.Write(key)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// unixNanos is t as Unix nanoseconds; 0 for the zero time.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// AppendCanonical appends e's canonical encoding, the bytes its hash is
// taken over (docs/audit.md):
//
//	"enclave-signer/audit/entry/v1" 0x00
//	type u8 ‖ seq u64 ‖ time i64 ‖ from i64 ‖ count u64 ‖ allowed u64
//	‖ client s ‖ key s ‖ kind s ‖ digest [32] ‖ outcome s ‖ reason s ‖ prev [32]
//
// integers big-endian, times Unix nanoseconds (0 for the zero time), each
// s a u16 byte length and the UTF-8 bytes.
func (e *Entry) AppendCanonical(b []byte) []byte {
	b = append(b, entryDomain...)
	b = append(b, byte(e.Type))
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(unixNanos(e.Time)))
	b = binary.BigEndian.AppendUint64(b, uint64(unixNanos(e.From)))
	b = binary.BigEndian.AppendUint64(b, e.Count)
	b = binary.BigEndian.AppendUint64(b, e.Allowed)
	b = appendString(b, e.Client)
	b = appendString(b, e.Key)
	b = appendString(b, e.Kind)
	b = append(b, e.Digest[:]...)
	b = appendString(b, e.Outcome)
	b = appendString(b, e.Reason)
	return append(b, e.Prev[:]...)
}

// appendString writes s with its u16 length. Sanitize keeps every field
// far below 65535 bytes; a longer one (never hashed by signerd, refused by
// the parser) is cut, so the encoding stays unambiguous.
func appendString(b []byte, s string) []byte {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// Hash is SHA-256 of e's canonical encoding: the next entry's Prev, and
// what a checkpoint signs.
func (e *Entry) Hash() [32]byte {
	var buf [512]byte
	return sha256.Sum256(e.AppendCanonical(buf[:0]))
}

// Sanitize makes e's text fields what they are hashed and logged as:
// valid UTF-8 (each invalid byte becomes U+FFFD) and at most MaxIDSize or
// MaxReasonSize bytes, cut at a character boundary with "…" marking the
// cut.
func (e *Entry) Sanitize() {
	e.Client = clip(e.Client, MaxIDSize)
	e.Key = clip(e.Key, MaxIDSize)
	e.Kind = clip(e.Kind, MaxIDSize)
	e.Outcome = clip(e.Outcome, MaxIDSize)
	e.Reason = clip(e.Reason, MaxReasonSize)
}

const ellipsis = "…"

func clip(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= max {
		return s
	}
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// check reports what makes e impossible for its type: the fields its type
// does not use must be zero, and those it uses present.
func (e *Entry) check() error {
	if e.Seq == 0 {
		return fmt.Errorf("seq 0: entries are numbered from 1")
	}
	if e.Time.IsZero() {
		return fmt.Errorf("no time")
	}
	switch e.Type {
	case Decision:
		if !e.From.IsZero() || e.Count != 0 || e.Allowed != 0 {
			return fmt.Errorf("a decision has no from, count or allowed")
		}
		// A refusal may come before the request's key or kind is known
		// (a credential refused, a body that does not parse); what was
		// allowed names both.
		if e.Outcome == "" || e.Outcome == OutcomeAllowed && (e.Kind == "" || e.Key == "") {
			return fmt.Errorf("a decision needs an outcome, and an allowed one a key and a kind")
		}
	case Refusals, Gap:
		if e.Client != "" || e.Key != "" || e.Kind != "" || e.Digest != ([32]byte{}) || e.Reason != "" {
			return fmt.Errorf("a %s entry has no client, key, kind, sha256 or reason", e.Type)
		}
		if e.Count == 0 || e.From.IsZero() || e.From.After(e.Time) {
			return fmt.Errorf("a %s entry counts at least one, from a time no later than its time", e.Type)
		}
		if e.Type == Refusals && (e.Outcome == "" || e.Allowed != 0) {
			return fmt.Errorf("a refusals entry names the outcome it counts and allows none")
		}
		if e.Type == Gap && (e.Outcome != "" || e.Allowed > e.Count) {
			return fmt.Errorf("a gap entry has no outcome, and allowed at most count")
		}
	default:
		return fmt.Errorf("unknown entry type %d", e.Type)
	}
	return nil
}

// Chain is the running end of a hash chain: what signerd appends to.
type Chain struct {
	key  []byte
	seq  uint64
	hash [32]byte
}

// NewChain starts the chain of a boot whose audit public key is key.
func NewChain(key []byte) *Chain {
	return &Chain{key: key, hash: Genesis(key)}
}

// Append sanitizes e, numbers it, links it to the chain (Seq and Prev)
// and returns its hash, which becomes the chain's head.
func (c *Chain) Append(e *Entry) [32]byte {
	e.Sanitize()
	c.seq++
	e.Seq, e.Prev = c.seq, c.hash
	c.hash = e.Hash()
	return c.hash
}

// Head returns the last sequence number (0 before any entry) and the
// chain hash there (Genesis before any entry).
func (c *Chain) Head() (uint64, [32]byte) { return c.seq, c.hash }

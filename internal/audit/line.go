package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// Record is one line of the log: a *Boot, an *Entry or a *Checkpoint.
type Record interface {
	// AppendJSON appends the record's line, without the newline.
	AppendJSON(b []byte) []byte
}

// BootVersion is the "v" of the boot records this package writes and
// reads.
const BootVersion = 1

// Boot starts one enclave boot's chain in the log: its audit key and an
// attestation document, fetched by the shim when it first saw the key,
// whose user_data attests that key ("audit"). A verifier trusts the key
// only through the document.
type Boot struct {
	AuditKey    ed25519.PublicKey
	Attestation []byte
}

// Limits of a line: a boot record carries an attestation document (about
// 5 KB, base64 a third more), any other line a few hundred bytes.
const (
	MaxLineSize        = 64 << 10
	maxAttestationSize = 16 << 10
)

// TimeLayout is how times are written: RFC 3339 in UTC with exactly nine
// fractional digits, so that each instant has one spelling.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// AppendJSON writes {"type":"boot","v":1,"audit_key":B64,"attestation":B64}.
func (b *Boot) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"type":"boot","v":`...)
	dst = strconv.AppendInt(dst, BootVersion, 10)
	dst = appendField(dst, "audit_key")
	dst = appendB64(dst, b.AuditKey)
	dst = appendField(dst, "attestation")
	dst = appendB64(dst, b.Attestation)
	return append(dst, '}')
}

// AppendJSON writes the entry's line: "type" and "seq" first, "prev" last,
// and between them the fields of its type in the order docs/audit.md
// gives.
func (e *Entry) AppendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = appendJSONString(b, e.Type.String())
	b = appendField(b, "seq")
	b = strconv.AppendUint(b, e.Seq, 10)
	b = appendField(b, "time")
	b = appendTime(b, e.Time)
	switch e.Type {
	case Decision:
		b = appendField(b, "client")
		b = appendJSONString(b, e.Client)
		b = appendField(b, "key")
		b = appendJSONString(b, e.Key)
		b = appendField(b, "kind")
		b = appendJSONString(b, e.Kind)
		b = appendField(b, "sha256")
		b = appendHex(b, e.Digest[:])
		b = appendField(b, "outcome")
		b = appendJSONString(b, e.Outcome)
		b = appendField(b, "reason")
		b = appendJSONString(b, e.Reason)
	case Refusals:
		b = appendField(b, "from")
		b = appendTime(b, e.From)
		b = appendField(b, "count")
		b = strconv.AppendUint(b, e.Count, 10)
		b = appendField(b, "outcome")
		b = appendJSONString(b, e.Outcome)
	case Gap:
		b = appendField(b, "from")
		b = appendTime(b, e.From)
		b = appendField(b, "count")
		b = strconv.AppendUint(b, e.Count, 10)
		b = appendField(b, "allowed")
		b = strconv.AppendUint(b, e.Allowed, 10)
	}
	b = appendField(b, "prev")
	b = appendHex(b, e.Prev[:])
	return append(b, '}')
}

// AppendJSON writes {"type":"checkpoint","seq":N,"time":T,"hash":HEX,"sig":B64}.
func (c *Checkpoint) AppendJSON(b []byte) []byte {
	b = append(b, `{"type":"checkpoint","seq":`...)
	b = strconv.AppendUint(b, c.Seq, 10)
	b = appendField(b, "time")
	b = appendTime(b, c.Time)
	b = appendField(b, "hash")
	b = appendHex(b, c.Hash[:])
	b = appendField(b, "sig")
	b = appendB64(b, c.Sig)
	return append(b, '}')
}

func appendField(b []byte, name string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return append(b, '"')
}

func appendHex(b []byte, v []byte) []byte {
	b = append(b, '"')
	b = hex.AppendEncode(b, v)
	return append(b, '"')
}

func appendB64(b []byte, v []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// appendJSONString writes s, valid UTF-8 (Sanitize sees to it), as a
// JSON string: '"' and '\' escaped, control characters as \n, \r, \t or
// \u00XX, everything else as it is.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// ErrSyntax is matched (errors.Is) by every error of ParseLine.
var ErrSyntax = errors.New("not a line of the audit log")

// syntaxError says what is wrong with a line.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string        { return e.msg }
func (e *syntaxError) Is(target error) bool { return target == ErrSyntax }

func syntaxErrorf(format string, a ...any) error {
	return &syntaxError{fmt.Sprintf(format, a...)}
}

// ParseLine parses one line of the log (without its newline), strictly:
// one JSON object of string and integer members, none twice, none
// unknown, none missing for its type, each of its form (hex digests,
// base64 keys, TimeLayout times, sizes within the limits). Member order
// and white space are free. It never returns a record with an error.
func ParseLine(line []byte) (Record, error) {
	if len(line) > MaxLineSize {
		return nil, syntaxErrorf("line of %d bytes, more than %d", len(line), MaxLineSize)
	}
	if !utf8.Valid(line) {
		return nil, syntaxErrorf("invalid UTF-8")
	}
	fields, err := readObject(line)
	if err != nil {
		return nil, err
	}
	f := &fieldReader{m: fields}
	typ := f.str("type", MaxIDSize)
	var rec Record
	switch typ {
	case "boot":
		rec = f.boot()
	case "checkpoint":
		rec = f.checkpoint()
	case "decision", "refusals", "gap":
		rec = f.entry(typ)
	default:
		if f.err == nil {
			f.err = syntaxErrorf(`"type" is %q, want boot, decision, refusals, gap or checkpoint`, typ)
		}
	}
	if f.err == nil {
		f.noneLeft()
	}
	if f.err != nil {
		return nil, f.err
	}
	return rec, nil
}

// readObject reads one flat JSON object into its raw members: strings
// (unescaped) and numbers (as written).
func readObject(line []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, syntaxErrorf("want a JSON object")
	}
	m := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxErrorf("invalid JSON: %v", err)
		}
		name := tok.(string) // object keys are always strings
		if _, dup := m[name]; dup {
			return nil, syntaxErrorf("%q appears twice", name)
		}
		v, err := dec.Token()
		if err != nil {
			return nil, syntaxErrorf("invalid JSON: %v", err)
		}
		switch v.(type) {
		case string, json.Number:
			m[name] = v
		default:
			return nil, syntaxErrorf("%q: want a string or an integer", name)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, syntaxErrorf("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, syntaxErrorf("data after the JSON object")
	}
	return m, nil
}

// fieldReader takes the members of one object, keeping the first error.
type fieldReader struct {
	m   map[string]any
	err error
}

func (f *fieldReader) fail(format string, a ...any) {
	if f.err == nil {
		f.err = syntaxErrorf(format, a...)
	}
}

func (f *fieldReader) take(name string) (any, bool) {
	v, ok := f.m[name]
	if !ok {
		f.fail("no %q", name)
		return nil, false
	}
	delete(f.m, name)
	return v, true
}

func (f *fieldReader) str(name string, max int) string {
	v, ok := f.take(name)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	switch {
	case !isStr:
		f.fail("%q: want a string", name)
	case len(s) > max:
		f.fail("%q: %d bytes, more than %d", name, len(s), max)
	case !utf8.ValidString(s):
		f.fail("%q: invalid UTF-8", name)
	}
	return s
}

func (f *fieldReader) uint(name string) uint64 {
	v, ok := f.take(name)
	if !ok {
		return 0
	}
	n, isNum := v.(json.Number)
	u, err := strconv.ParseUint(string(n), 10, 64)
	if !isNum || err != nil {
		f.fail("%q: want an unsigned integer", name)
	}
	return u
}

func (f *fieldReader) time(name string) time.Time {
	s := f.str(name, 64)
	if f.err != nil {
		return time.Time{}
	}
	t, err := time.Parse(TimeLayout, s)
	if err != nil || t.Year() < 1970 || t.Year() > 2261 {
		f.fail("%q: want a UTC time like 2026-01-02T15:04:05.000000000Z (nine fractional digits), from 1970 to 2261", name)
	}
	return t
}

func (f *fieldReader) hex32(name string) [32]byte {
	var out [32]byte
	s := f.str(name, 64)
	if f.err != nil {
		return out
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 || hex.EncodeToString(b) != s {
		f.fail("%q: want 64 lowercase hex digits", name)
	}
	copy(out[:], b)
	return out
}

func (f *fieldReader) b64(name string, min, max int) []byte {
	s := f.str(name, base64.StdEncoding.EncodedLen(max))
	if f.err != nil {
		return nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) < min || len(b) > max {
		f.fail("%q: want standard base64 of %d to %d bytes", name, min, max)
	}
	return b
}

func (f *fieldReader) noneLeft() {
	for name := range f.m {
		f.fail("unknown member %q", name)
	}
}

func (f *fieldReader) boot() *Boot {
	if v := f.uint("v"); f.err == nil && v != BootVersion {
		f.fail(`"v" is %d; this verifier reads boot records of version %d`, v, BootVersion)
	}
	b := &Boot{
		AuditKey:    f.b64("audit_key", ed25519.PublicKeySize, ed25519.PublicKeySize),
		Attestation: f.b64("attestation", 1, maxAttestationSize),
	}
	return b
}

func (f *fieldReader) checkpoint() *Checkpoint {
	c := &Checkpoint{Seq: f.uint("seq"), Time: f.time("time"), Hash: f.hex32("hash"), Sig: f.b64("sig", ed25519.SignatureSize, ed25519.SignatureSize)}
	if f.err == nil && c.Seq == 0 {
		f.fail("a checkpoint covers at least entry 1")
	}
	return c
}

func (f *fieldReader) entry(typ string) *Entry {
	e := &Entry{Seq: f.uint("seq"), Time: f.time("time")}
	switch typ {
	case "decision":
		e.Type = Decision
		e.Client = f.str("client", MaxIDSize)
		e.Key = f.str("key", MaxIDSize)
		e.Kind = f.str("kind", MaxIDSize)
		e.Digest = f.hex32("sha256")
		e.Outcome = f.str("outcome", MaxIDSize)
		e.Reason = f.str("reason", MaxReasonSize)
	case "refusals":
		e.Type = Refusals
		e.From = f.time("from")
		e.Count = f.uint("count")
		e.Outcome = f.str("outcome", MaxIDSize)
	case "gap":
		e.Type = Gap
		e.From = f.time("from")
		e.Count = f.uint("count")
		e.Allowed = f.uint("allowed")
	}
	e.Prev = f.hex32("prev")
	if f.err == nil {
		if err := e.check(); err != nil {
			f.fail("%s", err)
		}
	}
	return e
}

// AppendJSON writes the head as GET /v1/audit/head answers it and
// signer audit head saves it:
// {"audit_key":B64,"seq":N,"time":T,"hash":HEX,"nonce":HEX,"sig":B64}.
func (h *Head) AppendJSON(b []byte) []byte {
	b = append(b, `{"audit_key":`...)
	b = appendB64(b, h.AuditKey)
	b = appendField(b, "seq")
	b = strconv.AppendUint(b, h.Seq, 10)
	b = appendField(b, "time")
	b = appendTime(b, h.Time)
	b = appendField(b, "hash")
	b = appendHex(b, h.Hash[:])
	b = appendField(b, "nonce")
	b = appendHex(b, h.Nonce)
	b = appendField(b, "sig")
	b = appendB64(b, h.Sig)
	return append(b, '}')
}

// ParseHead parses a head's JSON (Head.AppendJSON), as strictly as
// ParseLine; surrounding white space is allowed. It does not verify the
// signature: Head.Verify does.
func ParseHead(b []byte) (*Head, error) {
	b = bytes.TrimSpace(b)
	if len(b) > MaxLineSize || !utf8.Valid(b) {
		return nil, syntaxErrorf("not a head: too long, or invalid UTF-8")
	}
	fields, err := readObject(b)
	if err != nil {
		return nil, err
	}
	f := &fieldReader{m: fields}
	h := &Head{
		AuditKey: f.b64("audit_key", ed25519.PublicKeySize, ed25519.PublicKeySize),
		Seq:      f.uint("seq"),
		Time:     f.time("time"),
		Hash:     f.hex32("hash"),
	}
	nonce := f.str("nonce", 2*MaxNonceSize)
	if f.err == nil {
		var err error
		if h.Nonce, err = hex.DecodeString(nonce); err != nil || hex.EncodeToString(h.Nonce) != nonce {
			f.fail(`"nonce": want lowercase hex`)
		}
	}
	h.Sig = f.b64("sig", ed25519.SignatureSize, ed25519.SignatureSize)
	if f.err == nil {
		f.noneLeft()
	}
	if f.err != nil {
		return nil, f.err
	}
	return h, nil
}

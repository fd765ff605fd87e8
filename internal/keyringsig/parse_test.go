package keyringsig

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStatementErrors(t *testing.T) {
	good, err := vectorStatement(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Offsets in the vector's statement.
	idAt := len(Tag)
	verAt := idAt + 2 + len("payments")
	nbAt := verAt + 8
	naAt := nbAt + 8
	countAt := naAt + 8
	set := func(at int, v []byte) []byte {
		b := bytes.Clone(good)
		copy(b[at:], v)
		return b
	}
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	r0, r1 := vectorRecipients[1], vectorRecipients[0] // sorted order
	recipients := func(rs ...string) []byte {
		b := bytes.Clone(good[:countAt])
		b = binary.BigEndian.AppendUint16(b, uint16(len(rs)))
		for _, r := range rs {
			b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
			b = append(b, r...)
		}
		return append(b, good[len(good)-32:]...)
	}
	tests := []struct {
		name, field string
		b           []byte
	}{
		{"empty", "tag", nil},
		{"other tag", "tag", append([]byte("enclave-signer keyring statement v0\n"), good[len(Tag):]...)},
		{"tag without its line feed", "tag", append([]byte(strings.TrimSuffix(Tag, "\n")), good[len(Tag):]...)},
		{"truncated id", "keyring_id", good[:idAt+3]},
		{"empty id", "keyring_id", append(append(bytes.Clone(good[:idAt]), 0, 0), good[verAt:]...)},
		{"bad id character", "keyring_id", set(idAt+2, []byte("pay/ents"))},
		{"id length past the end", "keyring_id", set(idAt, u16(65))},
		{"truncated version", "version", good[:verAt+4]},
		{"truncated not_before", "not_before", good[:nbAt+7]},
		{"not_before past 9999", "not_before", set(nbAt, u64(maxUnixSeconds+1))},
		{"not_after past 9999", "not_after", set(naAt, u64(1<<63))},
		{"not_after equals not_before", "not_after", set(naAt, good[nbAt:nbAt+8])},
		{"not_after before not_before", "not_after", set(naAt, u64(1))},
		{"no recipients", "recipients", recipients()},
		{"too many recipients", "recipients", set(countAt, u16(MaxRecipients+1))},
		{"unsorted recipients", "recipients", recipients(r1, r0)},
		{"duplicate recipients", "recipients", recipients(r0, r0)},
		{"not an age recipient", "recipients", recipients("age2xyz")},
		{"uppercase recipient", "recipients", recipients("age1ABC")},
		{"truncated sha256", "sha256", good[:len(good)-1]},
		{"trailing byte", "", append(bytes.Clone(good), 0)},
		{"too large", "", make([]byte, MaxStatementSize+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseStatement(tt.b)
			var se *StatementError
			if !errors.As(err, &se) {
				t.Fatalf("ParseStatement = %v, %v; want a *StatementError", s, err)
			}
			if s != nil {
				t.Error("statement not nil on error")
			}
			if se.Field != tt.field {
				t.Errorf("field %q, want %q (%v)", se.Field, tt.field, err)
			}
		})
	}
}

func TestNewStatementErrors(t *testing.T) {
	nb, na := vectorNotBefore, vectorNotAfter
	for _, tc := range []struct {
		name, field string
		id          string
		nb, na      time.Time
		rs          []string
	}{
		{"bad id", "keyring_id", "pay ments", nb, na, vectorRecipients},
		{"window reversed", "not_after", "p", na, nb, vectorRecipients},
		{"window empty", "not_after", "p", nb, nb.Add(time.Millisecond), vectorRecipients},
		{"before 1970", "not_before", "p", time.Unix(-1, 0), na, vectorRecipients},
		{"no recipients", "recipients", "p", nb, na, nil},
		{"the same recipient twice", "recipients", "p", nb, na, []string{vectorRecipients[0], vectorRecipients[0]}},
	} {
		_, err := NewStatement(tc.id, 1, tc.nb, tc.na, tc.rs, nil)
		var se *StatementError
		if !errors.As(err, &se) || se.Field != tc.field {
			t.Errorf("%s: %v, want a *StatementError on %s", tc.name, err, tc.field)
		}
	}
	// NewStatement sorts the recipients and truncates to seconds.
	s, err := NewStatement("p", 1, nb.Add(900*time.Millisecond), na, vectorRecipients, nil)
	if err != nil || s.Recipients[0] != vectorRecipients[1] || !s.NotBefore.Equal(nb) {
		t.Errorf("NewStatement: %v, %+v", err, s)
	}
}

func TestParseSignedErrors(t *testing.T) {
	good, err := os.ReadFile(vectorDir + "/keyring.age.sig")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(good), "\n")
	header, stmt, sig1, sig2 := lines[0], lines[1], lines[2], lines[3]
	value := strings.Fields(sig1)[1]
	sigB64 := strings.Fields(sig1)[2]
	tests := []struct {
		name string
		file string
		line int
	}{
		{"empty", "", 0},
		{"no final line feed", strings.TrimSuffix(string(good), "\n"), 0},
		{"CRLF", strings.ReplaceAll(string(good), "\n", "\r\n"), 1},
		{"CR inside the base64", header + stmt[:20] + "\r" + stmt[20:] + sig1, 2},
		{"other header", "enclave-signer keyring signature v2\n" + stmt + sig1, 1},
		{"header only", header, 2},
		{"blank line", header + stmt + "\n" + sig1, 3},
		{"no statement", header + sig1, 2},
		{"two statements", header + stmt + stmt, 3},
		{"statement not base64", header + "statement !!!!\n", 2},
		{"statement base64 without padding", header + strings.TrimRight(strings.TrimSuffix(stmt, "\n"), "=") + "\n", 2},
		{"two spaces", header + stmt + "signature  " + value + " " + sigB64 + "\n", 3},
		{"trailing space", header + stmt + strings.TrimSuffix(sig1, "\n") + " \n", 3},
		{"one field", header + stmt + "signature " + value + "\n", 3},
		{"unknown algorithm", header + stmt + "signature rsa:" + strings.SplitN(value, ":", 2)[1] + " " + sigB64 + "\n", 3},
		{"key labelled with the other algorithm", header + stmt + "signature ecdsa-p256:" + strings.SplitN(value, ":", 2)[1] + " " + sigB64 + "\n", 3},
		{"url-safe base64 key", header + stmt + "signature " + strings.NewReplacer("+", "-", "/", "_").Replace(strings.Fields(sig2)[1]) + " " + strings.Fields(sig2)[2] + "\n", 3},
		{"ed25519 signature too short", header + stmt + "signature " + value + " " + base64.StdEncoding.EncodeToString(make([]byte, 63)) + "\n", 3},
		{"ecdsa signature not DER", header + stmt + "signature " + strings.Fields(sig2)[1] + " " + base64.StdEncoding.EncodeToString(make([]byte, 64)) + "\n", 3},
		{"too many signatures", header + stmt + strings.Repeat(sig1, MaxSignatures+1), 0},
		{"too large", header + stmt + strings.Repeat("x", MaxSignedSize), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseSigned([]byte(tt.file))
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("ParseSigned = %v; want a *FormatError", err)
			}
			if f != nil {
				t.Error("result not nil on error")
			}
			if fe.Line != tt.line {
				t.Errorf("line %d, want %d (%v)", fe.Line, tt.line, err)
			}
		})
	}
	// A statement that does not parse is a *StatementError.
	bad := header + "statement " + base64.StdEncoding.EncodeToString([]byte("hello")) + "\n"
	var se *StatementError
	if _, err := ParseSigned([]byte(bad)); !errors.As(err, &se) || se.Field != "tag" {
		t.Errorf("statement without the tag: %v", err)
	}
}

func TestParseSignerKey(t *testing.T) {
	edKey, pKey := vectorKeys(t)
	for _, pub := range []any{edKey.Public(), pKey.Public()} {
		k, err := NewSignerKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseSignerKey(k.String())
		if err != nil || !back.Equal(k) || back.Algorithm() != k.Algorithm() {
			t.Errorf("ParseSignerKey(%s) = %v, %v", k, back, err)
		}
	}
	p, _ := NewSignerKey(pKey.Public())
	b64 := strings.SplitN(p.String(), ":", 2)[1]
	for _, bad := range []string{
		"", "ed25519", "ed25519:", "ecdsa-p256:" + strings.TrimRight(b64, "="), "ECDSA-P256:" + b64,
		"ecdsa-p256:" + b64 + "\n", "ecdsa-p256: " + b64, "ed25519:" + b64, "ecdsa-p384:" + b64,
		"ecdsa-p256:" + strings.Repeat("A", 300),
	} {
		if k, err := ParseSignerKey(bad); err == nil {
			t.Errorf("ParseSignerKey(%q) = %v, want an error", bad, k)
		}
	}
}

// FuzzParseSigned: the signature file comes from the host, untrusted.
// Whatever parses writes back byte for byte (one encoding per file, so
// what signers signed is what signerd reads), its statement parses alone
// and writes back too; what fails returns nil.
func FuzzParseSigned(f *testing.F) {
	if b, err := os.ReadFile(vectorDir + "/keyring.age.sig"); err == nil {
		f.Add(b)
		lines := strings.SplitAfter(string(b), "\n")
		f.Add([]byte(lines[0] + lines[1]))
		f.Add([]byte(lines[0] + lines[1] + lines[3] + lines[3]))
	}
	f.Add([]byte(Header + "\nstatement AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSigned(b)
		if err != nil {
			if s != nil {
				t.Fatal("result not nil on error")
			}
			return
		}
		if out := s.Marshal(); !bytes.Equal(out, b) {
			t.Fatalf("Marshal(ParseSigned(b)) != b:\n%q\n%q", out, b)
		}
		st, err := ParseStatement(s.StatementBytes())
		if err != nil {
			t.Fatalf("the statement of a parsed file does not parse: %v", err)
		}
		again, err := st.Marshal()
		if err != nil || !bytes.Equal(again, s.StatementBytes()) {
			t.Fatalf("statement round trip: %v", err)
		}
		for _, sig := range s.Signatures {
			if _, err := ParseSignerKey(sig.Signer.String()); err != nil {
				t.Fatalf("a parsed signer does not parse again: %v", err)
			}
		}
	})
}

// FuzzParseStatement: a statement parses only in its one encoding.
func FuzzParseStatement(f *testing.F) {
	if b, err := os.ReadFile(vectorDir + "/file"); err == nil {
		s, _ := NewStatement("payments", 3, vectorNotBefore, vectorNotAfter, vectorRecipients, b)
		m, _ := s.Marshal()
		f.Add(m)
	}
	f.Add([]byte(Tag))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStatement(b)
		if err != nil {
			if s != nil {
				t.Fatal("statement not nil on error")
			}
			return
		}
		out, err := s.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("Marshal(ParseStatement(b)) != b: %v", err)
		}
		if !s.NotBefore.Before(s.NotAfter) || len(s.Recipients) == 0 {
			t.Fatalf("an invalid statement parsed: %s", s)
		}
	})
}

// FuzzParseSignerKey: a pin has one spelling.
func FuzzParseSignerKey(f *testing.F) {
	edKey, pKey := vectorKeys(f)
	for _, pub := range []any{edKey.Public(), pKey.Public()} {
		k, _ := NewSignerKey(pub)
		f.Add(k.String())
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseSignerKey(s)
		if err != nil {
			if !k.IsZero() {
				t.Fatal("key not zero on error")
			}
			return
		}
		if k.String() != s {
			t.Fatalf("ParseSignerKey(%q).String() = %q", s, k.String())
		}
	})
}

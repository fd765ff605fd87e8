package signreq

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// The sign request body is on the hot path of both the shim and signerd:
// it is parsed here by hand, without reflection, into the caller's
// buffers.

// Body is a parsed sign request body: exactly one of message or digest,
// as the raw base64 text (still inside the request buffer).
type Body struct {
	B64      []byte
	IsDigest bool
}

// Field names the field the body carried: "message" or "digest".
func (b Body) Field() string {
	if b.IsDigest {
		return "digest"
	}
	return "message"
}

// Decode decodes the base64 into dst's spare capacity (DecodeBase64) and
// says which field was wrong when it is not base64.
func (b Body) Decode(dst []byte) ([]byte, error) {
	data, err := DecodeBase64(dst, b.B64)
	if err != nil {
		return nil, &BodyError{b.Field() + ": want standard base64 (RFC 4648 §4, padded): " + err.Error()}
	}
	return data, nil
}

// BodyError is a malformed request body; its message says what is wrong
// and what is wanted.
type BodyError struct{ msg string }

func (e *BodyError) Error() string { return e.msg }

func bodyErrorf(format string, a ...any) error { return &BodyError{fmt.Sprintf(format, a...)} }

// ParseBody parses {"message": BASE64} or {"digest": BASE64} strictly:
// one JSON object, exactly one of the two fields, each a string, no other
// field, nothing after the object. It does not decode the base64.
func ParseBody(b []byte) (Body, error) {
	var out Body
	var seen [2]bool // message, digest
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return out, bodyErrorf(`want a JSON object {"message": BASE64} or {"digest": BASE64}`)
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return out, bodyErrorf("want a field name at byte %d", i)
			}
			name, next, err := scanString(b, i)
			if err != nil {
				return out, err
			}
			i = skipSpace(b, next)
			if i >= len(b) || b[i] != ':' {
				return out, bodyErrorf("want ':' after field %q", name)
			}
			i = skipSpace(b, i+1)
			var idx int
			switch string(name) {
			case "message":
				idx = 0
			case "digest":
				idx = 1
			default:
				return out, bodyErrorf("unknown field %q: want message or digest", name)
			}
			if seen[idx] {
				return out, bodyErrorf("field %q appears twice", name)
			}
			seen[idx] = true
			if i >= len(b) || b[i] != '"' {
				return out, bodyErrorf("%s: want a base64 string", name)
			}
			val, next, err := scanString(b, i)
			if err != nil {
				return out, fmt.Errorf("%s: %w", name, err)
			}
			out.B64, out.IsDigest = val, idx == 1
			i = skipSpace(b, next)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return out, bodyErrorf("want ',' or '}' at byte %d", i)
		}
	}
	if i = skipSpace(b, i); i != len(b) {
		return out, bodyErrorf("unexpected data after the JSON object at byte %d", i)
	}
	switch {
	case seen[0] && seen[1]:
		return out, bodyErrorf("both message and digest given: want exactly one")
	case !seen[0] && !seen[1]:
		return out, bodyErrorf(`neither message nor digest given: want {"message": BASE64} or {"digest": BASE64}`)
	}
	return out, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString reads the JSON string starting at b[i] == '"' and returns its
// contents and the index after the closing quote. Strings without escapes
// are returned in place; the rare escaped one is decoded by encoding/json.
func scanString(b []byte, i int) (val []byte, next int, err error) {
	start := i + 1
	escaped := false
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			if !escaped {
				if !utf8.Valid(b[start:j]) {
					return nil, 0, bodyErrorf("invalid UTF-8 in a string")
				}
				return b[start:j], j + 1, nil
			}
			var s string
			if err := json.Unmarshal(b[i:j+1], &s); err != nil {
				return nil, 0, bodyErrorf("bad JSON string at byte %d", i)
			}
			return []byte(s), j + 1, nil
		case c == '\\':
			escaped = true
			j++ // skip the escaped byte (an escaped quote does not end the string)
		case c < 0x20:
			return nil, 0, bodyErrorf("control character in a string at byte %d", j)
		}
	}
	return nil, 0, bodyErrorf("unterminated string")
}

// DecodeBase64 decodes standard padded base64 (as encoding/json decodes
// []byte) into dst's spare capacity.
func DecodeBase64(dst, src []byte) ([]byte, error) {
	n := base64.StdEncoding.DecodedLen(len(src))
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	m, err := base64.StdEncoding.Decode(dst, src)
	if err != nil {
		return nil, err
	}
	return dst[:m], nil
}

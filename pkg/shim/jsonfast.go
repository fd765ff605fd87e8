package shim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// The sign request is the hot path: its body is parsed and its answer
// written here by hand, without reflection, into pooled buffers. Every
// other route uses encoding/json.

// signBody is a parsed sign request body: exactly one of message or
// digest, as the raw base64 text (still inside the request buffer).
type signBody struct {
	b64      []byte
	isDigest bool
}

// bodyError is a malformed request body; its message says what is wrong
// and what is wanted.
type bodyError struct{ msg string }

func (e *bodyError) Error() string { return e.msg }

func bodyErrorf(format string, a ...any) error { return &bodyError{fmt.Sprintf(format, a...)} }

// parseSignBody parses {"message": BASE64} or {"digest": BASE64} strictly:
// one JSON object, exactly one of the two fields, each a string, no other
// field, nothing after the object. It does not decode the base64.
func parseSignBody(b []byte) (signBody, error) {
	var out signBody
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
			out.b64, out.isDigest = val, idx == 1
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

// decodeBase64 decodes standard padded base64 (as encoding/json decodes
// []byte) into dst's spare capacity.
func decodeBase64(dst, src []byte) ([]byte, error) {
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

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, `\u00`...)
				dst = append(dst, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendBase64 appends src as a JSON string of standard base64.
func appendBase64(dst, src []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, src)
	return append(dst, '"')
}

// appendSignResponse writes the sign answer:
// {"key_id","algorithm","signature"} plus, for secp256k1, "recovery_id"
// and "signature_rsv".
func appendSignResponse(dst []byte, keyID, alg string, sig []byte, recID *uint8, rsv []byte) []byte {
	dst = append(dst, `{"key_id":`...)
	dst = appendJSONString(dst, keyID)
	dst = append(dst, `,"algorithm":`...)
	dst = appendJSONString(dst, alg)
	dst = append(dst, `,"signature":`...)
	dst = appendBase64(dst, sig)
	if recID != nil {
		dst = append(dst, `,"recovery_id":`...)
		dst = strconv.AppendUint(dst, uint64(*recID), 10)
	}
	if rsv != nil {
		dst = append(dst, `,"signature_rsv":`...)
		dst = appendBase64(dst, rsv)
	}
	return append(dst, "}\n"...)
}

// appendErrorBody writes {"error":{"code","message"}}.
func appendErrorBody(dst []byte, code, msg string) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = appendJSONString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = appendJSONString(dst, msg)
	return append(dst, "}}\n"...)
}

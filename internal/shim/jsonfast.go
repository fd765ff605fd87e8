package shim

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// The sign request is the hot path: its body is parsed by hand
// (internal/signreq, which signerd shares) and its answer written here by
// hand, without reflection, into pooled buffers. Every other route uses
// encoding/json.

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

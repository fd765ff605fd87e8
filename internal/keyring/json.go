package keyring

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// The keyring JSON is read by this small strict reader rather than
// encoding/json for two reasons: strings are unescaped into byte slices this
// package can wipe (encoding/json would make the PEM an immutable string, and
// json.Decoder copies its whole input), and it can reject duplicate fields,
// which encoding/json silently resolves. It reads only what keyrings need:
// objects, arrays, strings, non-negative integers and (for rates) decimals
// with a bounded fraction, and its errors give a byte offset and what was
// expected, never the bytes found.

type jsonReader struct {
	b   []byte
	pos int
}

// syntaxError is a JSON syntax problem at a byte offset.
type syntaxError struct {
	offset int
	msg    string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.offset, e.msg)
}

func (r *jsonReader) errorf(format string, args ...any) error {
	return &syntaxError{offset: r.pos, msg: fmt.Sprintf(format, args...)}
}

func (r *jsonReader) skipSpace() {
	for r.pos < len(r.b) {
		switch r.b[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it, or 0 at the end.
func (r *jsonReader) peek() byte {
	r.skipSpace()
	if r.pos >= len(r.b) {
		return 0
	}
	return r.b[r.pos]
}

func (r *jsonReader) expect(c byte, what string) error {
	if r.peek() != c {
		if r.pos >= len(r.b) {
			return r.errorf("unexpected end of input, want %s", what)
		}
		return r.errorf("want %s", what)
	}
	r.pos++
	return nil
}

// end checks that only white space is left.
func (r *jsonReader) end() error {
	if r.peek() != 0 || r.pos < len(r.b) {
		return r.errorf("unexpected data after the top-level object")
	}
	return nil
}

// kind names the JSON type of the next value for "want X, got Y" errors.
func (r *jsonReader) kind() string {
	switch c := r.peek(); {
	case c == 0:
		return "end of input"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == '-' || c >= '0' && c <= '9':
		return "number"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	default:
		return "invalid character"
	}
}

// object reads an object, calling field for each member with the reader
// positioned at the value; field must consume the value. Duplicate member
// names are an error.
func (r *jsonReader) object(field func(name string) error) error {
	if err := r.expect('{', "'{'"); err != nil {
		return err
	}
	seen := map[string]bool{}
	if r.peek() == '}' {
		r.pos++
		return nil
	}
	for {
		if r.peek() != '"' {
			return r.errorf("want a string for an object member name")
		}
		nameBytes, err := r.str()
		if err != nil {
			return err
		}
		name := string(nameBytes)
		if err := r.expect(':', "':' after an object member name"); err != nil {
			return err
		}
		if seen[name] {
			return &duplicateFieldError{name: name}
		}
		seen[name] = true
		if err := field(name); err != nil {
			return err
		}
		switch r.peek() {
		case ',':
			r.pos++
		case '}':
			r.pos++
			return nil
		default:
			return r.errorf("want ',' or '}' after an object member")
		}
	}
}

type duplicateFieldError struct{ name string }

func (e *duplicateFieldError) Error() string { return "field appears twice" }

// array reads an array, calling elem for each element.
func (r *jsonReader) array(elem func(i int) error) error {
	if err := r.expect('[', "'['"); err != nil {
		return err
	}
	if r.peek() == ']' {
		r.pos++
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return err
		}
		switch r.peek() {
		case ',':
			r.pos++
		case ']':
			r.pos++
			return nil
		default:
			return r.errorf("want ',' or ']' after an array element")
		}
	}
}

// str reads a string and returns its unescaped bytes in a fresh slice the
// caller owns (and may wipe). Invalid UTF-8, control characters and bad
// escapes are errors.
func (r *jsonReader) str() ([]byte, error) {
	if err := r.expect('"', "a string"); err != nil {
		return nil, err
	}
	start := r.pos
	// First pass: find the closing quote and the unescaped length, so the
	// output is allocated once and never regrown (a regrown slice would leave
	// an unwiped copy behind).
	n := 0
	for i := start; ; {
		if i >= len(r.b) {
			r.pos = i
			return nil, r.errorf("unterminated string")
		}
		c := r.b[i]
		switch {
		case c == '"':
			goto decode
		case c == '\\':
			if i+1 >= len(r.b) {
				r.pos = i
				return nil, r.errorf("unterminated string")
			}
			if r.b[i+1] == 'u' {
				n += utf8.UTFMax
				i += 6
			} else {
				n++
				i += 2
			}
		case c < 0x20:
			r.pos = i
			return nil, r.errorf("control character in string, want it escaped")
		default:
			n++
			i++
		}
	}
decode:
	out := make([]byte, 0, n)
	for r.pos < len(r.b) {
		c := r.b[r.pos]
		switch {
		case c == '"':
			r.pos++
			return out, nil
		case c == '\\':
			if r.pos+1 >= len(r.b) {
				clear(out[:cap(out)])
				return nil, r.errorf("unterminated string")
			}
			e := r.b[r.pos+1]
			var d byte
			switch e {
			case '"', '\\', '/':
				d = e
			case 'b':
				d = '\b'
			case 'f':
				d = '\f'
			case 'n':
				d = '\n'
			case 'r':
				d = '\r'
			case 't':
				d = '\t'
			case 'u':
				cp, width, err := r.unicodeEscape()
				if err != nil {
					clear(out[:cap(out)])
					return nil, err
				}
				out = utf8.AppendRune(out, cp)
				r.pos += width
				continue
			default:
				clear(out[:cap(out)])
				return nil, r.errorf("invalid escape in string")
			}
			out = append(out, d)
			r.pos += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			r.pos++
		default:
			cp, size := utf8.DecodeRune(r.b[r.pos:])
			if cp == utf8.RuneError && size <= 1 {
				clear(out[:cap(out)])
				return nil, r.errorf("invalid UTF-8 in string")
			}
			out = append(out, r.b[r.pos:r.pos+size]...)
			r.pos += size
		}
	}
	clear(out[:cap(out)])
	return nil, r.errorf("unterminated string")
}

// unicodeEscape decodes \uXXXX (and a following low surrogate) at r.pos and
// returns the code point and the number of input bytes it used.
func (r *jsonReader) unicodeEscape() (rune, int, error) {
	hex4 := func(at int) (rune, bool) {
		if at+6 > len(r.b) || r.b[at] != '\\' || r.b[at+1] != 'u' {
			return 0, false
		}
		var v rune
		for _, c := range r.b[at+2 : at+6] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= rune(c - '0')
			case c >= 'a' && c <= 'f':
				v |= rune(c - 'a' + 10)
			case c >= 'A' && c <= 'F':
				v |= rune(c - 'A' + 10)
			default:
				return 0, false
			}
		}
		return v, true
	}
	hi, ok := hex4(r.pos)
	if !ok {
		return 0, 0, r.errorf("invalid \\u escape in string, want four hex digits")
	}
	if hi < 0xd800 || hi > 0xdfff {
		return hi, 6, nil
	}
	lo, ok := hex4(r.pos + 6)
	if hi > 0xdbff || !ok || lo < 0xdc00 || lo > 0xdfff {
		return 0, 0, r.errorf("invalid UTF-16 surrogate in \\u escape")
	}
	return 0x10000 + (hi-0xd800)<<10 + (lo - 0xdc00), 12, nil
}

// uint reads a non-negative integer without fraction or exponent.
func (r *jsonReader) uint() (int, error) {
	r.skipSpace()
	start := r.pos
	v := 0
	for r.pos < len(r.b) && r.b[r.pos] >= '0' && r.b[r.pos] <= '9' {
		if v > 1<<20 {
			return 0, r.errorf("integer too large")
		}
		v = v*10 + int(r.b[r.pos]-'0')
		r.pos++
	}
	if r.pos == start {
		return 0, errors.New("want an integer, got " + r.kindAt(start))
	}
	if r.pos-start > 1 && r.b[start] == '0' {
		return 0, &syntaxError{offset: start, msg: "leading zero in number"}
	}
	if r.pos < len(r.b) {
		switch r.b[r.pos] {
		case '.', 'e', 'E':
			return 0, errors.New("want an integer without fraction or exponent")
		}
	}
	return v, nil
}

// uint64 reads an unsigned integer of up to 64 bits, without fraction,
// exponent or leading zero.
func (r *jsonReader) uint64() (uint64, error) {
	r.skipSpace()
	start := r.pos
	var v uint64
	for r.pos < len(r.b) && r.b[r.pos] >= '0' && r.b[r.pos] <= '9' {
		d := uint64(r.b[r.pos] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, r.errorf("integer larger than %d", uint64(math.MaxUint64))
		}
		v = v*10 + d
		r.pos++
	}
	if r.pos == start {
		return 0, errors.New("want an integer, got " + r.kindAt(start))
	}
	if r.pos-start > 1 && r.b[start] == '0' {
		return 0, &syntaxError{offset: start, msg: "leading zero in number"}
	}
	if r.pos < len(r.b) {
		switch r.b[r.pos] {
		case '.', 'e', 'E':
			return 0, errors.New("want an integer without fraction or exponent")
		}
	}
	return v, nil
}

func (r *jsonReader) kindAt(pos int) string {
	saved := r.pos
	r.pos = pos
	k := r.kind()
	r.pos = saved
	return k
}

// decimal reads a non-negative number with at most maxFrac digits after the
// decimal point and no exponent (10, 0.5, 2.125), the exact form rates are
// written in. It reads at most 7 digits before the point, so the value is
// below 10^7.
func (r *jsonReader) decimal(maxFrac int) (float64, error) {
	r.skipSpace()
	start := r.pos
	digits := func() int {
		n := 0
		for r.pos < len(r.b) && r.b[r.pos] >= '0' && r.b[r.pos] <= '9' {
			r.pos++
			n++
		}
		return n
	}
	if start < len(r.b) && r.b[start] == '-' {
		return 0, errors.New("negative, want a positive number")
	}
	intDigits := digits()
	if intDigits == 0 {
		return 0, errors.New("want a number, got " + r.kindAt(start))
	}
	if intDigits > 1 && r.b[start] == '0' {
		return 0, &syntaxError{offset: start, msg: "leading zero in number"}
	}
	if intDigits > 7 {
		return 0, &syntaxError{offset: start, msg: "number too large, want at most 7 digits before the decimal point"}
	}
	if r.pos < len(r.b) && r.b[r.pos] == '.' {
		r.pos++
		frac := digits()
		if frac == 0 {
			return 0, r.errorf("want digits after the decimal point")
		}
		if frac > maxFrac {
			return 0, fmt.Errorf("%d digits after the decimal point, want at most %d", frac, maxFrac)
		}
	}
	if r.pos < len(r.b) && (r.b[r.pos] == 'e' || r.b[r.pos] == 'E') {
		return 0, errors.New("want a decimal number without exponent")
	}
	v, err := strconv.ParseFloat(string(r.b[start:r.pos]), 64)
	if err != nil {
		// Unreachable: the syntax was checked above.
		return 0, &syntaxError{offset: start, msg: "malformed number"}
	}
	return v, nil
}

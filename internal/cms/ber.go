package cms

import "fmt"

// A small BER walker in the style of golang.org/x/crypto/cryptobyte, which
// (like encoding/asn1) reads DER only. It handles exactly what CMS from KMS
// and OpenSSL needs: low tag numbers (one identifier octet), definite lengths
// in short or long form (up to 4 length octets; BER allows non-minimal ones),
// and indefinite lengths on constructed elements, terminated by 00 00.
//
// Every length is checked against what is left before anything is sliced, and
// an indefinite-length element is walked to its end-of-contents marker when it
// is read, so truncation is found at the outermost element and recursion is
// bounded by maxDepth.

// Identifier octets used by CMS.
const (
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagNull        = 0x05
	tagOID         = 0x06
	tagSequence    = 0x30
	tagSet         = 0x31

	classContext = 0x80
	constructed  = 0x20
	tagContext0  = classContext               // [0] primitive
	tagContext0C = classContext | constructed // [0] constructed
	tagContext1C = classContext | constructed | 1
	tagContext2C = classContext | constructed | 2
)

// maxDepth bounds the nesting of indefinite-length elements. KMS's envelope
// nests them five deep; anything near the limit is an attack or garbage.
const maxDepth = 32

// berReader reads consecutive BER elements from s, which starts at byte
// offset off of the envelope.
type berReader struct {
	s     []byte
	off   int
	depth int
	// field names the element whose contents s is, for error messages.
	field string
}

func newReader(b []byte) *berReader { return &berReader{s: b, field: "envelope"} }

// element is one BER element. For an indefinite-length element, content holds
// its children without the closing end-of-contents marker.
type element struct {
	tag        byte
	off        int // offset of the identifier octet
	contentOff int
	content    []byte
	indefinite bool
	depth      int
}

// children returns a reader over e's contents.
func (e *element) children(field string) *berReader {
	return &berReader{s: e.content, off: e.contentOff, depth: e.depth + 1, field: field}
}

func (r *berReader) empty() bool { return len(r.s) == 0 }

// peekTag returns the identifier octet of the next element, or false if r is
// empty.
func (r *berReader) peekTag() (byte, bool) {
	if len(r.s) == 0 {
		return 0, false
	}
	return r.s[0], true
}

// next reads any element and advances past it.
func (r *berReader) next(field string) (*element, error) {
	if len(r.s) == 0 {
		return nil, errorf(ErrMalformed, field, r.off, "missing: %s has no more elements", r.field)
	}
	tag := r.s[0]
	if tag == 0 {
		return nil, errorf(ErrMalformed, field, r.off, "unexpected end-of-contents marker")
	}
	if tag&0x1f == 0x1f {
		return nil, errorf(ErrMalformed, field, r.off, "high tag number form (identifier 0x%02x) is not used by CMS", tag)
	}
	if len(r.s) < 2 {
		return nil, errorf(ErrTruncated, field, r.off, "identifier without a length")
	}
	e := &element{tag: tag, off: r.off, depth: r.depth}
	lb := r.s[1]
	hdr := 2
	switch {
	case lb < 0x80:
		e.content = r.s[2:]
		if int(lb) > len(e.content) {
			return nil, errorf(ErrTruncated, field, r.off, "length %d runs past the end of %s (%d bytes left)", lb, r.field, len(e.content))
		}
		e.content = e.content[:lb]
	case lb == 0x80:
		if tag&constructed == 0 {
			return nil, errorf(ErrMalformed, field, r.off, "indefinite length on a primitive element (identifier 0x%02x)", tag)
		}
		e.indefinite = true
	case lb == 0xff:
		return nil, errorf(ErrMalformed, field, r.off, "reserved length octet 0xff")
	default:
		n := int(lb & 0x7f)
		if n > 4 {
			return nil, errorf(ErrMalformed, field, r.off, "%d length octets, at most 4 supported", n)
		}
		if len(r.s) < 2+n {
			return nil, errorf(ErrTruncated, field, r.off, "length octets run past the end of %s", r.field)
		}
		var l uint64
		for _, c := range r.s[2 : 2+n] {
			l = l<<8 | uint64(c)
		}
		hdr += n
		left := len(r.s) - hdr
		if l > uint64(left) {
			return nil, errorf(ErrTruncated, field, r.off, "length %d runs past the end of %s (%d bytes left)", l, r.field, left)
		}
		e.content = r.s[hdr : hdr+int(l)]
	}
	e.contentOff = r.off + hdr
	total := hdr + len(e.content)
	if e.indefinite {
		if r.depth+1 > maxDepth {
			return nil, errorf(ErrTooDeep, field, r.off, "indefinite-length elements nested more than %d deep", maxDepth)
		}
		// The children are bounded by what bounds e: r's end.
		sub := &berReader{s: r.s[hdr:], off: e.contentOff, depth: r.depth + 1, field: r.field}
		for {
			if len(sub.s) < 2 {
				return nil, errorf(ErrTruncated, field, r.off, "indefinite-length element has no end-of-contents marker")
			}
			if sub.s[0] == 0 {
				if sub.s[1] != 0 {
					return nil, errorf(ErrMalformed, field, sub.off, "end-of-contents marker with non-zero length 0x%02x", sub.s[1])
				}
				break
			}
			if _, err := sub.next(field); err != nil {
				return nil, err
			}
		}
		n := sub.off - e.contentOff
		e.content = r.s[hdr : hdr+n]
		total = hdr + n + 2
	}
	r.s = r.s[total:]
	r.off += total
	return e, nil
}

// read reads the next element and checks its identifier octet.
func (r *berReader) read(tag byte, field string) (*element, error) {
	e, err := r.next(field)
	if err != nil {
		return nil, err
	}
	if e.tag != tag {
		return nil, errorf(ErrMalformed, field, e.off, "identifier 0x%02x, want 0x%02x (%s)", e.tag, tag, tagName(tag))
	}
	return e, nil
}

// readPrimitive reads a primitive element with the given tag and returns its
// contents and the element's offset. BER's constructed string forms are refused here: KMS never uses
// them outside encryptedContent.
func (r *berReader) readPrimitive(tag byte, field string) ([]byte, int, error) {
	e, err := r.read(tag, field)
	if err != nil {
		return nil, 0, err
	}
	return e.content, e.off, nil
}

// readSmallInt reads an INTEGER that must be a small non-negative value
// (a CMS version).
func (r *berReader) readSmallInt(field string) (int, int, error) {
	e, err := r.read(tagInteger, field)
	if err != nil {
		return 0, 0, err
	}
	if len(e.content) != 1 || e.content[0] >= 0x80 {
		return 0, 0, errorf(ErrMalformed, field, e.off, "want a one-octet non-negative INTEGER, got %d octets", len(e.content))
	}
	return int(e.content[0]), e.off, nil
}

// end checks that r has been read completely.
func (r *berReader) end() error {
	if len(r.s) != 0 {
		return errorf(ErrMalformed, r.field, r.off, "unexpected extra element (identifier 0x%02x)", r.s[0])
	}
	return nil
}

func tagName(tag byte) string {
	switch tag {
	case tagInteger:
		return "INTEGER"
	case tagOctetString:
		return "OCTET STRING"
	case tagNull:
		return "NULL"
	case tagOID:
		return "OBJECT IDENTIFIER"
	case tagSequence:
		return "SEQUENCE"
	case tagSet:
		return "SET"
	}
	if tag&0xc0 == classContext {
		s := fmt.Sprintf("[%d]", tag&0x1f)
		if tag&constructed != 0 {
			return s + " constructed"
		}
		return s + " primitive"
	}
	return "?"
}

// Encoding. Seal writes KMS's shape: definite lengths with the minimal
// encoding where KMS uses them, indefinite ones elsewhere.

func appendLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 1<<8:
		return append(b, 0x81, byte(n))
	case n < 1<<16:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n < 1<<24:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// appendDefinite appends a definite-length element whose contents are the
// concatenation of parts.
func appendDefinite(b []byte, tag byte, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b = append(b, tag)
	b = appendLength(b, n)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// appendIndefinite appends an indefinite-length constructed element.
func appendIndefinite(b []byte, tag byte, parts ...[]byte) []byte {
	b = append(b, tag|constructed, 0x80)
	for _, p := range parts {
		b = append(b, p...)
	}
	return append(b, 0, 0)
}

func definite(tag byte, parts ...[]byte) []byte { return appendDefinite(nil, tag, parts...) }

func indefinite(tag byte, parts ...[]byte) []byte { return appendIndefinite(nil, tag, parts...) }

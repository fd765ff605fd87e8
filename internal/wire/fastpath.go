package wire

import (
	"unicode/utf8"
)

// The signing exchange is the hot path: SignRequest, AuthSignRequest and
// SignResponse are
// encoded and decoded here by hand, without reflection, about ten times
// faster than the generic CBOR codec and with fewer allocations. So are
// Hello and HelloAck, for another reason: the generic codec's reflection
// doubles the stack of a server connection's reader (to 8 KiB) for the
// rest of its life, and every connection's fixed cost counts
// (docs/threat-model.md). The generic codec stays the definition:
//
//   - appendSignRequest, appendAuthSignRequest, appendSignResponse,
//     appendHello and appendHelloAck write exactly the bytes
//     encMode writes for the same value (core deterministic encoding:
//     keys in ascending order, shortest lengths, omitempty fields left
//     out, a nil byte string as an empty one);
//   - decodeSignRequest, decodeAuthSignRequest, decodeSignResponse,
//     decodeHello and decodeHelloAck accept exactly those
//     canonical bytes (definite lengths in shortest form, known keys in
//     ascending order, every field without omitempty present and no
//     omitempty field with its empty value, the expected type for each,
//     valid UTF-8, nothing after the map) and report ok = false for anything else, which the caller then
//     hands to the generic decoder: every error, and every unusual but
//     valid encoding, is handled exactly as before.
//
// TestFastPathMatchesGeneric and FuzzFastPathMatchesGeneric check both
// claims.

// appendHead appends a CBOR head (major type and argument) in shortest
// form.
func appendHead(dst []byte, major byte, n uint64) []byte {
	h := appendUint(dst, n)
	h[len(dst)] |= major << 5
	return h
}

func appendText(dst []byte, s string) []byte {
	return append(appendHead(dst, 3, uint64(len(s))), s...)
}

func appendBytes(dst []byte, b []byte) []byte {
	return append(appendHead(dst, 2, uint64(len(b))), b...)
}

func appendSignRequest(dst []byte, r *SignRequest) []byte {
	n := uint64(2)
	if r.IsDigest {
		n++
	}
	dst = appendHead(dst, 5, n)
	dst = appendText(append(dst, 0x01), r.KeyID)
	dst = appendBytes(append(dst, 0x02), r.Data)
	if r.IsDigest {
		dst = append(dst, 0x03, 0xf5)
	}
	return dst
}

func appendSignResponse(dst []byte, r *SignResponse) []byte {
	n := uint64(3)
	if r.RecoveryID != nil {
		n++
	}
	if len(r.SignatureRSV) > 0 {
		n++
	}
	dst = appendHead(dst, 5, n)
	dst = appendText(append(dst, 0x01), r.KeyID)
	dst = appendText(append(dst, 0x02), r.Algorithm)
	dst = appendBytes(append(dst, 0x03), r.Signature)
	if r.RecoveryID != nil {
		dst = appendHead(append(dst, 0x04), 0, uint64(*r.RecoveryID))
	}
	if len(r.SignatureRSV) > 0 {
		dst = appendBytes(append(dst, 0x05), r.SignatureRSV)
	}
	return dst
}

// fastReader reads the plain CBOR the fast decoders accept. Any failure
// just says "not plain": the generic decoder then has the final word.
type fastReader struct {
	p    []byte
	ok   bool
	seen uint8 // the keys read, as bits
}

// head reads a head of the given major type with a shortest-form
// argument.
func (r *fastReader) head(major byte) uint64 {
	if !r.ok || len(r.p) == 0 || r.p[0]>>5 != major {
		r.ok = false
		return 0
	}
	ai := r.p[0] & 0x1f
	if ai < 24 {
		r.p = r.p[1:]
		return uint64(ai)
	}
	var n int
	var min uint64
	switch ai {
	case 24:
		n, min = 1, 24
	case 25:
		n, min = 2, 1<<8
	case 26:
		n, min = 4, 1<<16
	case 27:
		n, min = 8, 1<<32
	default:
		r.ok = false
		return 0
	}
	if len(r.p) < 1+n {
		r.ok = false
		return 0
	}
	var v uint64
	for _, b := range r.p[1 : 1+n] {
		v = v<<8 | uint64(b)
	}
	if v < min {
		r.ok = false
		return 0
	}
	r.p = r.p[1+n:]
	return v
}

// payload reads a text (major 3) or byte (major 2) string's contents.
func (r *fastReader) payload(major byte) []byte {
	n := r.head(major)
	if !r.ok || n > uint64(len(r.p)) {
		r.ok = false
		return nil
	}
	b := r.p[:n:n]
	r.p = r.p[n:]
	return b
}

func (r *fastReader) text() string {
	b := r.payload(3)
	if !r.ok || !utf8.Valid(b) {
		r.ok = false
		return ""
	}
	return string(b)
}

// bytes returns a copy: the frame's buffer is reused for the next frame.
func (r *fastReader) bytes() []byte {
	b := r.payload(2)
	if !r.ok {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// mapHead reads a map head of at most max pairs and returns the count.
func (r *fastReader) mapHead(max uint64) int {
	n := r.head(5)
	if n > max {
		r.ok = false
	}
	return int(n)
}

// key reads a small unsigned key in (last, max], so keys come in the
// ascending order the canonical encoding has, each once.
func (r *fastReader) key(last *byte, max byte) byte {
	if !r.ok || len(r.p) == 0 || r.p[0] <= *last || r.p[0] > max {
		r.ok = false
		return 0
	}
	k := r.p[0]
	*last = k
	r.seen |= 1 << k
	r.p = r.p[1:]
	return k
}

func decodeSignRequest(body []byte) (*SignRequest, bool) {
	r := fastReader{p: body, ok: true}
	m := &SignRequest{}
	var last byte
	for n := r.mapHead(3); n > 0 && r.ok; n-- {
		switch r.key(&last, 3) {
		case 1:
			m.KeyID = r.text()
		case 2:
			m.Data = r.bytes()
		case 3:
			// Only true: the canonical encoding leaves false out.
			if len(r.p) == 0 || r.p[0] != 0xf5 {
				r.ok = false
				break
			}
			m.IsDigest = true
			r.p = r.p[1:]
		}
	}
	// Key id and data are always encoded (no omitempty).
	if !r.ok || len(r.p) != 0 || r.seen&0b110 != 0b110 {
		return nil, false
	}
	return m, true
}

func appendAuthSignRequest(dst []byte, r *AuthSignRequest) []byte {
	dst = appendHead(dst, 5, 4)
	dst = appendText(append(dst, 0x01), r.Method)
	dst = appendText(append(dst, 0x02), r.Path)
	dst = appendBytes(append(dst, 0x03), r.Body)
	return appendText(append(dst, 0x04), r.Authorization)
}

func decodeAuthSignRequest(body []byte) (*AuthSignRequest, bool) {
	r := fastReader{p: body, ok: true}
	m := &AuthSignRequest{}
	var last byte
	for n := r.mapHead(4); n > 0 && r.ok; n-- {
		switch r.key(&last, 4) {
		case 1:
			m.Method = r.text()
		case 2:
			m.Path = r.text()
		case 3:
			m.Body = r.bytes()
		case 4:
			m.Authorization = r.text()
		}
	}
	// Every field is always encoded (no omitempty).
	if !r.ok || len(r.p) != 0 || r.seen&0b11110 != 0b11110 {
		return nil, false
	}
	return m, true
}

func decodeSignResponse(body []byte) (*SignResponse, bool) {
	r := fastReader{p: body, ok: true}
	m := &SignResponse{}
	var last byte
	for n := r.mapHead(5); n > 0 && r.ok; n-- {
		switch r.key(&last, 5) {
		case 1:
			m.KeyID = r.text()
		case 2:
			m.Algorithm = r.text()
		case 3:
			m.Signature = r.bytes()
		case 4:
			v := r.head(0)
			if v > 0xff {
				r.ok = false
			}
			u := uint8(v)
			m.RecoveryID = &u
		case 5:
			// Never empty: the canonical encoding leaves it out.
			if m.SignatureRSV = r.bytes(); len(m.SignatureRSV) == 0 {
				r.ok = false
			}
		}
	}
	// Key id, algorithm and signature are always encoded.
	if !r.ok || len(r.p) != 0 || r.seen&0b1110 != 0b1110 {
		return nil, false
	}
	return m, true
}

func appendHello(dst []byte, h *Hello) []byte {
	n := uint64(1)
	if h.Software != "" {
		n++
	}
	dst = appendHead(dst, 5, n)
	dst = appendHead(append(dst, 0x01), 4, uint64(len(h.Versions)))
	for _, v := range h.Versions {
		dst = appendUint(dst, uint64(v))
	}
	if h.Software != "" {
		dst = appendText(append(dst, 0x02), h.Software)
	}
	return dst
}

func appendHelloAck(dst []byte, a *HelloAck) []byte {
	n := uint64(1)
	if a.Software != "" {
		n++
	}
	dst = appendHead(dst, 5, n)
	dst = appendUint(append(dst, 0x01), uint64(a.Version))
	if a.Software != "" {
		dst = appendText(append(dst, 0x02), a.Software)
	}
	return dst
}

// uint16 reads an unsigned integer that fits 16 bits.
func (r *fastReader) uint16() uint16 {
	v := r.head(0)
	if v > 0xffff {
		r.ok = false
	}
	return uint16(v)
}

func decodeHello(body []byte) (*Hello, bool) {
	r := fastReader{p: body, ok: true}
	m := &Hello{}
	var last byte
	for n := r.mapHead(2); n > 0 && r.ok; n-- {
		switch r.key(&last, 2) {
		case 1:
			cnt := r.head(4)
			// Each item takes a byte at least: a count beyond the bytes
			// left is malformed, and the generic decoder says so.
			if !r.ok || cnt > maxArrayElements || cnt > uint64(len(r.p)) {
				r.ok = false
				break
			}
			m.Versions = make([]uint16, cnt)
			for i := range m.Versions {
				m.Versions[i] = r.uint16()
			}
		case 2:
			// Never empty: the canonical encoding leaves it out.
			if m.Software = r.text(); m.Software == "" {
				r.ok = false
			}
		}
	}
	// Versions is always encoded.
	if !r.ok || len(r.p) != 0 || r.seen&0b10 == 0 {
		return nil, false
	}
	return m, true
}

func decodeHelloAck(body []byte) (*HelloAck, bool) {
	r := fastReader{p: body, ok: true}
	m := &HelloAck{}
	var last byte
	for n := r.mapHead(2); n > 0 && r.ok; n-- {
		switch r.key(&last, 2) {
		case 1:
			m.Version = r.uint16()
		case 2:
			if m.Software = r.text(); m.Software == "" {
				r.ok = false
			}
		}
	}
	if !r.ok || len(r.p) != 0 || r.seen&0b10 == 0 {
		return nil, false
	}
	return m, true
}

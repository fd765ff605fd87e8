package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// Decoding limits, beyond MaxFrameSize. They bound what one frame can make
// the decoder allocate.
const (
	maxNestedLevels  = 16
	maxArrayElements = 4096
	maxMapPairs      = 4096
)

var (
	encMode cbor.UserBufferEncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.EncOptions{
		Sort:          cbor.SortCoreDeterministic,
		ShortestFloat: cbor.ShortestFloat16,
		IndefLength:   cbor.IndefLengthForbidden,
		TagsMd:        cbor.TagsForbidden,
		Time:          cbor.TimeUnix,
		NilContainers: cbor.NilContainerAsEmpty,
	}.UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   maxNestedLevels,
		MaxArrayElements:  maxArrayElements,
		MaxMapPairs:       maxMapPairs,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		UTF8:              cbor.UTF8RejectInvalid,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		NaN:               cbor.NaNDecodeForbidden,
		Inf:               cbor.InfDecodeForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes m with request id id as a frame body (the CBOR item,
// without the length prefix): the array [type, id, body].
func Marshal(id uint64, m Message) ([]byte, error) {
	buf := getBuf()
	defer putBuf(buf)
	if err := appendFrame(buf, id, m); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()[HeaderSize:]), nil
}

// Unmarshal decodes a frame body (as ReadFrame returns it). It returns the
// request id whenever the envelope could be read, even with an error.
//
// Errors are *Error values: CodeUnsupported for a well-formed frame of a
// type this package does not know (the connection can go on), and
// CodeMalformedFrame for anything else. The message is nil on error.
func Unmarshal(body []byte) (id uint64, m Message, err error) {
	t, id, rest, err := parseEnvelope(body)
	if err != nil {
		return id, nil, err
	}
	switch t {
	case TypeSignRequest:
		if m, ok := decodeSignRequest(rest); ok {
			return id, m, nil
		}
	case TypeAuthSignRequest:
		if m, ok := decodeAuthSignRequest(rest); ok {
			return id, m, nil
		}
	case TypeSignResponse:
		if m, ok := decodeSignResponse(rest); ok {
			return id, m, nil
		}
	case TypeHello:
		if m, ok := decodeHello(rest); ok {
			return id, m, nil
		}
	case TypeHelloAck:
		if m, ok := decodeHelloAck(rest); ok {
			return id, m, nil
		}
	}
	mi, ok := messages[t]
	if !ok {
		if err := decMode.Wellformed(rest); err != nil {
			return id, nil, malformed("body of message type %d: %v", uint16(t), err)
		}
		return id, nil, &Error{Code: CodeUnsupported, Message: fmt.Sprintf("message type %d is not supported", uint16(t))}
	}
	m = mi.new()
	if err := decMode.Unmarshal(rest, m); err != nil {
		return id, nil, malformed("%s body: %v", mi.name, err)
	}
	return id, m, nil
}

// appendFrame appends the whole frame (length prefix included) for m to
// buf. On error buf is left as it was.
func appendFrame(buf *bytes.Buffer, id uint64, m Message) error {
	if m == nil {
		return fmt.Errorf("wire: encode: nil message")
	}
	start := buf.Len()
	var hdr [HeaderSize + 1 + 9 + 9]byte
	h := append(hdr[:HeaderSize], 0x83) // array of 3
	h = appendUint(h, uint64(m.MessageType()))
	h = appendUint(h, id)
	switch v := m.(type) {
	case *SignRequest:
		// Appended in the buffer's own spare capacity (no copy, no
		// allocation once the pooled buffer has grown).
		buf.Write(appendSignRequest(append(buf.AvailableBuffer(), h...), v))
	case *AuthSignRequest:
		buf.Write(appendAuthSignRequest(append(buf.AvailableBuffer(), h...), v))
	case *SignResponse:
		buf.Write(appendSignResponse(append(buf.AvailableBuffer(), h...), v))
	case *Hello:
		buf.Write(appendHello(append(buf.AvailableBuffer(), h...), v))
	case *HelloAck:
		buf.Write(appendHelloAck(append(buf.AvailableBuffer(), h...), v))
	default:
		buf.Write(h)
		if err := encMode.MarshalToBuffer(m, buf); err != nil {
			buf.Truncate(start)
			return fmt.Errorf("wire: encode %s: %w", m.MessageType(), err)
		}
	}
	n := buf.Len() - start - HeaderSize
	if n > MaxFrameSize {
		buf.Truncate(start)
		return fmt.Errorf("wire: encode %s: %w", m.MessageType(), frameTooLarge(uint64(n)))
	}
	binary.BigEndian.PutUint32(buf.Bytes()[start:], uint32(n))
	return nil
}

// parseEnvelope reads the [type, id, body] array header. The body must be a
// CBOR map; its well-formedness and its end at the frame's end are checked
// when it is decoded.
func parseEnvelope(p []byte) (Type, uint64, []byte, error) {
	if len(p) == 0 {
		return 0, 0, nil, malformed("zero-length frame")
	}
	if p[0] != 0x83 {
		return 0, 0, nil, malformed("envelope: want a CBOR array of 3 items [type, id, body], got initial byte 0x%02x", p[0])
	}
	t, rest, err := readUint(p[1:], "message type")
	if err != nil {
		return 0, 0, nil, err
	}
	if t > 0xffff {
		return 0, 0, nil, malformed("envelope: message type %d exceeds 65535", t)
	}
	id, rest, err := readUint(rest, "request id")
	if err != nil {
		return 0, 0, nil, err
	}
	if len(rest) == 0 {
		return 0, 0, nil, malformed("envelope: missing body")
	}
	if rest[0]>>5 != 5 {
		return Type(t), id, nil, malformed("envelope: body must be a CBOR map, got initial byte 0x%02x", rest[0])
	}
	return Type(t), id, rest, nil
}

// readUint reads a CBOR unsigned integer (major type 0) in its shortest
// form.
func readUint(p []byte, what string) (uint64, []byte, error) {
	if len(p) == 0 {
		return 0, nil, malformed("envelope: missing %s", what)
	}
	if p[0]>>5 != 0 {
		return 0, nil, malformed("envelope: %s must be an unsigned integer, got initial byte 0x%02x", what, p[0])
	}
	ai := p[0] & 0x1f
	var n int
	var min uint64
	switch {
	case ai < 24:
		return uint64(ai), p[1:], nil
	case ai == 24:
		n, min = 1, 24
	case ai == 25:
		n, min = 2, 1<<8
	case ai == 26:
		n, min = 4, 1<<16
	case ai == 27:
		n, min = 8, 1<<32
	default:
		return 0, nil, malformed("envelope: %s has invalid additional information %d", what, ai)
	}
	if len(p) < 1+n {
		return 0, nil, malformed("envelope: %s truncated", what)
	}
	var v uint64
	for _, b := range p[1 : 1+n] {
		v = v<<8 | uint64(b)
	}
	if v < min {
		return 0, nil, malformed("envelope: %s %d is not in shortest form", what, v)
	}
	return v, p[1+n:], nil
}

func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v < 24:
		return append(dst, byte(v))
	case v <= 0xff:
		return append(dst, 24, byte(v))
	case v <= 0xffff:
		return append(dst, 25, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return append(dst, 26, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 27), v)
}

// Frame buffers are pooled; buffers grown past maxPooledBuf (a large
// Provision or KeyList) are dropped rather than kept alive by the pool.
const maxPooledBuf = 64 << 10

var bufPool = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 512)) }}

func getBuf() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuf(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuf {
		return
	}
	b.Reset()
	bufPool.Put(b)
}

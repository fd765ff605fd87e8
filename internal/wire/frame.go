package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// MaxFrameSize is the largest frame body, in bytes, either side accepts or
// sends: 1 MiB. The 4-byte length prefix is not counted.
const MaxFrameSize = 1 << 20

// HeaderSize is the size of the big-endian length prefix before each frame.
const HeaderSize = 4

// MaxHelloSize is the largest first frame (the Hello) a Server reads: 4
// KiB. A Hello is a few dozen bytes; a larger length prefix on a
// connection's first frame is refused with ErrFrameTooLarge before anything
// more is read.
const MaxHelloSize = 4 << 10

// readGrowStep is how much ReadFrame grows a frame's buffer at a time, at
// least: a frame's buffer is at most this, or twice the bytes that have
// arrived, larger than what has arrived.
const readGrowStep = 32 << 10

// ReadFrame reads one frame from r and returns its body (the CBOR item,
// without the length prefix). The body is read into buf when its capacity
// suffices; else into a buffer grown as the bytes arrive, so that a length
// prefix alone never makes it allocate more than 32 KiB (the buffer stays
// within twice the bytes received, or 32 KiB). The body is never longer
// than MaxFrameSize.
//
// A length over MaxFrameSize is refused before anything is allocated, with
// an error matching ErrFrameTooLarge; a zero length gives an error matching
// ErrMalformedFrame. A stream that ends cleanly between frames gives io.EOF,
// one that ends inside a frame io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if err := checkLen(uint64(n)); err != nil {
		return nil, err
	}
	buf = buf[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, max(2*len(buf), readGrowStep)))
			copy(grown, buf)
			buf = grown
		}
		m, err := r.Read(buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

// WriteFrame writes body as one frame: its length, then body. A body that is
// empty or over MaxFrameSize is refused and nothing is written.
func WriteFrame(w io.Writer, body []byte) error {
	if err := checkLen(uint64(len(body))); err != nil {
		return err
	}
	var hdr [HeaderSize]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

func checkLen(n uint64) error {
	if n == 0 {
		return &Error{Code: CodeMalformedFrame, Message: "zero-length frame"}
	}
	if n > MaxFrameSize {
		return frameTooLarge(n)
	}
	return nil
}

func frameTooLarge(n uint64) error {
	return &Error{Code: CodeFrameTooLarge, Message: "frame of " + strconv.FormatUint(n, 10) +
		" bytes exceeds the limit of " + strconv.Itoa(MaxFrameSize)}
}

func helloTooLarge(n uint64) error {
	return &Error{Code: CodeFrameTooLarge, Message: "first frame (hello) of " + strconv.FormatUint(n, 10) +
		" bytes exceeds the limit of " + strconv.Itoa(MaxHelloSize)}
}

func malformed(format string, args ...any) *Error {
	return &Error{Code: CodeMalformedFrame, Message: fmt.Sprintf(format, args...)}
}

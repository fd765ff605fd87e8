package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goldenFrames returns the frames in testdata/*.golden, length prefix
// included.
func goldenFrames(f *testing.F) [][]byte {
	paths, err := filepath.Glob("testdata/*.golden")
	if err != nil || len(paths) == 0 {
		f.Fatalf("no golden frames: %v", err)
	}
	var frames [][]byte
	for _, p := range paths {
		h, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		b, err := hex.DecodeString(strings.TrimSpace(string(h)))
		if err != nil {
			f.Fatalf("%s: %v", p, err)
		}
		frames = append(frames, b)
	}
	return frames
}

// FuzzReadFrame checks ReadFrame against the framing rules: a frame read
// is re-written byte for byte by WriteFrame, a length over MaxFrameSize is
// always refused with ErrFrameTooLarge, zero with ErrMalformedFrame, and a
// short stream with io.EOF or io.ErrUnexpectedEOF. More seeds are in
// testdata/fuzz/FuzzReadFrame.
func FuzzReadFrame(f *testing.F) {
	for _, fr := range goldenFrames(f) {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := ReadFrame(bytes.NewReader(data), make([]byte, 0, 8))
		if len(data) < HeaderSize {
			want := io.ErrUnexpectedEOF
			if len(data) == 0 {
				want = io.EOF
			}
			if err != want {
				t.Fatalf("%d-byte input: got %v, want %v", len(data), err, want)
			}
			return
		}
		n := binary.BigEndian.Uint32(data)
		switch {
		case n > MaxFrameSize:
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("length %d: got %v, want ErrFrameTooLarge", n, err)
			}
		case n == 0:
			if !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("length 0: got %v, want ErrMalformedFrame", err)
			}
		case uint64(len(data)-HeaderSize) < uint64(n):
			if err != io.ErrUnexpectedEOF {
				t.Fatalf("length %d with %d bytes: got %v, want io.ErrUnexpectedEOF", n, len(data)-HeaderSize, err)
			}
		default:
			if err != nil {
				t.Fatalf("length %d: %v", n, err)
			}
			if len(body) != int(n) {
				t.Fatalf("body is %d bytes, length said %d", len(body), n)
			}
			var out bytes.Buffer
			if err := WriteFrame(&out, body); err != nil {
				t.Fatalf("WriteFrame of a frame just read: %v", err)
			}
			if !bytes.Equal(out.Bytes(), data[:HeaderSize+n]) {
				t.Fatalf("rewritten frame differs\n got %x\nwant %x", out.Bytes(), data[:HeaderSize+n])
			}
			return
		}
		if body != nil {
			t.Fatalf("body %x returned with error %v", body, err)
		}
	})
}

// FuzzUnmarshal checks message decoding: a failure returns a nil message
// and an *Error (malformed_frame or unsupported); a success re-encodes to a
// body that decodes to the same id and message and encodes identically
// again (the encoding is a fixed point).
func FuzzUnmarshal(f *testing.F) {
	for _, fr := range goldenFrames(f) {
		f.Add(fr[HeaderSize:])
	}
	f.Add([]byte{0x83, 0x19, 0x03, 0xe7, 0x05, 0xa0})
	f.Add([]byte{0x83, 0x16, 0x01, 0xa1, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		id, m, err := Unmarshal(body)
		if err != nil {
			if m != nil {
				t.Fatalf("message %#v returned with error %v", m, err)
			}
			var we *Error
			if !errors.As(err, &we) || (we.Code != CodeMalformedFrame && we.Code != CodeUnsupported) {
				t.Fatalf("error %v (%T) is not a malformed_frame or unsupported *Error", err, err)
			}
			return
		}
		enc, err := Marshal(id, m)
		if err != nil {
			if errors.Is(err, ErrFrameTooLarge) && len(body) > MaxFrameSize/2 {
				return
			}
			t.Fatalf("re-encoding %#v: %v", m, err)
		}
		id2, m2, err := Unmarshal(enc)
		if err != nil {
			t.Fatalf("decoding the re-encoding %x: %v", enc, err)
		}
		if id2 != id || m2.MessageType() != m.MessageType() {
			t.Fatalf("re-decoded id %d type %s, want %d %s", id2, m2.MessageType(), id, m.MessageType())
		}
		enc2, err := Marshal(id2, m2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixed point\n first %x\nsecond %x", enc, enc2)
		}
	})
}

// pipeConn is a net.Conn that reads from r, at most step bytes per Read,
// and ignores deadlines.
type pipeConn struct {
	net.Conn // nil: only the methods below are called
	r        io.Reader
	step     int
}

func (c *pipeConn) Read(p []byte) (int, error)      { return c.r.Read(p[:min(len(p), c.step)]) }
func (c *pipeConn) SetReadDeadline(time.Time) error { return nil }

// FuzzConnReader checks the server's frame reader against ReadFrame: over
// any stream, delivered in pieces of any size, it yields the same frames
// and then an error of the same class, and gives back every byte of frame
// memory it took.
func FuzzConnReader(f *testing.F) {
	frames := goldenFrames(f)
	for _, fr := range frames {
		f.Add(fr, uint16(1))
		f.Add(fr, uint16(4096))
	}
	f.Add(bytes.Join(frames, nil), uint16(7))
	var big bytes.Buffer
	WriteFrame(&big, bytes.Repeat([]byte{0xa5}, 3*connBufSize))
	WriteFrame(&big, []byte{1, 2, 3})
	WriteFrame(&big, bytes.Repeat([]byte{0x5a}, chunkSize+10))
	f.Add(big.Bytes(), uint16(1000))
	f.Add(big.Bytes()[:big.Len()-5], uint16(65535))
	f.Add([]byte{0, 0, 0, 0}, uint16(3))
	f.Add([]byte{0, 0x10, 0, 1, 0}, uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, step uint16) {
		budget := newFrameBudget(MinFrameMemory)
		cr := &connReader{
			nc:       &pipeConn{r: bytes.NewReader(data), step: int(step)%9000 + 1},
			buf:      make([]byte, connBufSize),
			budget:   budget,
			timeout:  time.Minute,
			ctx:      context.Background(),
			shutting: func() bool { return false },
		}
		ref := bytes.NewReader(data)
		for i := 0; ; i++ {
			want, werr := ReadFrame(ref, nil)
			got, gerr := cr.next(MaxFrameSize, frameTooLarge)
			if werr != nil || gerr != nil {
				if !sameErrorClass(werr, gerr) {
					t.Fatalf("frame %d: connReader error %v, ReadFrame error %v", i, gerr, werr)
				}
				if got.body != nil || got.res.bytes != 0 {
					t.Fatalf("frame %d: error %v with a frame", i, gerr)
				}
				break
			}
			if !bytes.Equal(got.body, want) {
				t.Fatalf("frame %d: connReader read %d bytes, ReadFrame %d", i, len(got.body), len(want))
			}
			if (got.res.bytes > 0) != (len(want) > connBufSize) {
				t.Fatalf("frame %d of %d bytes reserved %d bytes of frame memory", i, len(want), got.res.bytes)
			}
			cr.done(&got)
			budget.release(got.res)
		}
		if h, b := budget.held.Load(), budget.buffered.Load(); h != 0 || b != 0 {
			t.Fatalf("after the stream: %d bytes of frame memory held, %d counted as read", h, b)
		}
	})
}

// sameErrorClass reports whether two framing errors are the same case:
// both nil, the same *Error code, or the same I/O error.
func sameErrorClass(a, b error) bool {
	var ea, eb *Error
	if errors.As(a, &ea) || errors.As(b, &eb) {
		return errors.As(a, &ea) && errors.As(b, &eb) && ea.Code == eb.Code
	}
	return a == b
}

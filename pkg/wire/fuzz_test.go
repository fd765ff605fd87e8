package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// connBufSize is a server connection's own read buffer: read-ahead for
// the frames that fit in it (a sign request is 50 to 100 bytes, so one
// read takes in dozens), and the body of each such frame. It needs no
// share of the frame budget. MaxHelloSize fits in it, so nothing a peer
// sends before its Hello is accepted ever draws on the budget.
const connBufSize = 4 << 10

// connBufPool recycles connections' buffers: connections that come and go
// (refused Hellos, probes) would otherwise leave a buffer each for the
// collector, which signerd runs rarely (GOGC 1000).
var connBufPool = sync.Pool{New: func() any { return new([connBufSize]byte) }}

// errFrameTimeout ends a connection whose frame did not arrive in full
// within the Server's FrameTimeout of its length prefix: a stalled frame
// must not hold its share of the frame budget for ever.
type errFrameTimeout struct {
	n, got  int
	timeout time.Duration
}

func (e *errFrameTimeout) Error() string {
	return fmt.Sprintf("frame of %d bytes incomplete after %s (%d bytes received)", e.n, e.timeout, e.got)
}

// connReader reads a server connection's frames as their bytes arrive.
// Frames up to connBufSize are read into the connection's own buffer;
// larger ones reserve their size from the frame budget, wait for it if
// need be, and are read chunk by chunk, under a deadline of FrameTimeout
// from their length prefix.
type connReader struct {
	nc         net.Conn
	buf        []byte // connBufSize bytes; buf[r:w] is read and not yet used
	r, w       int
	budget     *frameBudget
	privileged bool
	timeout    time.Duration
	// ctx ends a wait for the budget: it is cancelled when the
	// connection is torn down or the server stops reading.
	ctx context.Context
	// shutting reports that the server is shutting down (see
	// Server.Shutdown's read deadline).
	shutting func() bool
	// onWait is called when a frame has to wait for the budget.
	onWait func()
}

// frame is one frame read. body is valid until the next call to next, or
// until done is called. res, the frame's share of the budget, is the
// caller's to release (once the request it carries has been answered).
type frame struct {
	body     []byte
	res      reservation
	chunks   [][]byte // the chunks the body was read into
	buffered int      // the body's bytes counted in budget.buffered
}

// next reads the next frame, whose length must not exceed limit. A
// length over limit gives a frame_too_large *Error (via tooLarge) before
// anything more is read; a zero length malformed_frame. io.EOF means the
// peer closed between frames.
func (cr *connReader) next(limit int, tooLarge func(uint64) error) (frame, error) {
	if err := cr.fill(HeaderSize); err != nil {
		if errors.Is(err, io.EOF) && cr.w > cr.r {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	n := int(binary.BigEndian.Uint32(cr.buf[cr.r:]))
	if n == 0 {
		return frame{}, malformed("zero-length frame")
	}
	if n > limit {
		return frame{}, tooLarge(uint64(n))
	}
	cr.r += HeaderSize
	if n <= len(cr.buf) {
		if err := cr.fill(n); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return frame{}, err
		}
		body := cr.buf[cr.r : cr.r+n : cr.r+n]
		cr.r += n
		return frame{body: body}, nil
	}
	return cr.large(n)
}

// fill makes sure buf[r:] holds at least n bytes (n <= len(buf)), reading
// as much as the connection has ready.
func (cr *connReader) fill(n int) error {
	if cr.r == cr.w {
		cr.r, cr.w = 0, 0
	}
	if cr.w-cr.r >= n {
		return nil
	}
	if len(cr.buf)-cr.r < n {
		cr.w = copy(cr.buf, cr.buf[cr.r:cr.w])
		cr.r = 0
	}
	for cr.w-cr.r < n {
		m, err := cr.nc.Read(cr.buf[cr.w:])
		cr.w += m
		if err != nil && cr.w-cr.r < n {
			return err
		}
	}
	return nil
}

// large reads a frame of n > len(buf) bytes: it reserves the frame's
// share of the budget, then reads the body into chunks as it arrives, all
// within the frame timeout.
func (cr *connReader) large(n int) (f frame, err error) {
	deadline := time.Now().Add(cr.timeout)
	// Set the deadline, then look at shutting: Shutdown sets the flag
	// before its own read deadline, so either we see the flag or its
	// deadline replaces ours.
	cr.nc.SetReadDeadline(deadline)
	if cr.shutting() {
		return frame{}, os.ErrDeadlineExceeded
	}
	got := 0
	defer func() {
		if err == nil {
			f.buffered = got
			cr.nc.SetReadDeadline(time.Time{})
			if cr.shutting() {
				cr.nc.SetReadDeadline(time.Unix(1, 0))
			}
			return
		}
		cr.budget.putChunks(f.chunks)
		cr.budget.release(f.res)
		cr.budget.buffered.Add(int64(-got))
		f = frame{}
		if errors.Is(err, os.ErrDeadlineExceeded) && !cr.shutting() {
			cr.budget.timeouts.Add(1)
			err = &errFrameTimeout{n: n, got: got, timeout: cr.timeout}
		} else if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
	}()

	ctx, cancel := context.WithDeadline(cr.ctx, deadline)
	var waited bool
	f.res, waited, err = cr.budget.acquire(ctx, n, cr.privileged)
	cancel()
	if waited && cr.onWait != nil {
		cr.onWait()
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || cr.shutting() {
			// Out of time, or Shutdown stopped the reading: the same as a
			// read deadline (see the deferred function).
			return f, os.ErrDeadlineExceeded
		}
		return f, fmt.Errorf("wire: waiting for frame memory: %w", err)
	}

	f.chunks = make([][]byte, 0, (n+chunkSize-1)/chunkSize)
	var c []byte // the chunk being filled: c[len(c):cap(c)] is free
	for got < n {
		if len(c) == cap(c) {
			c = cr.budget.chunk()[:0]
			f.chunks = append(f.chunks, c)
		}
		want := min(n-got, cap(c)-len(c))
		var m int
		if cr.r < cr.w {
			// Bytes of this frame already read ahead into buf.
			m = copy(c[len(c):len(c)+want], cr.buf[cr.r:cr.w])
			cr.r += m
		} else {
			m, err = cr.nc.Read(c[len(c) : len(c)+want])
		}
		c = c[:len(c)+m]
		f.chunks[len(f.chunks)-1] = c
		got += m
		cr.budget.buffered.Add(int64(m))
		if err != nil && got < n {
			return f, err
		}
	}
	err = nil
	if len(f.chunks) == 1 {
		f.body = f.chunks[0][:n]
		return f, nil
	}
	// The decoders want one contiguous body: the bytes have all arrived,
	// so this allocation is paid for by the peer's bytes, not its prefix.
	f.body = make([]byte, 0, n)
	for _, c := range f.chunks {
		f.body = append(f.body, c...)
	}
	cr.budget.putChunks(f.chunks)
	f.chunks = nil
	return f, nil
}

// done returns the frame's chunks, and clears a body assembled from them;
// the frame's body must not be used after. The reservation stays.
func (cr *connReader) done(f *frame) {
	cr.budget.buffered.Add(int64(-f.buffered))
	f.buffered = 0
	if f.chunks != nil {
		cr.budget.putChunks(f.chunks)
		f.chunks = nil
	} else if f.res.bytes > 0 {
		clear(f.body)
	}
	f.body = nil
}

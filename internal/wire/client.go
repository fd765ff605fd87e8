package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is the client side of one connection: many goroutines may Call on
// it at once, and each answer finds its caller by request id, in whatever
// order the server sends them. A Conn does not reconnect: once its
// connection is gone, every Call fails with an error wrapping
// ErrConnClosed, and the owner dials a new one.
type Conn struct {
	nc       net.Conn
	version  uint16
	software string

	nextID atomic.Uint64
	out    chan *bytes.Buffer

	mu         sync.Mutex
	pending    map[uint64]*call
	err        error         // why the connection is gone; set once, under mu
	done       chan struct{} // closed when err is set
	readerDone chan struct{}
	writerDone chan struct{}
}

type call struct {
	ready chan struct{} // capacity 1: the reader never blocks on it
	resp  Message
	err   error
}

var callPool = sync.Pool{New: func() any { return &call{ready: make(chan struct{}, 1)} }}

// refusalReadTimeout bounds the look for a server's error frame after the
// Hello could not be written.
const refusalReadTimeout = 100 * time.Millisecond

// DialFunc opens a connection, e.g. a closure over transport.Dial.
type DialFunc func(ctx context.Context) (net.Conn, error)

// Dial opens a connection with dial and performs the handshake on it. ctx
// bounds the dial and the handshake only, not the Conn's later life.
func Dial(ctx context.Context, dial DialFunc) (*Conn, error) {
	nc, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("wire: dial: %w", err)
	}
	c, err := NewConn(ctx, nc)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// NewConn performs the handshake on nc and returns a Conn that owns it. ctx
// bounds the handshake only. On error nc is closed. A server that speaks
// none of this client's versions gives an error matching
// ErrVersionMismatch.
func NewConn(ctx context.Context, nc net.Conn) (*Conn, error) {
	c := &Conn{
		nc:         nc,
		out:        make(chan *bytes.Buffer, 256),
		pending:    make(map[uint64]*call),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	br := bufio.NewReaderSize(nc, readBufSize)
	if err := c.handshake(ctx, br); err != nil {
		nc.Close()
		return nil, err
	}
	go c.readLoop(br)
	go func() {
		if err := writeLoop(nc, c.out, c.done, c.callsWaiting); err != nil {
			c.fail(fmt.Errorf("%w: write: %v", ErrConnClosed, err))
		}
		close(c.writerDone)
	}()
	return c, nil
}

func (c *Conn) handshake(ctx context.Context, br *bufio.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// net.Conn takes no context: bound the exchange by ctx's deadline, and
	// by closing the conn's deadline early if ctx is cancelled.
	if d, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	buf := getBuf()
	defer putBuf(buf)
	if err := appendFrame(buf, 0, &Hello{Versions: supportedVersions}); err != nil {
		return err
	}
	ctxErr := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("wire: handshake: %w", ctx.Err())
		}
		// The conn's deadline can fire a moment before ctx's own timer.
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			return fmt.Errorf("wire: handshake: %w", context.DeadlineExceeded)
		}
		return fmt.Errorf("wire: handshake: %w", err)
	}
	if _, err := c.nc.Write(buf.Bytes()); err != nil {
		// A server that refuses the connection (too_many_connections)
		// writes why and closes at once, which can fail our write: read
		// what it sent, briefly.
		c.nc.SetReadDeadline(time.Now().Add(refusalReadTimeout))
		if body, rerr := ReadFrame(br, nil); rerr == nil {
			if _, m, _ := Unmarshal(body); m != nil {
				if e, ok := m.(*Error); ok {
					return fmt.Errorf("wire: handshake refused: %w", e)
				}
			}
		}
		return ctxErr(err)
	}
	body, err := ReadFrame(br, nil)
	if err != nil {
		return ctxErr(err)
	}
	_, m, err := Unmarshal(body)
	if err != nil {
		return fmt.Errorf("wire: handshake: server sent: %w", err)
	}
	switch m := m.(type) {
	case *HelloAck:
		found := false
		for _, v := range supportedVersions {
			found = found || v == m.Version
		}
		if !found {
			return fmt.Errorf("wire: handshake: %w", &Error{Code: CodeVersionMismatch,
				Message: fmt.Sprintf("server chose version %d, client offered %v", m.Version, supportedVersions)})
		}
		c.version, c.software = m.Version, m.Software
	case *Error:
		return fmt.Errorf("wire: handshake refused: %w", m)
	default:
		return fmt.Errorf("wire: handshake: server answered %s, want hello_ack", m.MessageType())
	}
	if !stop() {
		// ctx ended just now and its deadline may have been set.
		return fmt.Errorf("wire: handshake: %w", ctx.Err())
	}
	c.nc.SetDeadline(time.Time{})
	return nil
}

// callsWaiting reports whether more calls are waiting for answers than the
// writer has just written: other callers are likely about to send.
func (c *Conn) callsWaiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 1
}

// Version returns the protocol version agreed in the handshake.
func (c *Conn) Version() uint16 { return c.version }

// ServerSoftware returns the server's Software string from its HelloAck.
func (c *Conn) ServerSoftware() string { return c.software }

// Done is closed when the connection is gone; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is usable, then an error wrapping
// ErrConnClosed.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection. Calls in flight fail with ErrConnClosed.
func (c *Conn) Close() error {
	c.fail(ErrConnClosed)
	<-c.readerDone
	<-c.writerDone
	return nil
}

// fail records why the connection is gone (the first reason wins), closes
// it, and fails every call in flight.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = nil
	close(c.done)
	c.mu.Unlock()
	c.nc.Close()
	for _, cl := range pending {
		cl.err = err
		cl.ready <- struct{}{}
	}
}

// Call sends req and waits for its answer. An error frame in answer is
// returned as an *Error (test it with errors.Is against the Err*
// sentinels). If ctx ends first, Call returns ctx.Err() and the late answer
// is dropped when it comes. If the connection is lost, Call returns an error
// wrapping ErrConnClosed.
func (c *Conn) Call(ctx context.Context, req Message) (Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id := c.nextID.Add(1)
	buf := getBuf()
	if err := appendFrame(buf, id, req); err != nil {
		putBuf(buf)
		return nil, err
	}
	cl := callPool.Get().(*call)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		putBuf(buf)
		callPool.Put(cl)
		return nil, err
	}
	c.pending[id] = cl
	c.mu.Unlock()

	select {
	case c.out <- buf:
	case <-ctx.Done():
		putBuf(buf)
		c.abandon(id, cl)
		return nil, ctx.Err()
	case <-c.done:
		putBuf(buf)
		// fail has taken cl from pending and will signal it.
		<-cl.ready
		return c.finish(cl)
	}

	select {
	case <-cl.ready:
		return c.finish(cl)
	case <-ctx.Done():
		c.abandon(id, cl)
		return nil, ctx.Err()
	}
}

// finish takes the result out of a signalled call and recycles it.
func (c *Conn) finish(cl *call) (Message, error) {
	resp, err := cl.resp, cl.err
	cl.resp, cl.err = nil, nil
	callPool.Put(cl)
	if e, ok := resp.(*Error); ok && err == nil {
		return nil, e
	}
	return resp, err
}

// abandon forgets a call whose caller has stopped waiting. If the answer
// (or the connection's failure) is already being delivered, it waits for
// that delivery so the call can be recycled safely.
func (c *Conn) abandon(id uint64, cl *call) {
	c.mu.Lock()
	_, waiting := c.pending[id]
	if waiting {
		delete(c.pending, id)
	}
	c.mu.Unlock()
	if !waiting {
		<-cl.ready
	}
	cl.resp, cl.err = nil, nil
	callPool.Put(cl)
}

func (c *Conn) readLoop(br *bufio.Reader) {
	defer close(c.readerDone)
	var buf []byte
	for {
		body, err := ReadFrame(br, buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				c.fail(fmt.Errorf("%w: server hung up", ErrConnClosed))
			} else {
				c.fail(fmt.Errorf("%w: read: %w", ErrConnClosed, err))
			}
			return
		}
		if cap(body) <= maxKeptReadBuf {
			buf = body[:0]
		} else {
			buf = nil
		}
		id, resp, err := Unmarshal(body)
		var respErr error
		if err != nil {
			we := err.(*Error)
			if we.Code != CodeUnsupported {
				c.fail(fmt.Errorf("%w: bad frame from server: %w", ErrConnClosed, we))
				return
			}
			// A newer server's message type: fail that call only.
			respErr = fmt.Errorf("wire: unsupported answer from server: %w", we)
		}
		if id == 0 {
			// Connection-level error frame; the server closes next.
			if e, ok := resp.(*Error); ok {
				c.fail(fmt.Errorf("%w: server reported %w", ErrConnClosed, e))
				return
			}
			continue
		}
		c.mu.Lock()
		cl, ok := c.pending[id]
		if ok {
			delete(c.pending, id)
		}
		c.mu.Unlock()
		if !ok {
			continue // its caller gave up
		}
		cl.resp, cl.err = resp, respErr
		cl.ready <- struct{}{}
		if e, ok := resp.(*Error); ok && e.Code.ClosesConn() {
			c.fail(fmt.Errorf("%w: server reported %w", ErrConnClosed, e))
			return
		}
	}
}

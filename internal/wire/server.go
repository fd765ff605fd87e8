package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// Handler serves requests. ServeWire gets a decoded request (a
// *StatusRequest, *ProvisionRequest, *ListKeysRequest, *SignRequest or
// *AttestRequest) and returns its response, or an error.
//
// An error that is (or wraps) an *Error is sent as that error frame; any
// other error is logged and sent as CodeInternal with a generic message, so
// map errors to codes before returning them. ServeWire is called
// concurrently, from several connections and several times per connection.
// ctx is cancelled when the connection is torn down, and carries the
// connection's Peer (PeerFromContext), so that a handler can refuse a
// request to an unprivileged peer (CodeForbidden).
type Handler interface {
	ServeWire(ctx context.Context, req Message) (Message, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req Message) (Message, error)

// ServeWire calls f(ctx, req).
func (f HandlerFunc) ServeWire(ctx context.Context, req Message) (Message, error) {
	return f(ctx, req)
}

// ErrServerClosed is returned by Serve and ServeConn after Shutdown or Close.
var ErrServerClosed = errors.New("wire: server closed")

// Defaults for the Server's zero fields.
const (
	DefaultMaxInFlight      = 64
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxConns         = 64
	DefaultFrameTimeout     = 10 * time.Second
)

// Server serves the wire protocol on any number of listeners and
// connections. Set its fields before the first Serve; don't change them
// after.
//
// Per connection, one goroutine reads and decodes frames, and a pool of at
// most MaxInFlight workers (started on demand) runs the Handler on them in
// the order they were read. The workers write the responses themselves,
// combined into as few writes as WriteDelay allows. Responses go out as
// they are ready, not in request order.
//
// # Memory
//
// What a peer can make the server hold is bounded before it authenticates
// anything (docs/threat-model.md): frames are read as their bytes arrive,
// never into a buffer sized from the length prefix alone; the first frame
// (the Hello) may not exceed MaxHelloSize; each connection has a small
// buffer of its own for the frames that fit in it (every sign request), and
// larger frames draw on FrameMemory, shared by all connections, waiting for
// it when it is in use (back-pressure) and given FrameTimeout to arrive in
// full; and Serve accepts at most MaxConns connections from unprivileged
// peers at once. Connections from privileged peers (Privileged) are never
// refused, and a part of FrameMemory is theirs alone.
type Server struct {
	// Handler serves the requests. Required.
	Handler Handler
	// Log receives connection-level events and unmapped handler errors.
	// nil discards them.
	Log *slog.Logger
	// MaxInFlight bounds the requests a connection runs at once; further
	// frames wait unread. 0 means DefaultMaxInFlight.
	MaxInFlight int
	// HandshakeTimeout bounds the wait for a connection's Hello. 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Software names the server's build in HelloAck. Optional.
	Software string
	// WriteDelay bounds how long a finished answer may wait for others to
	// share its write while requests are still running on its connection.
	// 0 means DefaultWriteDelay; negative, no wait (a write per answer
	// unless answers finish during a write).
	WriteDelay time.Duration
	// MaxConns bounds the connections from unprivileged peers that Serve
	// serves at once; a further one is answered a too_many_connections
	// error and closed. Privileged peers are not counted, and never
	// refused. 0 means DefaultMaxConns; negative, no limit.
	MaxConns int
	// FrameMemory bounds the bytes held by the frames in flight on all
	// connections together: frames being read, and requests decoded from
	// them and not yet answered. Frames that fit in a connection's own
	// 4 KiB buffer (every sign request) do not count. 0 means
	// DefaultFrameMemory; less than MinFrameMemory means MinFrameMemory.
	FrameMemory int64
	// FrameTimeout bounds the time from a frame's length prefix to its
	// last byte, for frames that draw on FrameMemory (waiting for it
	// included); the connection is closed when it runs out. 0 means
	// DefaultFrameTimeout.
	FrameTimeout time.Duration
	// Privileged reports whether a peer's address is privileged. nil means
	// transport.PrivilegedPeer: vsock or TCP from a source port below 1024,
	// or a unix socket.
	Privileged func(remote net.Addr) bool

	shutting  atomic.Bool
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	connWG    sync.WaitGroup // goroutines Serve started, one per connection

	initOnce     sync.Once
	budget       *frameBudget
	stopReading  context.Context // cancelled by Shutdown and Close
	stopReadingF context.CancelFunc
	unprivileged atomic.Int64  // unprivileged connections Serve is serving
	live         atomic.Int64  // connections being served
	refused      atomic.Uint64 // connections refused by MaxConns
	badPeers     atomic.Uint64 // unprivileged connections ended by bad framing
	refusal      []byte        // the too_many_connections frame, encoded once
	pressure     pressureLog
}

type job struct {
	id  uint64
	req Message
	res reservation // the frame's share of FrameMemory, held until answered
}

type serverConn struct {
	s      *Server
	nc     net.Conn
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the connection is fully torn down

	privileged bool
	cr         *connReader
	rctx       context.Context // ends budget waits: connection torn down or server stopping
	rcancel    context.CancelFunc

	// Requests run in the order they were read: the reader puts each in
	// queue and hands a token on wake to an idle worker (or starts one),
	// and whichever worker runs first takes the oldest request. Handing
	// the request itself to a worker would run them in the order the Go
	// scheduler resumes the workers, which on one CPU is partly last in,
	// first out, and a request overtaken that way waits a round longer.
	queue chan job      // requests read and not yet started; FIFO
	wake  chan struct{} // one token per queued request no new worker takes
	slots chan struct{} // one per request in flight, at most MaxInFlight
	idle  atomic.Int32  // workers waiting for a token, less tokens sent
	busy  atomic.Int32  // requests dispatched and not yet answered
	wg    sync.WaitGroup
	w     *frameWriter
}

func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Server) writeDelay() time.Duration {
	switch {
	case s.WriteDelay > 0:
		return s.WriteDelay
	case s.WriteDelay < 0:
		return 0
	}
	return DefaultWriteDelay
}

func (s *Server) maxInFlight() int {
	if s.MaxInFlight > 0 {
		return s.MaxInFlight
	}
	return DefaultMaxInFlight
}

func (s *Server) maxConns() int64 {
	switch {
	case s.MaxConns > 0:
		return int64(s.MaxConns)
	case s.MaxConns < 0:
		return math.MaxInt64
	}
	return DefaultMaxConns
}

func (s *Server) frameTimeout() time.Duration {
	if s.FrameTimeout > 0 {
		return s.FrameTimeout
	}
	return DefaultFrameTimeout
}

func (s *Server) privileged(a net.Addr) bool {
	if s.Privileged != nil {
		return s.Privileged(a)
	}
	return transport.PrivilegedPeer(a)
}

// init sets up what the fields configure, once.
func (s *Server) init() {
	s.initOnce.Do(func() {
		mem := s.FrameMemory
		if mem == 0 {
			mem = DefaultFrameMemory
		}
		s.budget = newFrameBudget(mem)
		s.stopReading, s.stopReadingF = context.WithCancel(context.Background())
		s.pressure.s = s
		refusal, err := Marshal(0, &Error{Code: CodeTooManyConnections, Message: fmt.Sprintf(
			"the enclave serves at most %d connections from unprivileged source ports and all are in use; "+
				"retry later, or connect from a port below 1024 (root or CAP_NET_BIND_SERVICE), as the host shim does", s.maxConns())})
		if err != nil {
			panic(err) // a constant message
		}
		s.refusal = binary.BigEndian.AppendUint32(nil, uint32(len(refusal)))
		s.refusal = append(s.refusal, refusal...)
	})
}

// ServerStats are a Server's counters: gauges of the moment, and totals
// since it started.
type ServerStats struct {
	Conns             int    // connections being served
	UnprivilegedConns int    // of which from unprivileged peers (Serve's only)
	MaxConns          int64  // the limit on UnprivilegedConns
	FrameMemory       int64  // the budget of frame memory
	FrameMemoryHeld   int64  // the part of it reserved now
	FrameBytesRead    int64  // bytes of frames drawing on it, read and not yet decoded
	RefusedConns      uint64 // connections refused by MaxConns
	FrameMemoryWaits  uint64 // frames that waited for frame memory
	FrameTimeouts     uint64 // frames (or waits for memory) that ran out of FrameTimeout
	BadPeerConns      uint64 // unprivileged connections closed for bad framing or a failed handshake
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	s.init()
	return ServerStats{
		Conns:             int(s.live.Load()),
		UnprivilegedConns: int(s.unprivileged.Load()),
		MaxConns:          s.maxConns(),
		FrameMemory:       s.budget.total,
		FrameMemoryHeld:   s.budget.held.Load(),
		FrameBytesRead:    s.budget.buffered.Load(),
		RefusedConns:      s.refused.Load(),
		FrameMemoryWaits:  s.budget.waits.Load(),
		FrameTimeouts:     s.budget.timeouts.Load(),
		BadPeerConns:      s.badPeers.Load(),
	}
}

// Serve accepts connections on ln and serves each in its own goroutines. It
// returns ErrServerClosed after Shutdown or Close, else the error that
// stopped Accept. ln is closed when Serve returns.
func (s *Server) Serve(ln net.Listener) error {
	if s.Handler == nil {
		return errors.New("wire: Server.Handler is nil")
	}
	s.init()
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("wire: accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("wire: accept: %w", err)
		}
		delay = 0
		priv := s.privileged(nc.RemoteAddr())
		if !priv && s.unprivileged.Add(1) > s.maxConns() {
			s.unprivileged.Add(-1)
			s.refuse(nc)
			continue
		}
		s.connWG.Add(1)
		go func() {
			defer s.connWG.Done()
			if !priv {
				defer s.unprivileged.Add(-1)
			}
			if err := s.serveConn(nc, priv); err != nil && !errors.Is(err, ErrServerClosed) {
				s.logger().Debug("wire: connection ended", "remote", addrString(nc.RemoteAddr()), "privileged", priv, "err", err)
			}
		}()
	}
}

// refuseWriteTimeout bounds the write of a refusal. It never waits in
// practice: a new connection's send buffer is empty.
const refuseWriteTimeout = 100 * time.Millisecond

// refuse answers a connection over MaxConns with a too_many_connections
// error frame and closes it, from the accept loop: no goroutine, no buffer
// beyond the frame's. Closing may reset the connection if the peer's Hello
// has arrived unread, but a peer still reads what arrived before the reset
// (on Linux; and wire.Conn looks for it when its Hello cannot be sent).
func (s *Server) refuse(nc net.Conn) {
	s.refused.Add(1)
	s.pressure.note()
	nc.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	nc.Write(s.refusal)
	nc.Close()
}

// ServeConn serves one connection until it ends, then closes it. It
// returns nil when the peer hung up or the server shut down gracefully,
// else what ended the connection (a failed handshake, a malformed frame, a
// read or write error). MaxConns does not apply to it.
func (s *Server) ServeConn(nc net.Conn) error {
	if s.Handler == nil {
		nc.Close()
		return errors.New("wire: Server.Handler is nil")
	}
	s.init()
	return s.serveConn(nc, s.privileged(nc.RemoteAddr()))
}

func (s *Server) serveConn(nc net.Conn, privileged bool) error {
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), peerKey{}, Peer{Addr: nc.RemoteAddr(), Privileged: privileged}))
	rctx, rcancel := context.WithCancel(s.stopReading)
	sc := &serverConn{
		s:          s,
		nc:         nc,
		log:        s.logger().With("remote", addrString(nc.RemoteAddr())),
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		privileged: privileged,
		rctx:       rctx,
		rcancel:    rcancel,
	}
	s.live.Add(1)
	defer s.live.Add(-1)
	defer close(sc.done)
	defer cancel()
	defer rcancel()
	defer nc.Close()
	if !s.track(sc, true) {
		return ErrServerClosed
	}
	defer s.track(sc, false)

	buf := connBufPool.Get().(*[connBufSize]byte)
	defer func() {
		clear(buf[:]) // it may have carried credentials
		connBufPool.Put(buf)
	}()
	sc.cr = &connReader{
		nc:         nc,
		buf:        buf[:],
		budget:     s.budget,
		privileged: privileged,
		timeout:    s.frameTimeout(),
		ctx:        rctx,
		shutting:   s.shutting.Load,
		onWait:     s.pressure.note,
	}
	if err := sc.handshake(); err != nil {
		if s.shutting.Load() {
			return ErrServerClosed
		}
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) {
			level = slog.LevelDebug // connected and left, e.g. a probe
		}
		sc.badPeer(level, "wire: handshake failed", "err", err)
		return err
	}

	sc.w = newFrameWriter(nc, s.writeDelay(), func() bool { return sc.busy.Load() > 0 }, func(error) {
		// Nobody will read what we write: stop reading and running too.
		cancel()
		rcancel()
		nc.Close()
	})

	err := sc.readLoop()
	if err != nil {
		// Lost framing, or lost the peer: in-flight answers have nowhere
		// useful to go, so cancel them.
		cancel()
	}
	if sc.wake != nil {
		close(sc.wake)
	}
	sc.wg.Wait()
	werr := sc.w.close()
	if err == nil && werr != nil {
		err = fmt.Errorf("wire: write: %w", werr)
	}
	return err
}

// badPeer logs a connection-level failure: at level for a privileged peer
// (the host shim: worth an operator's attention), and for an unprivileged
// one at debug level only, counted into the pressure log's next line, so
// that a flood of bad connections cannot flood the log.
func (sc *serverConn) badPeer(level slog.Level, msg string, args ...any) {
	if !sc.privileged && level > slog.LevelDebug {
		sc.s.badPeers.Add(1)
		sc.s.pressure.note()
		level = slog.LevelDebug
	}
	sc.log.Log(context.Background(), level, msg, args...)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// track adds or removes sc from the live connections. Adding fails once the
// server is shutting down.
func (s *Server) track(sc *serverConn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, sc)
		return true
	}
	if s.shutting.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*serverConn]struct{})
	}
	s.conns[sc] = struct{}{}
	return true
}

// handshake reads the client's Hello and answers HelloAck, or an Error
// frame and an error if the Hello is missing or offers no common version.
func (sc *serverConn) handshake() error {
	timeout := sc.s.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	deadline := time.Now().Add(timeout)
	sc.nc.SetDeadline(deadline)
	// MaxHelloSize fits in the connection's own buffer: nothing before
	// the Hello draws on the frame budget.
	f, err := sc.cr.next(MaxHelloSize, helloTooLarge)
	if err != nil {
		var we *Error
		if errors.As(err, &we) {
			sc.writeDirect(0, we)
		}
		return fmt.Errorf("wire: read hello: %w", err)
	}
	id, m, err := Unmarshal(f.body)
	if err != nil {
		we := err.(*Error)
		if we.Code == CodeUnsupported {
			we = malformed("first frame must be hello (type %d), got an unknown type", TypeHello)
		}
		sc.writeDirect(id, we)
		return fmt.Errorf("wire: read hello: %w", we)
	}
	hello, ok := m.(*Hello)
	if !ok {
		we := malformed("first frame must be hello (type %d), got %s", TypeHello, m.MessageType())
		sc.writeDirect(id, we)
		return we
	}
	var chosen uint16
	for _, v := range hello.Versions {
		if slices.Contains(supportedVersions, v) && v > chosen {
			chosen = v
		}
	}
	if chosen == 0 {
		we := &Error{Code: CodeVersionMismatch, Message: fmt.Sprintf("client offers versions %v, server speaks %v", hello.Versions, supportedVersions)}
		sc.writeDirect(id, we)
		return we
	}
	if err := sc.writeDirect(id, &HelloAck{Version: chosen, Software: sc.s.Software}); err != nil {
		return fmt.Errorf("wire: write hello_ack: %w", err)
	}
	// Clear the deadline, then look at shutting: Shutdown sets the flag
	// before it sets a read deadline, so either we see the flag or our
	// clearing came first and Shutdown's deadline stands.
	sc.nc.SetDeadline(time.Time{})
	if sc.s.shutting.Load() {
		return ErrServerClosed
	}
	sc.log.Debug("wire: connection open", "version", chosen, "client", hello.Software)
	return nil
}

// writeDirect writes one frame straight to the connection (before the
// writer goroutine runs).
func (sc *serverConn) writeDirect(id uint64, m Message) error {
	buf := getBuf()
	defer putBuf(buf)
	if err := appendFrame(buf, id, m); err != nil {
		return err
	}
	_, err := sc.nc.Write(buf.Bytes())
	return err
}

// readLoop reads and dispatches frames until the peer hangs up (nil),
// Shutdown stops it (nil), or framing is lost or the read fails (error).
func (sc *serverConn) readLoop() error {
	for {
		f, err := sc.cr.next(MaxFrameSize, frameTooLarge)
		if err != nil {
			var we *Error
			var te *errFrameTimeout
			switch {
			case errors.As(err, &we):
				sc.badPeer(slog.LevelWarn, "wire: refused frame; closing connection", "code", we.Code.String(), "err", we.Message)
				sc.closeWith(0, we)
				return we
			case errors.As(err, &te):
				sc.s.pressure.note()
				sc.badPeer(slog.LevelWarn, "wire: frame timed out; closing connection", "err", te.Error())
				sc.closeWith(0, malformed("%v", te))
				return err
			case errors.Is(err, io.EOF):
				return nil
			case sc.s.shutting.Load() && errors.Is(err, os.ErrDeadlineExceeded):
				return nil
			}
			return fmt.Errorf("wire: read: %w", err)
		}
		id, req, err := Unmarshal(f.body)
		sc.cr.done(&f)
		if err == nil && id == 0 {
			// An answer carries its request's id, and id 0 marks
			// connection-level errors: an answer to this request could not
			// be told from one, so the client's framing of requests is
			// broken.
			err = malformed("request id 0: ids 0 is reserved for the handshake and connection-level errors; number requests from 1")
		}
		if err != nil {
			sc.s.budget.release(f.res)
			we := err.(*Error)
			if we.Code == CodeUnsupported && id != 0 {
				sc.send(id, we)
				continue
			}
			if we.Code == CodeUnsupported {
				we = malformed("request id 0 (%s): ids 0 is reserved for the handshake and connection-level errors", we.Message)
			}
			sc.badPeer(slog.LevelWarn, "wire: malformed frame; closing connection", "err", we.Message)
			sc.closeWith(id, we)
			return we
		}
		if t := req.MessageType(); !t.IsRequest() {
			sc.s.budget.release(f.res)
			sc.send(id, &Error{Code: CodeUnsupported, Message: fmt.Sprintf("%s (type %d) is not a request", t, uint16(t))})
			continue
		}
		if !sc.dispatch(job{id: id, req: req, res: f.res}) {
			sc.s.budget.release(f.res)
			return sc.ctx.Err()
		}
	}
}

// closingWriteTimeout bounds the write of the error frame that precedes
// closing a connection: a peer that does not read must not keep it open.
const closingWriteTimeout = time.Second

// closeWith sends the error frame that precedes closing the connection:
// id is the offending frame's, if its envelope could be read, else 0.
func (sc *serverConn) closeWith(id uint64, we *Error) {
	sc.nc.SetWriteDeadline(time.Now().Add(closingWriteTimeout))
	sc.send(id, we)
}

// dispatch queues j for a worker: it waits while MaxInFlight requests are
// in flight, then wakes an idle worker or starts one. It returns false if
// the connection ended while it waited.
func (sc *serverConn) dispatch(j job) bool {
	if sc.queue == nil {
		// Made at the first request, not at the handshake: a connection
		// that never sends one (or stalls inside its first frame) costs
		// none of this.
		n := sc.s.maxInFlight()
		sc.queue = make(chan job, n)
		sc.wake = make(chan struct{}, n)
		sc.slots = make(chan struct{}, n)
	}
	select {
	case sc.slots <- struct{}{}:
	case <-sc.ctx.Done():
		return false
	}
	sc.busy.Add(1)
	sc.queue <- j // never blocks: a slot is held for it
	if sc.idle.Add(-1) >= 0 {
		sc.wake <- struct{}{} // never blocks: tokens <= queued requests
		return true
	}
	// Every worker is running or already promised a request. A slot
	// held by each of them and one by j keep them below MaxInFlight.
	sc.idle.Add(1)
	sc.wg.Add(1)
	go sc.worker()
	return true
}

// worker runs the oldest queued request, then one more per token, until
// wake is closed and drained.
func (sc *serverConn) worker() {
	defer sc.wg.Done()
	for {
		sc.handle(<-sc.queue)
		// Idle before the slot is free: the reader that takes the slot
		// then finds this worker instead of starting another.
		sc.idle.Add(1)
		<-sc.slots
		if _, ok := <-sc.wake; !ok {
			return
		}
	}
}

func (sc *serverConn) handle(j job) {
	defer sc.s.budget.release(j.res)
	resp, err := sc.call(j.req)
	if sc.ctx.Err() != nil {
		// The connection is being torn down; nobody waits for this.
		sc.busy.Add(-1)
		return
	}
	if err == nil && resp == nil {
		err = fmt.Errorf("handler returned neither a response nor an error for %s", j.req.MessageType())
	}
	if err != nil {
		resp = sc.errorFrame(j.req, err)
	}
	sc.busy.Add(-1)
	sc.send(j.id, resp)
}

func (sc *serverConn) call(req Message) (resp Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, fmt.Errorf("handler panic: %v\n%s", p, debug.Stack())
		}
	}()
	return sc.s.Handler.ServeWire(sc.ctx, req)
}

// errorFrame turns a handler error into the frame sent for it.
func (sc *serverConn) errorFrame(req Message, err error) *Error {
	var we *Error
	if errors.As(err, &we) {
		return we
	}
	sc.log.Error("wire: request failed", "type", req.MessageType().String(), "err", err)
	return &Error{Code: CodeInternal, Message: "internal error; see the enclave log"}
}

// send encodes m and queues it for the connection's writer. A message that cannot be
// encoded (e.g. larger than MaxFrameSize) is replaced by CodeInternal: not
// CodeFrameTooLarge, which would tell the client that framing is lost.
func (sc *serverConn) send(id uint64, m Message) {
	buf := getBuf()
	if err := appendFrame(buf, id, m); err != nil {
		sc.log.Error("wire: cannot encode response", "type", m.MessageType().String(), "err", err)
		buf.Reset()
		if err := appendFrame(buf, id, &Error{Code: CodeInternal, Message: "response could not be encoded: " + err.Error()}); err != nil {
			putBuf(buf)
			return
		}
	}
	sc.w.queue(buf.Bytes())
	putBuf(buf)
}

// Shutdown stops the server gracefully: it closes the listeners, stops
// reading new requests on every connection, lets the requests in flight
// finish and their answers go out, then closes the connections. If ctx ends
// first, it closes everything at once (as Close) and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.shutting.Store(true)
	s.stopReadingF()
	for ln := range s.listeners {
		ln.Close()
	}
	var dones []chan struct{}
	for sc := range s.conns {
		sc.nc.SetReadDeadline(time.Unix(1, 0))
		dones = append(dones, sc.done)
	}
	s.mu.Unlock()
	for _, d := range dones {
		select {
		case <-d:
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		}
	}
	return nil
}

// Close stops the server at once: it closes the listeners and every
// connection, and cancels the contexts of requests in flight.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutting.Store(true)
	s.stopReadingF()
	for ln := range s.listeners {
		ln.Close()
	}
	for sc := range s.conns {
		sc.nc.Close()
		sc.cancel()
	}
	return nil
}

package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/testsupport"
	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// The tests of what a peer can make a Server hold before (and after) its
// Hello: docs/threat-model.md cites them.

// allocatedBytes returns the bytes this process has allocated so far.
func allocatedBytes() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// TestReadFrameAllocatesAsBytesArrive: a 1 MiB length prefix followed by
// 100 bytes must not make ReadFrame allocate 1 MiB.
func TestReadFrameAllocatesAsBytesArrive(t *testing.T) {
	data := binary.BigEndian.AppendUint32(nil, MaxFrameSize)
	data = append(data, make([]byte, 100)...)
	const runs = 50
	before := allocatedBytes()
	for range runs {
		if _, err := ReadFrame(bytes.NewReader(data), nil); err != io.ErrUnexpectedEOF {
			t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
		}
	}
	if per := (allocatedBytes() - before) / runs; per > 2*readGrowStep {
		t.Fatalf("ReadFrame allocated %d bytes per call for a 1 MiB prefix and 100 bytes, want at most %d", per, 2*readGrowStep)
	}
	// And a whole frame read in small pieces still comes out right.
	body := bytes.Repeat([]byte("0123456789"), 100_000)
	var framed bytes.Buffer
	WriteFrame(&framed, body)
	got, err := ReadFrame(&trickleReader{r: &framed, n: 777}, nil)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("trickled frame: %v, %d bytes (want %d)", err, len(got), len(body))
	}
}

// trickleReader returns at most n bytes per Read.
type trickleReader struct {
	r io.Reader
	n int
}

func (t *trickleReader) Read(p []byte) (int, error) { return t.r.Read(p[:min(len(p), t.n)]) }

// startTCPServer serves h on 127.0.0.1 and returns the server and its
// address. Ordinary dials come from ephemeral ports: unprivileged peers.
func startTCPServer(t *testing.T, h Handler, configure ...func(*Server)) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: h, Log: testLogger(t)}
	for _, f := range configure {
		f(srv)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
		srv.connWG.Wait()
	})
	return srv, ln.Addr().String()
}

// rawTCP connects to addr and, if hello, completes the handshake.
func rawTCP(t *testing.T, addr string, hello bool) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := newRaw(t, nc)
	if hello {
		r.send(0, &Hello{Versions: []uint16{Version}})
		if _, m := r.read(); m.MessageType() != TypeHelloAck {
			t.Fatalf("handshake answer: %#v", m)
		}
	}
	return r
}

// waitFor polls cond until it holds, or fails the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10 s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// signFrame returns a whole sign_request frame (prefix included) with id
// and data of n bytes.
func signFrame(t *testing.T, id uint64, n int) []byte {
	t.Helper()
	body, err := Marshal(id, &SignRequest{KeyID: "k", Data: make([]byte, n)})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	WriteFrame(&b, body)
	return b.Bytes()
}

// echoLen answers a sign request with the length of its data as the key id.
var echoLen = HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
	s := req.(*SignRequest)
	return &SignResponse{KeyID: strconv.Itoa(len(s.Data)), Algorithm: "ed25519", Signature: []byte{1}}, nil
})

// TestLargePrefixesHoldNoMemory opens many connections that each declare a
// 1 MiB frame after their Hello, and checks that the server allocates a
// small fixed amount per connection, not the frames' sizes; then that once
// the frames' bytes arrive, what the server holds stays within its frame
// memory.
func TestLargePrefixesHoldNoMemory(t *testing.T) {
	const conns = 200
	srv, addr := startTCPServer(t, echoLen, func(s *Server) {
		s.MaxConns = -1 // this test is about frame memory alone
		s.FrameTimeout = time.Minute
		s.Log = nil // 200 connections' debug lines are noise here
	})
	hello, _ := Marshal(0, &Hello{Versions: []uint16{Version}})
	var helloFrame bytes.Buffer
	WriteFrame(&helloFrame, hello)
	frame := signFrame(t, 1, MaxFrameSize-64)

	runtime.GC()
	before := allocatedBytes()
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ncs[i] = nc
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(helloFrame.Bytes()); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadFrame(nc, make([]byte, 0, 64)); err != nil {
			t.Fatalf("hello_ack: %v", err)
		}
		// The length prefix, and the first bytes of the body.
		if _, err := nc.Write(frame[:HeaderSize+100]); err != nil {
			t.Fatal(err)
		}
	}
	// Every reader has taken its frame's prefix: those that found frame
	// memory hold it, the others wait for it.
	shared := srv.Stats().FrameMemory - privilegedReserve
	held := shared / MaxFrameSize
	waitFor(t, "readers at their frames' prefixes", func() bool {
		st := srv.Stats()
		return st.FrameMemoryHeld == shared && st.FrameMemoryWaits == uint64(conns-held)
	})
	perConn := (allocatedBytes() - before) / conns
	t.Logf("allocated %d bytes per connection (both sides) for a Hello and a 1 MiB prefix", perConn)
	if perConn > 64<<10 {
		t.Fatalf("%d bytes allocated per connection with a 1 MiB frame declared, want at most 64 KiB", perConn)
	}

	// Now everyone sends all but the last byte. Writes stall once the
	// server stops reading: that is the back-pressure.
	var wg sync.WaitGroup
	for _, nc := range ncs {
		wg.Go(func() {
			nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
			nc.Write(frame[HeaderSize+100 : len(frame)-1])
		})
	}
	wg.Wait()
	waitFor(t, "the frames holding memory read but for their last byte", func() bool {
		return srv.Stats().FrameBytesRead == held*int64(len(frame)-HeaderSize-1)
	})
	total := allocatedBytes() - before
	t.Logf("allocated %d bytes in all with %d stalled 1 MiB frames", total, conns)
	if limit := uint64(srv.Stats().FrameMemory) + conns*64<<10; total > limit {
		t.Fatalf("%d bytes allocated with %d stalled 1 MiB frames, want at most frame memory + 64 KiB per connection = %d", total, conns, limit)
	}
}

func TestHelloLimit(t *testing.T) {
	_, path := startServer(t, answerSamples(t))
	t.Run("over", func(t *testing.T) {
		r := rawDial(t, path, false)
		r.write(binary.BigEndian.AppendUint32(nil, MaxHelloSize+1)) // and no body
		e := r.readError(0, CodeFrameTooLarge)
		if !strings.Contains(e.Message, "hello") || !strings.Contains(e.Message, strconv.Itoa(MaxHelloSize)) {
			t.Errorf("message %q should say the hello's limit", e.Message)
		}
		r.expectClosed()
	})
	t.Run("at the limit", func(t *testing.T) {
		h := &Hello{Versions: []uint16{Version}}
		body, _ := Marshal(0, h)
		h.Software = strings.Repeat("x", MaxHelloSize-len(body)-4) // key 2, a 3-byte text head
		body, _ = Marshal(0, h)
		if len(body) != MaxHelloSize {
			t.Fatalf("test hello is %d bytes, want %d", len(body), MaxHelloSize)
		}
		r := rawDial(t, path, false)
		r.writeBody(body)
		if _, m := r.read(); m.MessageType() != TypeHelloAck {
			t.Fatalf("got %#v, want hello_ack", m)
		}
	})
}

func TestRequestIDZeroRefused(t *testing.T) {
	var calls atomic.Int32
	_, path := startServer(t, HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
		calls.Add(1)
		return answerSamples(t)(ctx, req)
	}))
	for name, m := range map[string]Message{
		"sign request":  &SignRequest{KeyID: "k", Data: []byte("x")},
		"unknown type":  &futureRequest{X: 1},
		"not a request": &Status{},
	} {
		t.Run(name, func(t *testing.T) {
			r := rawDial(t, path, true)
			r.send(0, m)
			e := r.readError(0, CodeMalformedFrame)
			if !strings.Contains(e.Message, "id 0") {
				t.Errorf("message %q should name the id", e.Message)
			}
			r.expectClosed()
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the handler ran %d times for requests with id 0", n)
	}
}

// TestFrameMemoryBackPressure: large frames beyond the frame memory wait
// for it (their bytes stay in the socket), small frames never wait, and a
// privileged peer's large frame uses the reserve.
func TestFrameMemoryBackPressure(t *testing.T) {
	srv, addr := startTCPServer(t, echoLen, func(s *Server) {
		s.FrameMemory = MinFrameMemory // 2 MiB shared, 2 MiB reserved
		s.FrameTimeout = time.Minute
	})
	// The same server on a unix socket: a privileged peer.
	uds := filepath.Join(t.TempDir(), "p.sock")
	uln, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(uln)

	const big = MaxFrameSize - 64
	frame := signFrame(t, 1, big)
	half := len(frame) / 2

	// A and B take the whole shared part with half-sent frames.
	a, b := rawTCP(t, addr, true), rawTCP(t, addr, true)
	a.write(frame[:half])
	b.write(frame[:half])
	waitFor(t, "A and B holding the shared frame memory", func() bool {
		return srv.Stats().FrameMemoryHeld == MinFrameMemory-privilegedReserve
	})
	// C's frame waits, whole, in its socket.
	c := rawTCP(t, addr, true)
	go func() {
		c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		c.nc.Write(frame)
	}()
	waitFor(t, "C waiting for frame memory", func() bool { return srv.Stats().FrameMemoryWaits == 1 })

	// Small frames are served meanwhile.
	d := rawTCP(t, addr, true)
	for i := range 10 {
		d.write(signFrame(t, uint64(i+1), 100))
		if id, m := d.read(); id != uint64(i+1) || m.(*SignResponse).KeyID != "100" {
			t.Fatalf("small request %d: id %d %#v", i+1, id, m)
		}
	}
	// A privileged peer's large frame uses the reserve.
	p := rawDial(t, uds, true)
	p.write(frame)
	if id, m := p.read(); id != 1 || m.(*SignResponse).KeyID != strconv.Itoa(big) {
		t.Fatalf("privileged large request: id %d %#v", id, m)
	}
	if st := srv.Stats(); st.FrameMemoryWaits != 1 {
		t.Fatalf("frame memory waits %d after the privileged frame, want 1 (C's)", st.FrameMemoryWaits)
	}

	// A finishes: its answer goes out, and C's frame gets its room.
	a.write(frame[half:])
	if id, m := a.read(); id != 1 || m.(*SignResponse).KeyID != strconv.Itoa(big) {
		t.Fatalf("A: id %d %#v", id, m)
	}
	if id, m := c.read(); id != 1 || m.(*SignResponse).KeyID != strconv.Itoa(big) {
		t.Fatalf("C: id %d %#v", id, m)
	}
	b.write(frame[half:])
	if id, _ := b.read(); id != 1 {
		t.Fatalf("B: id %d", id)
	}
	waitFor(t, "frame memory released", func() bool { return srv.Stats().FrameMemoryHeld == 0 })
}

// TestStalledFrameTimesOut: a frame that stops arriving, and a frame
// waiting for frame memory, end their connections after FrameTimeout and
// give their frame memory back.
func TestStalledFrameTimesOut(t *testing.T) {
	srv, addr := startTCPServer(t, echoLen, func(s *Server) {
		s.FrameMemory = MinFrameMemory
		s.FrameTimeout = 300 * time.Millisecond
	})
	frame := signFrame(t, 1, MaxFrameSize-64)
	var stalled []*rawConn
	for range 3 { // two fill the shared part, the third waits
		r := rawTCP(t, addr, true)
		r.write(frame[:1000])
		stalled = append(stalled, r)
	}
	for i, r := range stalled {
		e := r.readError(0, CodeMalformedFrame)
		if !strings.Contains(e.Message, "incomplete after 300ms") {
			t.Errorf("connection %d: message %q should say the frame timed out", i, e.Message)
		}
		r.expectClosed()
	}
	waitFor(t, "frame memory released", func() bool { return srv.Stats().FrameMemoryHeld == 0 })
	if st := srv.Stats(); st.FrameTimeouts != 3 || st.FrameMemoryWaits != 1 {
		t.Errorf("stats %+v: want 3 frame timeouts and 1 wait", st)
	}
	// The server still serves a frame of the same size.
	r := rawTCP(t, addr, true)
	r.write(frame)
	if id, _ := r.read(); id != 1 {
		t.Fatalf("id %d", id)
	}
}

// TestMaxConnsRefusesUnprivilegedOnly: over MaxConns, connections from
// ephemeral ports are refused with too_many_connections; connections from
// privileged ports (and unix sockets) are not counted and never refused.
func TestMaxConnsRefusesUnprivilegedOnly(t *testing.T) {
	srv, addr := startTCPServer(t, echoLen, func(s *Server) { s.MaxConns = 2 })
	taddr := transport.Addr{Scheme: transport.TCP, HostPort: addr}
	plain := func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, taddr) }
	ctx := t.Context()
	c1, err := Dial(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := Dial(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()

	_, err = Dial(ctx, plain)
	if !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("third unprivileged connection: got %v, want ErrTooManyConnections", err)
	}
	if !strings.Contains(err.Error(), "at most 2") || !strings.Contains(err.Error(), "below 1024") {
		t.Errorf("error %q should say the limit and the way around it", err)
	}

	// Privileged peers: as many as they like, at any time.
	privileged := func(ctx context.Context) (net.Conn, error) { return transport.DialPrivileged(ctx, taddr) }
	for i := range 3 {
		p, err := Dial(ctx, privileged)
		if errors.Is(err, transport.ErrPrivilegedPortDenied) {
			if os.Getenv("CI") == "true" {
				t.Fatalf("CI must run as root (or with CAP_NET_BIND_SERVICE) to test privileged peers: %v", err)
			}
			t.Skipf("cannot bind privileged ports here: %v", err)
		}
		if err != nil {
			t.Fatalf("privileged connection %d: %v", i, err)
		}
		defer p.Close()
		if r, err := callAs[*SignResponse](ctx, p, &SignRequest{KeyID: "k", Data: []byte("abc")}); err != nil || r.KeyID != "3" {
			t.Fatalf("privileged connection %d: %v %#v", i, err, r)
		}
	}
	// Refusals, many at once, do not disturb the connections served.
	var wg sync.WaitGroup
	var refused atomic.Int32
	for range 50 {
		wg.Go(func() {
			if _, err := Dial(ctx, plain); errors.Is(err, ErrTooManyConnections) {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if refused.Load() == 0 {
		t.Error("none of 50 further connections was told too_many_connections")
	}
	if _, err := callAs[*SignResponse](ctx, c1, &SignRequest{KeyID: "k", Data: []byte("x")}); err != nil {
		t.Fatalf("c1 after the refusals: %v", err)
	}
	st := srv.Stats()
	if st.UnprivilegedConns != 2 || st.Conns != 5 || st.RefusedConns != 51 {
		t.Errorf("stats %+v: want 2 unprivileged of 5 connections, 51 refused", st)
	}

	// A slot freed is a slot taken.
	c2.Close()
	waitFor(t, "c2's slot freed", func() bool { return srv.Stats().UnprivilegedConns == 1 })
	c4, err := Dial(ctx, plain)
	if err != nil {
		t.Fatalf("after a slot was freed: %v", err)
	}
	c4.Close()
}

// TestPressureLogAggregates: a flood of refusals gives a few log lines
// whose counts add up, not a line per connection.
func TestPressureLogAggregates(t *testing.T) {
	old := pressureInterval
	pressureInterval = 200 * time.Millisecond
	t.Cleanup(func() { pressureInterval = old })
	var logs testsupport.SyncBuffer
	_, addr := startTCPServer(t, echoLen, func(s *Server) {
		s.MaxConns = 1
		s.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	hold := rawTCP(t, addr, true)
	defer hold.nc.Close()
	start := time.Now()
	const n = 100
	for range n {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	count := regexp.MustCompile(`refused_conns=(\d+)`)
	sum := func() (total, lines int) {
		for _, m := range count.FindAllStringSubmatch(logs.String(), -1) {
			v, _ := strconv.Atoi(m[1])
			total += v
			lines++
		}
		return total, lines
	}
	waitFor(t, "every refusal logged", func() bool { total, _ := sum(); return total == n })
	_, lines := sum()
	if most := int(time.Since(start)/pressureInterval) + 2; lines > most {
		t.Errorf("%d refusals gave %d log lines in %v, want at most %d:\n%s", n, lines, time.Since(start), most, logs.String())
	}
	if strings.Count(logs.String(), "\n") != lines {
		t.Errorf("other lines than the pressure log's:\n%s", logs.String())
	}
}

// writeFails is a net.Conn whose writes fail, as a write to a connection
// the server has already closed can.
type writeFails struct{ net.Conn }

func (writeFails) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestRefusalReadAfterFailedHello: a client whose Hello cannot be written
// still reports the error frame the server sent before closing.
func TestRefusalReadAfterFailedHello(t *testing.T) {
	cs, ss := net.Pipe()
	defer ss.Close()
	go func() {
		b, _ := Marshal(0, &Error{Code: CodeTooManyConnections, Message: "at most 64"})
		WriteFrame(ss, b)
	}()
	_, err := NewConn(t.Context(), writeFails{cs})
	if !errors.Is(err, ErrTooManyConnections) || !strings.Contains(err.Error(), "at most 64") {
		t.Fatalf("got %v, want the server's too_many_connections", err)
	}
}

// TestShutdownWhileWaitingForFrameMemory: Shutdown stops a reader that
// waits for frame memory as it stops one that waits for bytes: the
// requests already read on that connection are still answered.
func TestShutdownWhileWaitingForFrameMemory(t *testing.T) {
	release := make(chan struct{})
	srv, addr := startTCPServer(t, HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
		s := req.(*SignRequest)
		if s.KeyID == "block" {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return &SignResponse{KeyID: s.KeyID, Algorithm: "ed25519", Signature: []byte{1}}, nil
	}), func(s *Server) {
		s.FrameMemory = MinFrameMemory
		s.FrameTimeout = time.Minute
	})
	frame := signFrame(t, 1, MaxFrameSize-64)
	a, b := rawTCP(t, addr, true), rawTCP(t, addr, true)
	a.write(frame[:1000])
	b.write(frame[:1000])
	waitFor(t, "A and B holding the shared frame memory", func() bool {
		return srv.Stats().FrameMemoryHeld == MinFrameMemory-privilegedReserve
	})
	c := rawTCP(t, addr, true)
	body, _ := Marshal(7, &SignRequest{KeyID: "block", Data: []byte("x")})
	c.writeBody(body)
	c.write(frame[:1000])
	waitFor(t, "C waiting for frame memory", func() bool { return srv.Stats().FrameMemoryWaits == 1 })

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	waitFor(t, "Shutdown under way", srv.shutting.Load)
	close(release)
	if id, m := c.read(); id != 7 || m.(*SignResponse).KeyID != "block" {
		t.Fatalf("C's request read before Shutdown: id %d %#v", id, m)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

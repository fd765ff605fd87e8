package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/testsupport"
)

// sampleOf returns the sample message of type typ.
func sampleOf(t testing.TB, typ Type) Message {
	t.Helper()
	for _, s := range samples() {
		if s.msg.MessageType() == typ {
			return s.msg
		}
	}
	t.Fatalf("no sample of %s", typ)
	return nil
}

// answerSamples answers every request with its sample response, and signs
// by echoing the key id and data.
func answerSamples(t testing.TB) HandlerFunc {
	status := sampleOf(t, TypeStatus)
	keys := sampleOf(t, TypeKeyList)
	attest := sampleOf(t, TypeAttestResponse)
	return func(ctx context.Context, req Message) (Message, error) {
		switch req := req.(type) {
		case *StatusRequest, *ProvisionRequest:
			return status, nil
		case *ListKeysRequest:
			return keys, nil
		case *SignRequest:
			return &SignResponse{KeyID: req.KeyID, Algorithm: "ed25519", Signature: req.Data}, nil
		case *AttestRequest:
			return attest, nil
		}
		return nil, fmt.Errorf("unexpected %T", req)
	}
}

// startServer serves h on a unix socket in a temporary directory and
// returns the server and the socket path.
func startServer(t *testing.T, h Handler, configure ...func(*Server)) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
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
		select {
		case err := <-served:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
		// Let connection goroutines finish (and stop logging to t).
		srv.connWG.Wait()
	})
	return srv, path
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func unixDialer(path string) DialFunc {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

func dial(t *testing.T, path string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, unixDialer(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConn speaks frames by hand, for either side of a connection.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func newRaw(t *testing.T, nc net.Conn) *rawConn {
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// rawDial connects to path and, if hello, completes the handshake.
func rawDial(t *testing.T, path string, hello bool) *rawConn {
	t.Helper()
	nc, err := net.Dial("unix", path)
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

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	r.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawConn) send(id uint64, m Message) {
	r.t.Helper()
	body, err := Marshal(id, m)
	if err != nil {
		r.t.Fatal(err)
	}
	r.writeBody(body)
}

func (r *rawConn) writeBody(body []byte) {
	r.t.Helper()
	var b bytes.Buffer
	if err := WriteFrame(&b, body); err != nil {
		r.t.Fatal(err)
	}
	r.write(b.Bytes())
}

func (r *rawConn) read() (uint64, Message) {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	body, err := ReadFrame(r.br, nil)
	if err != nil {
		r.t.Fatalf("read frame: %v", err)
	}
	id, m, err := Unmarshal(body)
	if err != nil {
		r.t.Fatalf("decode frame: %v", err)
	}
	return id, m
}

func (r *rawConn) readError(wantID uint64, want Code) *Error {
	r.t.Helper()
	id, m := r.read()
	e, ok := m.(*Error)
	if !ok || e.Code != want || id != wantID {
		r.t.Fatalf("got id %d %#v, want id %d error %s", id, m, wantID, want)
	}
	return e
}

// expectClosed asserts the peer closes the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(r.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatal("connection still open after 5s")
	}
	if len(b) != 0 {
		r.t.Errorf("got %d more bytes before close: %x", len(b), b)
	}
}

func TestCallEveryRequest(t *testing.T) {
	var gotProvision atomic.Pointer[ProvisionRequest]
	base := answerSamples(t)
	h := HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
		if p, ok := req.(*ProvisionRequest); ok {
			gotProvision.Store(p)
		}
		return base(ctx, req)
	})
	check := func(t *testing.T, c *Conn) {
		ctx := t.Context()
		st, err := callAs[*Status](ctx, c, &StatusRequest{})
		if err != nil || !reflect.DeepEqual(st, sampleOf(t, TypeStatus)) {
			t.Errorf("Status: %v %#v", err, st)
		}
		prov := sampleOf(t, TypeProvisionRequest).(*ProvisionRequest)
		st, err = callAs[*Status](ctx, c, prov)
		if err != nil || !reflect.DeepEqual(st, sampleOf(t, TypeStatus)) {
			t.Errorf("Provision: %v %#v", err, st)
		}
		if got := gotProvision.Load(); got == nil || !reflect.DeepEqual(normalize(got), prov) {
			t.Errorf("handler got provision %v, want %v", got, prov)
		}
		keys, err := listKeys(ctx, c)
		if err != nil || !reflect.DeepEqual(keys, sampleOf(t, TypeKeyList).(*KeyList).Keys) {
			t.Errorf("ListKeys: %v %#v", err, keys)
		}
		sig, err := callAs[*SignResponse](ctx, c, &SignRequest{KeyID: "k1", Data: []byte("hello")})
		if err != nil || sig.KeyID != "k1" || string(sig.Signature) != "hello" {
			t.Errorf("Sign: %v %#v", err, sig)
		}
		att, err := callAs[*AttestResponse](ctx, c, &AttestRequest{Nonce: []byte{1}})
		if err != nil || !reflect.DeepEqual(att, sampleOf(t, TypeAttestResponse)) {
			t.Errorf("Attest: %v %#v", err, att)
		}
		if c.Version() != Version || c.ServerSoftware() != "signerd-test" {
			t.Errorf("handshake: version %d software %q", c.Version(), c.ServerSoftware())
		}
	}
	t.Run("unix", func(t *testing.T) {
		_, path := startServer(t, h, func(s *Server) { s.Software = "signerd-test" })
		check(t, dial(t, path))
	})
	t.Run("pipe", func(t *testing.T) {
		srv := &Server{Handler: h, Log: testLogger(t), Software: "signerd-test"}
		cs, ss := net.Pipe()
		served := make(chan error, 1)
		go func() { served <- srv.ServeConn(ss) }()
		c, err := NewConn(t.Context(), cs)
		if err != nil {
			t.Fatal(err)
		}
		check(t, c)
		c.Close()
		if err := <-served; err != nil {
			t.Errorf("ServeConn after the client hung up: %v, want nil", err)
		}
	})
}

func TestOutOfOrderResponses(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
		s := req.(*SignRequest)
		if s.KeyID == "slow" {
			<-release
		}
		return &SignResponse{KeyID: s.KeyID}, nil
	})
	_, path := startServer(t, h)

	t.Run("frames", func(t *testing.T) {
		r := rawDial(t, path, true)
		r.send(1, &SignRequest{KeyID: "slow"})
		r.send(2, &SignRequest{KeyID: "fast"})
		if id, m := r.read(); id != 2 || m.(*SignResponse).KeyID != "fast" {
			t.Fatalf("first answer: id %d %#v, want id 2 (fast)", id, m)
		}
		release <- struct{}{}
		if id, m := r.read(); id != 1 || m.(*SignResponse).KeyID != "slow" {
			t.Fatalf("second answer: id %d %#v, want id 1 (slow)", id, m)
		}
	})

	t.Run("conn", func(t *testing.T) {
		c := dial(t, path)
		slow := make(chan *SignResponse, 1)
		go func() {
			r, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: "slow"})
			if err != nil {
				t.Error(err)
			}
			slow <- r
		}()
		// Wait until the slow request is in the handler, for a fair race.
		time.Sleep(20 * time.Millisecond)
		r, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: "fast"})
		if err != nil || r.KeyID != "fast" {
			t.Fatalf("fast: %v %#v", err, r)
		}
		select {
		case <-slow:
			t.Fatal("slow call finished before it was released")
		default:
		}
		release <- struct{}{}
		if r := <-slow; r == nil || r.KeyID != "slow" {
			t.Fatalf("slow: %#v", r)
		}
	})
}

func TestMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	_, path := startServer(t, answerSamples(t))
	good := dial(t, path)

	valid, err := Marshal(3, &SignRequest{KeyID: "k", Data: []byte("m")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		raw    []byte // written as is
		body   []byte // framed with WriteFrame
		wantID uint64
	}{
		{name: "zero length", raw: []byte{0, 0, 0, 0}},
		{name: "bad cbor", body: []byte{0x83, 0x16, 0x03, 0xa1, 0x01, 0xff}, wantID: 3},
		{name: "trailing bytes", body: append(bytes.Clone(valid), 0x00), wantID: 3},
		{name: "not an envelope", body: []byte{0xa1, 0x01, 0x02}},
		{name: "wrong field type", body: []byte{0x83, 0x16, 0x03, 0xa1, 0x01, 0x01}, wantID: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rawDial(t, path, true)
			if tt.raw != nil {
				r.write(tt.raw)
			} else {
				r.writeBody(tt.body)
			}
			r.readError(tt.wantID, CodeMalformedFrame)
			r.expectClosed()

			resp, err := callAs[*SignResponse](t.Context(), good, &SignRequest{KeyID: "still", Data: []byte("ok")})
			if err != nil || resp.KeyID != "still" {
				t.Errorf("other connection after a malformed frame: %v %#v", err, resp)
			}
		})
	}
}

func TestOversizedLengthPrefix(t *testing.T) {
	_, path := startServer(t, answerSamples(t))
	good := dial(t, path)
	r := rawDial(t, path, true)
	start := time.Now()
	r.write([]byte{0xff, 0xff, 0xff, 0xff}) // 4 GiB, and no body follows
	e := r.readError(0, CodeFrameTooLarge)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("refusal took %v; the server must answer without reading 4 GiB", elapsed)
	}
	if !strings.Contains(e.Message, "4294967295") {
		t.Errorf("message %q does not name the refused length", e.Message)
	}
	r.expectClosed()
	if _, err := callAs[*Status](t.Context(), good, &StatusRequest{}); err != nil {
		t.Errorf("other connection: %v", err)
	}
}

// futureRequest is a message type this package does not define, as a newer
// client might send.
type futureRequest struct {
	X int `cbor:"1,keyasint"`
}

func (*futureRequest) MessageType() Type { return 999 }

func TestUnknownMessageTypeKeepsServing(t *testing.T) {
	_, path := startServer(t, answerSamples(t))
	t.Run("frames", func(t *testing.T) {
		r := rawDial(t, path, true)
		r.send(5, &futureRequest{X: 1})
		e := r.readError(5, CodeUnsupported)
		if !strings.Contains(e.Message, "999") {
			t.Errorf("message %q does not name the type", e.Message)
		}
		r.send(6, &StatusRequest{})
		if id, m := r.read(); id != 6 || m.MessageType() != TypeStatus {
			t.Fatalf("after unsupported: id %d %#v", id, m)
		}
	})
	t.Run("conn", func(t *testing.T) {
		c := dial(t, path)
		_, err := c.Call(t.Context(), &futureRequest{X: 2})
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("got %v, want ErrUnsupported", err)
		}
		// A response type sent as a request is unsupported too.
		_, err = c.Call(t.Context(), &Status{})
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("status as a request: got %v, want ErrUnsupported", err)
		}
		if _, err := callAs[*Status](t.Context(), c, &StatusRequest{}); err != nil {
			t.Fatalf("after unsupported: %v", err)
		}
	})
}

func TestHandlerErrors(t *testing.T) {
	var logs testsupport.SyncBuffer
	h := HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
		switch req.(*SignRequest).KeyID {
		case "missing":
			return nil, fmt.Errorf("sign: %w", &Error{Code: CodeUnknownKey, Message: `no key "missing"`})
		case "plain":
			return nil, errors.New("disk on fire: detail for the log only")
		case "panic":
			panic("handler bug")
		case "nothing":
			return nil, nil
		case "huge":
			return &SignResponse{Signature: make([]byte, MaxFrameSize)}, nil
		}
		return &SignResponse{KeyID: "ok"}, nil
	})
	_, path := startServer(t, h, func(s *Server) { s.Log = slog.New(slog.NewTextHandler(&logs, nil)) })
	c := dial(t, path)
	ctx := t.Context()

	_, err := callAs[*SignResponse](ctx, c, &SignRequest{KeyID: "missing"})
	var we *Error
	if !errors.Is(err, ErrUnknownKey) || !errors.As(err, &we) || we.Message != `no key "missing"` {
		t.Errorf("mapped error: got %v, want unknown_key with its message", err)
	}
	_, err = callAs[*SignResponse](ctx, c, &SignRequest{KeyID: "huge"})
	if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("oversized response: got %v, want internal saying it exceeds the limit", err)
	}
	for _, key := range []string{"plain", "panic", "nothing"} {
		_, err := callAs[*SignResponse](ctx, c, &SignRequest{KeyID: key})
		if !errors.Is(err, ErrInternal) {
			t.Errorf("%s: got %v, want ErrInternal", key, err)
		}
		if err != nil && strings.Contains(err.Error(), "disk on fire") {
			t.Errorf("%s: unmapped error text reached the client: %v", key, err)
		}
	}
	if r, err := callAs[*SignResponse](ctx, c, &SignRequest{KeyID: "fine"}); err != nil || r.KeyID != "ok" {
		t.Errorf("after error answers the connection must keep serving: %v", err)
	}
	for _, want := range []string{"disk on fire", "handler bug", "neither a response nor an error"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("server log lacks %q:\n%s", want, logs.String())
		}
	}
}

// blockingHandler blocks SignRequests for key "block" until released or
// its ctx ends, and records whether ctx ended.
type blockingHandler struct {
	release   chan struct{}
	entered   chan struct{}
	cancelled atomic.Bool
}

func newBlockingHandler() *blockingHandler {
	return &blockingHandler{release: make(chan struct{}), entered: make(chan struct{}, 16)}
}

func (b *blockingHandler) ServeWire(ctx context.Context, req Message) (Message, error) {
	s := req.(*SignRequest)
	if s.KeyID == "block" {
		b.entered <- struct{}{}
		select {
		case <-b.release:
		case <-ctx.Done():
			b.cancelled.Store(true)
			return nil, ctx.Err()
		}
	}
	return &SignResponse{KeyID: s.KeyID, Signature: s.Data}, nil
}

func TestCallContext(t *testing.T) {
	bh := newBlockingHandler()
	_, path := startServer(t, bh)
	c := dial(t, path)

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := callAs[*SignResponse](cancelled, c, &SignRequest{KeyID: "x"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: got %v, want context.Canceled", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := callAs[*SignResponse](ctx, c, &SignRequest{KeyID: "block", Data: []byte("late")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Call returned %v after its deadline", elapsed)
	}
	// Let the late answer come; the next call must get its own.
	close(bh.release)
	for i := range 5 {
		data := fmt.Appendf(nil, "call %d", i)
		r, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: "next", Data: data})
		if err != nil || r.KeyID != "next" || !bytes.Equal(r.Signature, data) {
			t.Fatalf("call after a timed-out one: %v %#v", err, r)
		}
	}
}

func TestServerCloseFailsCalls(t *testing.T) {
	bh := newBlockingHandler()
	srv, path := startServer(t, bh)
	c := dial(t, path)
	errc := make(chan error, 1)
	go func() {
		_, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: "block"})
		errc <- err
	}()
	<-bh.entered
	srv.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrConnClosed) {
			t.Errorf("in-flight call: got %v, want ErrConnClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight call still waiting 5s after the server closed")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if _, err := callAs[*Status](t.Context(), c, &StatusRequest{}); !errors.Is(err, ErrConnClosed) {
		t.Errorf("call after close: got %v, want ErrConnClosed", err)
	}
	if !errors.Is(c.Err(), ErrConnClosed) {
		t.Errorf("Err() = %v, want ErrConnClosed", c.Err())
	}
	srv.connWG.Wait() // the handler has returned
	if !bh.cancelled.Load() {
		t.Error("the handler's ctx was not cancelled by Close")
	}
}

func TestConnCloseFailsCalls(t *testing.T) {
	bh := newBlockingHandler()
	_, path := startServer(t, bh)
	c := dial(t, path)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: "block"})
			errs <- err
		})
	}
	for range 8 {
		<-bh.entered
	}
	c.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrConnClosed) {
			t.Errorf("got %v, want ErrConnClosed", err)
		}
	}
	close(bh.release)
}

// fakeServer runs script as the server side of a net.Pipe after answering
// the handshake, and returns the client Conn.
func fakeServer(t *testing.T, script func(r *rawConn)) *Conn {
	t.Helper()
	cs, ss := net.Pipe()
	go func() {
		r := &rawConn{t: t, nc: ss, br: bufio.NewReader(ss)}
		defer ss.Close()
		body, err := ReadFrame(r.br, nil)
		if err != nil {
			return
		}
		if _, m, _ := Unmarshal(body); m == nil || m.MessageType() != TypeHello {
			return
		}
		b, _ := Marshal(0, &HelloAck{Version: Version})
		if WriteFrame(ss, b) != nil {
			return
		}
		script(r)
	}()
	c, err := NewConn(t.Context(), cs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPeerFailures(t *testing.T) {
	tests := []struct {
		name   string
		script func(r *rawConn)
		substr string
	}{
		{"hangs up", func(r *rawConn) { ReadFrame(r.br, nil) }, "server hung up"},
		{"garbage", func(r *rawConn) {
			ReadFrame(r.br, nil)
			r.nc.Write([]byte{0, 0, 0, 2, 0xff, 0xff})
			io.Copy(io.Discard, r.br)
		}, "bad frame from server"},
		{"oversized", func(r *rawConn) {
			ReadFrame(r.br, nil)
			r.nc.Write([]byte{0x7f, 0xff, 0xff, 0xff})
			io.Copy(io.Discard, r.br)
		}, "frame_too_large"},
		{"connection error frame", func(r *rawConn) {
			ReadFrame(r.br, nil)
			b, _ := Marshal(0, &Error{Code: CodeMalformedFrame, Message: "you sent junk"})
			WriteFrame(r.nc, b)
			io.Copy(io.Discard, r.br)
		}, "you sent junk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeServer(t, tt.script)
			done := make(chan error, 1)
			go func() {
				_, err := callAs[*Status](t.Context(), c, &StatusRequest{})
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrConnClosed) || !strings.Contains(err.Error(), tt.substr) {
					t.Errorf("got %v, want ErrConnClosed mentioning %q", err, tt.substr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("call still waiting 5s after the server failed")
			}
		})
	}
}

func TestAnswerOfWrongType(t *testing.T) {
	c := fakeServer(t, func(r *rawConn) {
		body, _ := ReadFrame(r.br, nil)
		id, _, _ := Unmarshal(body)
		b, _ := Marshal(id, &KeyList{})
		WriteFrame(r.nc, b)
		io.Copy(io.Discard, r.br)
	})
	_, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: "k"})
	if err == nil || !strings.Contains(err.Error(), "answered with key_list, want sign_response") {
		t.Errorf("got %v, want a wrong-answer error", err)
	}
}

func TestShutdownGraceful(t *testing.T) {
	bh := newBlockingHandler()
	srv, path := startServer(t, bh)
	c := dial(t, path)
	type result struct {
		r   *SignResponse
		err error
	}
	res := make(chan result, 1)
	go func() {
		r, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: "block", Data: []byte("in flight")})
		res <- result{r, err}
	}()
	<-bh.entered
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(t.Context()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(bh.release)
	r := <-res
	if r.err != nil || string(r.r.Signature) != "in flight" {
		t.Errorf("in-flight call during Shutdown: %v %#v", r.err, r.r)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last request finished")
	}
	if _, err := callAs[*Status](t.Context(), c, &StatusRequest{}); !errors.Is(err, ErrConnClosed) {
		t.Errorf("call after Shutdown: got %v, want ErrConnClosed", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := Dial(ctx, unixDialer(path)); err == nil {
		t.Error("Dial after Shutdown succeeded")
	}
}

func TestShutdownTimeout(t *testing.T) {
	bh := newBlockingHandler()
	srv, path := startServer(t, bh)
	c := dial(t, path)
	errc := make(chan error, 1)
	go func() {
		_, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: "block"})
		errc <- err
	}()
	<-bh.entered
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: got %v, want context.DeadlineExceeded", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrConnClosed) {
			t.Errorf("in-flight call: got %v, want ErrConnClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight call still waiting after a forced shutdown")
	}
}

func TestHandshake(t *testing.T) {
	_, path := startServer(t, answerSamples(t), func(s *Server) { s.HandshakeTimeout = 100 * time.Millisecond })

	t.Run("version mismatch", func(t *testing.T) {
		r := rawDial(t, path, false)
		r.send(0, &Hello{Versions: []uint16{98, 99}})
		e := r.readError(0, CodeVersionMismatch)
		if !strings.Contains(e.Message, "[98 99]") || !strings.Contains(e.Message, "[1]") {
			t.Errorf("message %q should name both sides' versions", e.Message)
		}
		r.expectClosed()
	})
	t.Run("picks highest common", func(t *testing.T) {
		r := rawDial(t, path, false)
		r.send(0, &Hello{Versions: []uint16{Version, 99}})
		if _, m := r.read(); m.(*HelloAck).Version != Version {
			t.Errorf("got %#v", m)
		}
	})
	t.Run("no hello", func(t *testing.T) {
		r := rawDial(t, path, false)
		r.send(1, &StatusRequest{})
		e := r.readError(1, CodeMalformedFrame)
		if !strings.Contains(e.Message, "first frame must be hello") {
			t.Errorf("message %q", e.Message)
		}
		r.expectClosed()
	})
	t.Run("silent client", func(t *testing.T) {
		r := rawDial(t, path, false)
		start := time.Now()
		r.expectClosed()
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("closed after %v, want about HandshakeTimeout", elapsed)
		}
	})
	t.Run("client sees mismatch", func(t *testing.T) {
		for name, answer := range map[string]Message{
			"error frame":     &Error{Code: CodeVersionMismatch, Message: "server speaks [7]"},
			"unknown version": &HelloAck{Version: 7},
		} {
			cs, ss := net.Pipe()
			go func() {
				defer ss.Close()
				ReadFrame(ss, nil)
				b, _ := Marshal(0, answer)
				WriteFrame(ss, b)
			}()
			_, err := NewConn(t.Context(), cs)
			if !errors.Is(err, ErrVersionMismatch) {
				t.Errorf("%s: got %v, want ErrVersionMismatch", name, err)
			}
		}
	})
	t.Run("client deadline", func(t *testing.T) {
		cs, ss := net.Pipe()
		defer ss.Close()
		go io.Copy(io.Discard, ss) // reads the hello, never answers
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := NewConn(ctx, cs)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Errorf("handshake gave up after %v", elapsed)
		}
	})
}

func TestMaxInFlight(t *testing.T) {
	const limit = 3
	var cur, peak atomic.Int32
	h := HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		cur.Add(-1)
		return &SignResponse{}, nil
	})
	_, path := startServer(t, h, func(s *Server) { s.MaxInFlight = limit })
	c := dial(t, path)
	var wg sync.WaitGroup
	for range 4 * limit {
		wg.Go(func() {
			if _, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: "k"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p != limit {
		t.Errorf("peak concurrency %d, want %d", p, limit)
	}
}

func TestManyConcurrentCalls(t *testing.T) {
	_, path := startServer(t, answerSamples(t))
	c := dial(t, path)
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range 50 {
				key := fmt.Sprintf("g%d", g)
				data := fmt.Appendf(nil, "%d/%d", g, i)
				r, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: key, Data: data})
				if err != nil || r.KeyID != key || !bytes.Equal(r.Signature, data) {
					t.Errorf("call %d/%d: %v %#v", g, i, err, r)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestUnknownCodeFromPeer(t *testing.T) {
	c := fakeServer(t, func(r *rawConn) {
		for _, answer := range []Message{&Error{Code: 999, Message: "from the future"}, &Status{State: StateReady}} {
			body, err := ReadFrame(r.br, nil)
			if err != nil {
				return
			}
			id, _, _ := Unmarshal(body)
			b, _ := Marshal(id, answer)
			WriteFrame(r.nc, b)
		}
		io.Copy(io.Discard, r.br)
	})
	_, err := callAs[*Status](t.Context(), c, &StatusRequest{})
	var we *Error
	if !errors.As(err, &we) || we.Code != 999 || err.Error() != "code(999): from the future" {
		t.Fatalf("got %v, want an *Error printed as code(999): from the future", err)
	}
	if st, err := callAs[*Status](t.Context(), c, &StatusRequest{}); err != nil || st.State != StateReady {
		t.Fatalf("after an unknown code the connection must keep serving: %v %#v", err, st)
	}
}

// callAs sends req on c and checks the answer's type. These tests drive one
// Conn directly; the typed calls of the host are internal/wireclient's.
func callAs[T Message](ctx context.Context, c *Conn, req Message) (T, error) {
	var zero T
	resp, err := c.Call(ctx, req)
	if err != nil {
		return zero, err
	}
	r, ok := resp.(T)
	if !ok {
		return zero, fmt.Errorf("wire: %s answered with %s, want %s", req.MessageType(), resp.MessageType(), zero.MessageType())
	}
	return r, nil
}

// listKeys returns the keys of a ListKeysRequest's answer.
func listKeys(ctx context.Context, c *Conn) ([]KeyInfo, error) {
	kl, err := callAs[*KeyList](ctx, c, &ListKeysRequest{})
	if err != nil {
		return nil, err
	}
	return kl.Keys, nil
}

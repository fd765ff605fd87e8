package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recordingConn is a net.Conn whose writes are recorded one by one. While
// block is not nil, Write waits for it to be closed first.
type recordingConn struct {
	net.Conn // nil: only Write is used
	mu       sync.Mutex
	writes   [][]byte
	block    chan struct{}
	started  chan struct{} // receives once per Write, if not nil
	err      error
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	block, started := c.block, c.started
	c.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if block != nil {
		<-block
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *recordingConn) recorded() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func TestFrameWriterCombinesWhileMoreComing(t *testing.T) {
	nc := &recordingConn{}
	var more atomic.Bool
	more.Store(true)
	w := newFrameWriter(nc, time.Hour, more.Load, nil)
	for i := range 5 {
		w.queue(fmt.Appendf(nil, "f%d;", i))
	}
	if got := nc.recorded(); len(got) != 0 {
		t.Fatalf("wrote %q while more frames were coming and none had waited the delay", got)
	}
	more.Store(false) // the last answer: nothing else is running
	w.queue([]byte("f5;"))
	got := nc.recorded()
	if len(got) != 1 || string(got[0]) != "f0;f1;f2;f3;f4;f5;" {
		t.Fatalf("writes %q, want the six frames in order in one write", got)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	w.queue([]byte("late;"))
	if got := nc.recorded(); len(got) != 1 {
		t.Errorf("a frame queued after close was written: %q", got)
	}
}

func TestFrameWriterDelayBoundsTheWait(t *testing.T) {
	nc := &recordingConn{}
	w := newFrameWriter(nc, 5*time.Millisecond, func() bool { return true }, nil)
	defer w.close()
	start := time.Now()
	w.queue([]byte("answer;"))
	// Requests are still running (more is always true): only the timer
	// can write the answer.
	for len(nc.recorded()) == 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("answer not written 10s after queueing with a 5ms delay")
		}
		time.Sleep(time.Millisecond)
	}
	if elapsed := time.Since(start); elapsed < 5*time.Millisecond {
		t.Errorf("written after %v, before the 5ms delay", elapsed)
	}
}

// Frames queued within the delay of each other share the timer's write.
func TestFrameWriterTimerCombines(t *testing.T) {
	nc := &recordingConn{}
	w := newFrameWriter(nc, 200*time.Millisecond, func() bool { return true }, nil)
	defer w.close()
	w.queue([]byte("a;"))
	w.queue([]byte("b;"))
	start := time.Now()
	for len(nc.recorded()) == 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("frames not written 10s after queueing with a 200ms delay")
		}
		time.Sleep(time.Millisecond)
	}
	if got := nc.recorded(); len(got) != 1 || string(got[0]) != "a;b;" {
		t.Errorf("writes %q, want both frames in one write", got)
	}
}

func TestFrameWriterNoDelay(t *testing.T) {
	nc := &recordingConn{}
	w := newFrameWriter(nc, 0, func() bool { return true }, nil)
	w.queue([]byte("a;"))
	w.queue([]byte("b;"))
	if got := nc.recorded(); len(got) != 2 {
		t.Errorf("writes %q, want one per frame with no delay", got)
	}
	w.close()
}

// While a write is in progress, frames wait for it, in order; beyond
// maxPendingWrite bytes the goroutines queueing them wait too.
func TestFrameWriterBackpressure(t *testing.T) {
	block := make(chan struct{})
	started := make(chan struct{}, 100)
	nc := &recordingConn{block: block, started: started}
	w := newFrameWriter(nc, 0, func() bool { return false }, nil)
	go w.queue([]byte("first;"))
	<-started // the first write is blocked
	frame := bytes.Repeat([]byte{'x'}, 64<<10)
	queued := make(chan int, 10)
	for i := range 6 {
		go func() {
			w.queue(frame)
			queued <- i
		}()
	}
	// 4 frames fill maxPendingWrite (256 KiB); the other two must wait.
	deadline := time.After(10 * time.Second)
	for range 4 {
		select {
		case <-queued:
		case <-deadline:
			t.Fatal("frames below the pending bound were not accepted while a write was in progress")
		}
	}
	select {
	case <-queued:
		t.Fatal("a frame beyond maxPendingWrite was accepted while the write was blocked")
	case <-time.After(50 * time.Millisecond):
	}
	nc.mu.Lock()
	nc.block = nil
	nc.mu.Unlock()
	close(block)
	for range 2 {
		select {
		case <-queued:
		case <-deadline:
			t.Fatal("waiting frames were not accepted after the write ended")
		}
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	var total int
	for _, b := range nc.recorded() {
		total += len(b)
	}
	if want := len("first;") + 6*len(frame); total != want {
		t.Errorf("wrote %d bytes, want %d", total, want)
	}
}

func TestFrameWriterError(t *testing.T) {
	boom := errors.New("peer gone")
	nc := &recordingConn{err: boom}
	var calls atomic.Int32
	w := newFrameWriter(nc, 0, func() bool { return false }, func(err error) {
		if !errors.Is(err, boom) {
			t.Errorf("onError got %v", err)
		}
		calls.Add(1)
	})
	w.queue([]byte("a;"))
	w.queue([]byte("b;")) // dropped: the connection is gone
	if err := w.close(); !errors.Is(err, boom) {
		t.Errorf("close returned %v, want the write error", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("onError called %d times, want once", n)
	}
}

// A fast answer is not held back by a slow request on the same connection:
// it goes out once it has waited WriteDelay, while the slow one still runs.
func TestAnswerNotHeldBySlowRequest(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
		r := req.(*SignRequest)
		if r.KeyID == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return &SignResponse{KeyID: r.KeyID}, nil
	})
	_, path := startServer(t, h, func(s *Server) { s.WriteDelay = time.Millisecond })
	c := dial(t, path)
	slow := make(chan error, 1)
	go func() {
		_, err := callAs[*SignResponse](t.Context(), c, &SignRequest{KeyID: "slow"})
		slow <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if r, err := callAs[*SignResponse](ctx, c, &SignRequest{KeyID: "fast"}); err != nil || r.KeyID != "fast" {
		t.Fatalf("fast request while a slow one runs: %v %#v", err, r)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// Requests read together run in the order they were read, even on one CPU,
// where the scheduler resumes the last goroutine woken first.
func TestRequestsRunInReadOrder(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var mu sync.Mutex
	var order []string
	h := HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
		r := req.(*SignRequest)
		mu.Lock()
		order = append(order, r.KeyID)
		mu.Unlock()
		return &SignResponse{KeyID: r.KeyID}, nil
	})
	_, path := startServer(t, h)
	r := rawDial(t, path, true)
	const n = 32
	var batch bytes.Buffer
	var want []string
	for i := range n {
		id := fmt.Sprintf("k%02d", i)
		want = append(want, id)
		body, err := Marshal(uint64(i+1), &SignRequest{KeyID: id})
		if err != nil {
			t.Fatal(err)
		}
		WriteFrame(&batch, body)
	}
	r.write(batch.Bytes()) // one write: the server reads them together
	for range n {
		r.read()
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("handler saw\n%v\nwant the order sent\n%v", order, want)
	}
}

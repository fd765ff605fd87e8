package wire

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"time"
)

// DefaultWriteDelay is the Server's default WriteDelay.
const DefaultWriteDelay = 500 * time.Microsecond

// maxPendingWrite is how many bytes of frames may wait while a write is in
// progress before the goroutines queueing more wait for it: the bound that
// keeps a peer that stops reading from growing the queue without end.
const maxPendingWrite = 256 << 10

var errWriterClosed = errors.New("wire: connection writer closed")

// frameWriter combines the frames of a server connection into few writes,
// without a goroutine of its own. The goroutine that queues a frame writes
// everything pending itself when nothing more is coming (more reports
// false), or when the oldest pending frame has waited delay; otherwise it
// leaves the frames for a later queue call or for a timer that fires when
// the oldest has waited delay.
//
// Writing from the goroutine that finished the answer, rather than handing
// frames to a writer goroutine, matters on an enclave with one vCPU: a
// goroutine woken there runs only when the others let it, which under load
// is after every request already queued has been signed, so a finished
// answer would wait for a whole round of them. Here the answer waits at
// most delay (plus the one signature in progress when the timer fires),
// and a write system call, which can cost as much as a signature when it
// wakes the peer on another vCPU (tens of microseconds in a VM), is still
// shared by the answers finished within delay. Under full load that is
// about one write per connection per delay: 500 µs keeps wire throughput
// within the noise of one write per round of requests, where 100 µs cost
// ed25519 a tenth of it at 64 callers (docs/performance.md).
type frameWriter struct {
	nc      net.Conn
	delay   time.Duration
	more    func() bool // further frames are on their way
	onError func(error) // called once, on the first failed write

	mu      sync.Mutex
	idle    sync.Cond     // signalled when a write ends
	pending *bytes.Buffer // frames queued and not yet written
	spare   *bytes.Buffer // the other buffer, while not being written
	since   time.Time     // when the oldest pending frame was queued
	writing bool          // a goroutine is writing, with mu released
	armed   bool          // timer will fire for the pending frames
	timer   *time.Timer
	err     error // the first write error, or errWriterClosed
}

func newFrameWriter(nc net.Conn, delay time.Duration, more func() bool, onError func(error)) *frameWriter {
	w := &frameWriter{
		nc:      nc,
		delay:   delay,
		more:    more,
		onError: onError,
		pending: new(bytes.Buffer),
		spare:   new(bytes.Buffer),
	}
	w.idle.L = &w.mu
	w.timer = time.AfterFunc(time.Hour, w.timerFired)
	w.timer.Stop()
	return w
}

// queue adds one encoded frame. It returns after the frame is written or
// left for a later write; frames are written whole and in queue order. If
// too much is already waiting behind a write in progress, it waits for that
// write first. After a write error or close, frames are dropped.
func (w *frameWriter) queue(frame []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.writing && w.pending.Len() >= maxPendingWrite && w.err == nil {
		w.idle.Wait()
	}
	if w.err != nil {
		return
	}
	if w.pending.Len() == 0 {
		w.since = time.Now()
	}
	w.pending.Write(frame)
	w.writeLocked(false)
}

// writeLocked writes the pending frames if they are due, and again as long
// as more become due meanwhile; else it makes sure the timer will come back
// for them. force writes whatever is pending. Called with mu held; it
// releases mu while writing.
func (w *frameWriter) writeLocked(force bool) {
	for !w.writing && w.pending.Len() > 0 && w.err == nil {
		if !force && w.pending.Len() < writeBufSize && w.more() {
			wait := w.delay - time.Since(w.since)
			if wait > 0 {
				if !w.armed {
					w.armed = true
					w.timer.Reset(wait)
				}
				return
			}
		}
		if w.armed && w.timer.Stop() {
			w.armed = false // these are the frames it was set for
		}
		buf := w.pending
		w.pending, w.spare = w.spare, nil
		w.writing = true
		w.mu.Unlock()
		_, err := w.nc.Write(buf.Bytes())
		w.mu.Lock()
		w.writing = false
		buf.Reset()
		w.spare = buf
		w.idle.Broadcast()
		if err != nil && w.err == nil {
			w.err = err
			if w.onError != nil {
				// Outside mu: onError may close the connection, and a
				// goroutine blocked in queue must see err, not wait.
				w.mu.Unlock()
				w.onError(err)
				w.mu.Lock()
			}
			return
		}
	}
}

func (w *frameWriter) timerFired() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	if w.pending.Len() > 0 && time.Since(w.since) >= w.delay {
		w.writeLocked(true)
		return
	}
	w.writeLocked(false) // rearms if frames are pending and not yet due
}

// close writes whatever is pending, waits for a write in progress, and
// makes later queue calls drop their frames. It returns the first write
// error, if any.
func (w *frameWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer.Stop()
	for w.writing {
		w.idle.Wait()
	}
	w.writeLocked(true) // returns with mu held and no write in progress
	err := w.err
	if w.err == nil {
		w.err = errWriterClosed
	}
	w.idle.Broadcast()
	w.pending.Reset()
	return err
}

package wire

import (
	"bufio"
	"bytes"
	"net"
	"runtime"
)

const (
	readBufSize  = 32 << 10
	writeBufSize = 32 << 10
	// maxKeptReadBuf bounds the frame buffer a connection's reader keeps
	// between frames; a larger frame's buffer is dropped after use.
	maxKeptReadBuf = 64 << 10
)

// writeLoop is a client connection's single writer (servers write with a
// frameWriter instead: their answers come from CPU-bound handlers, whose
// goroutines are better placed to write than a writer waiting its turn).
// It writes the frames queued on out through one bufio.Writer and flushes
// only when the queue is empty, so frames queued together go out in one
// write. It returns when out is closed
// (after flushing) or stop is closed (without flushing), or on the first
// write error. Every buffer it receives goes back to the pool.
//
// more, if not nil, reports whether further frames are being produced (e.g.
// other callers are about to send); the loop then yields the processor
// once before flushing, to gather them into the same write.
func writeLoop(nc net.Conn, out <-chan *bytes.Buffer, stop <-chan struct{}, more func() bool) error {
	bw := bufio.NewWriterSize(nc, writeBufSize)
	for {
		var b *bytes.Buffer
		var ok bool
		select {
		case b, ok = <-out:
		case <-stop:
			return nil
		}
		if !ok {
			return nil
		}
		// Write everything already queued, then flush once.
		yielded := false
		for b != nil {
			_, err := bw.Write(b.Bytes())
			putBuf(b)
			if err != nil {
				return err
			}
			b = nil
			select {
			case b, ok = <-out:
				if !ok {
					return bw.Flush()
				}
				continue
			default:
			}
			// The queue is empty. If more frames are on their way, yield
			// once so that the goroutines producing them can run first:
			// with few CPUs and CPU-bound handlers, frames otherwise
			// become ready one at a time and each would cost its own
			// write system call.
			if !yielded && more != nil && more() {
				yielded = true
				runtime.Gosched()
				select {
				case b, ok = <-out:
					if !ok {
						return bw.Flush()
					}
				default:
				}
			}
		}
		if err := bw.Flush(); err != nil {
			return err
		}
	}
}

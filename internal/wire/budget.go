package wire

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Frame memory: a Server bounds the bytes held by the frames in flight on
// all its connections together. A frame larger than a connection's own
// small buffer (connBufSize) reserves its length, rounded up to whole
// chunks, before its body is read, and keeps the reservation until its
// request has been answered (the decoded request holds about as much
// memory as the frame did). Its bytes are read into chunks of chunkSize
// taken from a free list as they arrive, never into a buffer sized from
// the length prefix, and the chunks go back to the free list, cleared,
// once the frame is decoded. The free list never holds more chunks than
// the whole budget has room for, and chunks are never handed to the
// garbage collector: under signerd's GOGC of 1000 memory that is freed is
// not reused for a long time, so an attack that cycles through frames must
// not allocate per frame.
//
// The budget has two parts: privileged connections (see
// transport.PrivilegedPeer) may use all of it, unprivileged ones all but
// privilegedReserve, so that the host shim's large frames (provisioning)
// never wait for other peers' frames.
const (
	chunkSize = 64 << 10
	// privilegedReserve is the part of the budget only privileged
	// connections use: two frames of the largest size.
	privilegedReserve = 2 * MaxFrameSize
	// DefaultFrameMemory is Server.FrameMemory's default: 8 MiB.
	DefaultFrameMemory = 8 << 20
	// MinFrameMemory is the least FrameMemory a Server uses: the reserve
	// and room for two more frames of the largest size.
	MinFrameMemory = privilegedReserve + 2*MaxFrameSize
)

type frameBudget struct {
	total    int64
	shared   *semaphore.Weighted // total - privilegedReserve, for everyone
	reserve  *semaphore.Weighted // privilegedReserve, privileged only
	held     atomic.Int64        // bytes reserved now, both parts
	buffered atomic.Int64        // bytes of large frames read and not yet decoded
	waits    atomic.Uint64       // reservations that had to wait
	timeouts atomic.Uint64       // reservations or frames that ran out of time
	free     chan []byte         // chunks not in use
}

func newFrameBudget(total int64) *frameBudget {
	total = max(total, MinFrameMemory)
	total -= total % chunkSize
	return &frameBudget{
		total:   total,
		shared:  semaphore.NewWeighted(total - privilegedReserve),
		reserve: semaphore.NewWeighted(privilegedReserve),
		free:    make(chan []byte, total/chunkSize),
	}
}

// reservation is what a frame holds of the budget: zero for frames read
// into their connection's own buffer.
type reservation struct {
	bytes   int64
	reserve bool // taken from the privileged reserve
}

// roundUp returns n rounded up to whole chunks.
func roundUp(n int) int64 {
	return int64((n + chunkSize - 1) / chunkSize * chunkSize)
}

// acquire reserves room for a frame of n bytes, waiting until there is
// room or ctx ends. waited reports whether it had to wait.
func (b *frameBudget) acquire(ctx context.Context, n int, privileged bool) (r reservation, waited bool, err error) {
	r.bytes = roundUp(n)
	if b.shared.TryAcquire(r.bytes) {
		b.held.Add(r.bytes)
		return r, false, nil
	}
	if privileged && b.reserve.TryAcquire(r.bytes) {
		r.reserve = true
		b.held.Add(r.bytes)
		return r, false, nil
	}
	b.waits.Add(1)
	// A privileged frame waits for the reserve, which only other
	// privileged frames use; everyone else for the shared part.
	sem := b.shared
	if privileged {
		sem, r.reserve = b.reserve, true
	}
	if err := sem.Acquire(ctx, r.bytes); err != nil {
		return reservation{}, true, err
	}
	b.held.Add(r.bytes)
	return r, true, nil
}

// release gives a reservation back; the zero reservation is a no-op.
func (b *frameBudget) release(r reservation) {
	if r.bytes == 0 {
		return
	}
	b.held.Add(-r.bytes)
	if r.reserve {
		b.reserve.Release(r.bytes)
	} else {
		b.shared.Release(r.bytes)
	}
}

// chunk returns a chunk from the free list, or a new one. Callers hold a
// reservation covering it, so no more than total/chunkSize are ever out.
func (b *frameBudget) chunk() []byte {
	select {
	case c := <-b.free:
		return c
	default:
		return make([]byte, chunkSize)
	}
}

// putChunks clears chunks (they may have carried credentials) and returns
// them to the free list.
func (b *frameBudget) putChunks(chunks [][]byte) {
	for _, c := range chunks {
		clear(c)
		select {
		case b.free <- c:
		default: // cannot happen while reservations cover the chunks
		}
	}
}

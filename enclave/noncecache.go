package main

import (
	"sync"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
)

// defaultNonceCapacity is how many nonces signerd remembers at most
// (--nonce-cache). A nonce is kept until its timestamp leaves the window,
// about 60 s after it arrives, so this admits some 17,000 authenticated
// requests a second sustained; past it requests are answered
// auth_unavailable until old nonces expire. Each nonce costs some 40 bytes
// (16 of its own, the map's overhead), so the full cache about 40 MiB.
const defaultNonceCapacity = 1 << 20

// nonceRing is the number of one-second buckets: more than the seconds a
// timestamp can be accepted in (2 × window + 1), so the bucket of an
// accepted timestamp holds that second only.
const nonceRing = 128

// nonceCache remembers the nonces of verified requests until their
// timestamps leave the window, so that a replay within it is refused.
//
// The key is the (timestamp, nonce) pair: the MAC covers both, so a replay
// carries the same timestamp, and only that second's bucket needs looking
// at. Buckets are dropped whole when their second leaves the window. The
// cache is bounded: when it holds capacity nonces it refuses new ones
// (fail closed: forgetting one early would let its request be replayed).
// Only requests whose MAC verified reach it, so junk cannot fill it.
type nonceCache struct {
	mu       sync.Mutex
	window   int64 // seconds
	capacity int
	size     int
	buckets  [nonceRing]nonceBucket
	swept    int64 // the second of the last sweep
}

type nonceBucket struct {
	sec    int64
	nonces map[[signreq.NonceSize]byte]struct{}
}

// nonceResult is what add found.
type nonceResult int

const (
	nonceNew nonceResult = iota
	nonceReplayed
	nonceFull
)

func newNonceCache(window int64, capacity int) *nonceCache {
	return &nonceCache{window: window, capacity: capacity}
}

// add records nonce with timestamp ts (seconds) at now (seconds); ts must
// already be within the window of now. It reports whether the pair is new,
// was seen before, or the cache is full.
func (c *nonceCache) add(now, ts int64, nonce [signreq.NonceSize]byte) nonceResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now != c.swept {
		c.sweep(now)
	}
	b := &c.buckets[ts&(nonceRing-1)]
	if b.sec != ts || b.nonces == nil {
		// A bucket of a second out of the window (sweep may not have
		// reached it if the clock went backwards): start it afresh.
		c.size -= len(b.nonces)
		b.sec, b.nonces = ts, nil
	}
	if _, seen := b.nonces[nonce]; seen {
		return nonceReplayed
	}
	if c.size >= c.capacity {
		return nonceFull
	}
	if b.nonces == nil {
		b.nonces = make(map[[signreq.NonceSize]byte]struct{}, 64)
	}
	b.nonces[nonce] = struct{}{}
	c.size++
	return nonceNew
}

// sweep drops the buckets whose second has left the window.
func (c *nonceCache) sweep(now int64) {
	c.swept = now
	for i := range c.buckets {
		b := &c.buckets[i]
		if b.nonces != nil && (b.sec < now-c.window || b.sec > now+c.window) {
			c.size -= len(b.nonces)
			b.nonces = nil // dropped, not cleared: a burst's memory goes back
		}
	}
}

// stats returns the nonces held at now (seconds) and the capacity.
func (c *nonceCache) stats(now int64) (size, capacity int) {
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now != c.swept {
		c.sweep(now)
	}
	return c.size, c.capacity
}

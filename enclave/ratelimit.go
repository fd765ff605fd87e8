package main

import (
	"math"
	"sync"
	"time"
)

// tokenBucket is a rate limit: perSecond tokens a second, at most burst
// held; each signature takes one. It starts full.
type tokenBucket struct {
	perSecond float64
	burst     float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newTokenBucket(perSecond float64, burst int, now time.Time) *tokenBucket {
	return &tokenBucket{perSecond: perSecond, burst: float64(burst), tokens: float64(burst), last: now}
}

// take takes a token at now. When none is there it takes nothing and
// returns how long until one will be.
func (b *tokenBucket) take(now time.Time) (ok bool, retryAfter time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := (1 - b.tokens) / b.perSecond
	return false, time.Duration(math.Ceil(wait * float64(time.Second)))
}

// refund gives back a token taken at now (the request was refused by
// another limit after all).
func (b *tokenBucket) refund() {
	b.mu.Lock()
	b.tokens = min(b.tokens+1, b.burst)
	b.mu.Unlock()
}

func (b *tokenBucket) refill(now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.perSecond)
		b.last = now
	}
}

// sameRate reports whether b limits at perSecond and burst.
func (b *tokenBucket) sameRate(perSecond float64, burst int) bool {
	return b.perSecond == perSecond && b.burst == float64(burst)
}

// limiters holds the token buckets of the loaded key set's rates, by
// "key:ID" and "client:ID". A new key set gets new limiters, which keep
// the buckets of the old whose rate did not change: re-provisioning (the
// shim does it whenever credentials are renewed) must not hand out a
// fresh burst.
type limiters struct {
	buckets map[string]*tokenBucket
}

// bucket returns the bucket named name, nil when it has no limit.
func (l *limiters) bucket(name string) *tokenBucket {
	if l == nil {
		return nil
	}
	return l.buckets[name]
}

// takeBoth takes a token from each non-nil bucket, or from neither. It
// returns the wait until both would have one.
func takeBoth(now time.Time, a, b *tokenBucket) (bool, time.Duration) {
	if a != nil {
		if ok, wait := a.take(now); !ok {
			return false, wait
		}
	}
	if b != nil {
		if ok, wait := b.take(now); !ok {
			if a != nil {
				a.refund()
			}
			return false, wait
		}
	}
	return true, 0
}

package main

import (
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/signreq"
)

func nonceN(i int) (n [signreq.NonceSize]byte) {
	n[0], n[1], n[2] = byte(i), byte(i>>8), byte(i>>16)
	return n
}

func TestNonceCache(t *testing.T) {
	c := newNonceCache(60, 4)
	now := int64(1_000_000)
	if got := c.add(now, now, nonceN(1)); got != nonceNew {
		t.Fatalf("first nonce: %v", got)
	}
	if got := c.add(now+10, now, nonceN(1)); got != nonceReplayed {
		t.Fatalf("the same (ts, nonce) 10 s later: %v, want replayed", got)
	}
	// The same nonce with another timestamp is another request (its MAC
	// differs); a replay always carries its own timestamp.
	if got := c.add(now+10, now+1, nonceN(1)); got != nonceNew {
		t.Fatalf("same nonce, other ts: %v", got)
	}
	c.add(now+10, now-50, nonceN(2))
	c.add(now+10, now+60, nonceN(3))
	if size, cp := c.stats(now + 10); size != 4 || cp != 4 {
		t.Fatalf("stats = %d/%d, want 4/4", size, cp)
	}
	if got := c.add(now+10, now, nonceN(4)); got != nonceFull {
		t.Fatalf("a fifth nonce in a cache of 4: %v, want full", got)
	}
	// A replay is still told apart when full.
	if got := c.add(now+10, now, nonceN(1)); got != nonceReplayed {
		t.Fatalf("replay in a full cache: %v", got)
	}
	// 61 s later the nonces of seconds now-50 and now have left the
	// window; now+1 and now+60 have not.
	if size, _ := c.stats(now + 61); size != 2 {
		t.Fatalf("after 61 s: %d nonces, want 2", size)
	}
	if got := c.add(now+61, now+60, nonceN(3)); got != nonceReplayed {
		t.Fatalf("a nonce still in the window was forgotten: %v", got)
	}
	if got := c.add(now+61, now+61, nonceN(5)); got != nonceNew {
		t.Fatalf("room after expiry: %v", got)
	}
	// Much later everything is gone.
	if size, _ := c.stats(now + 1000); size != 0 {
		t.Fatalf("after 1000 s: %d nonces", size)
	}
}

// TestNonceCacheBucketReuse: a bucket reused for a second 128 s later
// starts empty and its count is released, even without a sweep.
func TestNonceCacheBucketReuse(t *testing.T) {
	c := newNonceCache(60, 100)
	c.add(0, 0, nonceN(1))
	c.swept = nonceRing // as if swept at 128 already
	if got := c.add(nonceRing, nonceRing, nonceN(1)); got != nonceNew {
		t.Fatalf("the same nonce 128 s later in the same bucket: %v", got)
	}
	if c.size != 1 {
		t.Fatalf("size = %d, want 1", c.size)
	}
}

func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := newTokenBucket(5, 5, t0)
	for i := range 5 {
		if ok, _ := b.take(t0); !ok {
			t.Fatalf("token %d of a full burst of 5 refused", i+1)
		}
	}
	ok, wait := b.take(t0)
	if ok || wait != 200*time.Millisecond {
		t.Fatalf("sixth token: ok=%v wait=%s, want refused, 200ms", ok, wait)
	}
	if ok, wait := b.take(t0.Add(100 * time.Millisecond)); ok || wait != 100*time.Millisecond {
		t.Fatalf("after 100ms: ok=%v wait=%s, want refused, 100ms", ok, wait)
	}
	if ok, _ := b.take(t0.Add(200 * time.Millisecond)); !ok {
		t.Fatal("after 200ms at 5/s a token should be back")
	}
	// Over 10 s of continuous demand a 5/s bucket of burst 5 serves 5 + 50.
	b = newTokenBucket(5, 5, t0)
	served := 0
	for ms := 0; ms < 10_000; ms++ {
		if ok, _ := b.take(t0.Add(time.Duration(ms) * time.Millisecond)); ok {
			served++
		}
	}
	if served < 54 || served > 55 {
		t.Fatalf("10 s of demand: %d served, want 55", served)
	}
	// Refunds never exceed the burst.
	b = newTokenBucket(1, 2, t0)
	b.refund()
	if b.tokens != 2 {
		t.Fatalf("refund past the burst: %v tokens", b.tokens)
	}
}

func TestTakeBoth(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	key := newTokenBucket(1, 2, t0)
	client := newTokenBucket(1, 1, t0)
	if ok, _ := takeBoth(t0, key, client); !ok {
		t.Fatal("first request refused")
	}
	// The client's bucket is empty: the key's token taken is given back.
	if ok, wait := takeBoth(t0, key, client); ok || wait != time.Second {
		t.Fatalf("second: ok=%v wait=%s", ok, wait)
	}
	if key.tokens != 1 {
		t.Fatalf("the key's bucket holds %v tokens, want 1 (refunded)", key.tokens)
	}
	if ok, _ := takeBoth(t0, nil, nil); !ok {
		t.Fatal("no limits refused")
	}
}

func TestClockState(t *testing.T) {
	var c clockState
	t0 := time.Unix(1_000_000, 0)
	if c.ok.Load() {
		t.Fatal("ok before any check")
	}
	changed, ok, skew := c.observe(t0, t0.Add(2*time.Second), t0.Add(-30*time.Second))
	if !changed || !ok || skew != 31*time.Second {
		t.Fatalf("observe 31 s ahead: changed=%v ok=%v skew=%s", changed, ok, skew)
	}
	changed, ok, _ = c.observe(t0, t0, t0.Add(-61*time.Second))
	if !changed || ok {
		t.Fatalf("61 s ahead: changed=%v ok=%v, want changed to not ok", changed, ok)
	}
	changed, ok, _ = c.observe(t0, t0, t0.Add(60*time.Second))
	if !changed || !ok {
		t.Fatalf("60 s behind: changed=%v ok=%v, want ok", changed, ok)
	}
	// Failed checks keep the verdict until clockStaleAfter has passed.
	if c.failed(t0.Add(clockStaleAfter-time.Second), nil) || !c.ok.Load() {
		t.Fatal("one failed check made the clock unchecked")
	}
	if !c.failed(t0.Add(clockStaleAfter), nil) || c.ok.Load() {
		t.Fatal("no successful check for clockStaleAfter, the clock still counts as checked")
	}
}

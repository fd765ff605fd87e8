package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBoundsHoldTheirValues(t *testing.T) {
	var vals []uint64
	for v := uint64(0); v < 1000; v++ {
		vals = append(vals, v)
	}
	for s := 7; s < 45; s++ {
		p := uint64(1) << s
		vals = append(vals, p-1, p, p+1, p+p/3)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		vals = append(vals, r.Uint64N(1<<44))
	}
	prev := -1
	for _, v := range slices.Sorted(slices.Values(vals)) {
		i := bucketOf(v)
		if i < prev {
			t.Fatalf("bucketOf(%d) = %d, below bucketOf of a smaller value (%d)", v, i, prev)
		}
		prev = i
		lo, hi := bucketBounds(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d, whose bounds are [%d, %d]", v, i, lo, hi)
		}
		if v >= 2*subBuckets && float64(hi-lo+1)/float64(lo) > 1.0/subBuckets+1e-12 {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/%d of its values", i, lo, hi, subBuckets)
		}
	}
	if got := bucketOf(1 << 62); got != numBuckets-1 {
		t.Errorf("bucketOf(2^62) = %d, want the last bucket %d", got, numBuckets-1)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Count() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram: want zero quantile, count and mean")
	}
	// 1 µs to 10 ms in 1 µs steps: quantile q is q·10 ms.
	for us := 1; us <= 10000; us++ {
		h.Record(time.Duration(us) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 5 * time.Millisecond},
		{0.99, 9900 * time.Microsecond},
		{0.999, 9990 * time.Microsecond},
		{1, 10 * time.Millisecond},
	} {
		got := h.Quantile(c.q)
		// Never below the true value, at most one bucket (1/64) above.
		if got < c.want || float64(got) > float64(c.want)*(1+1.0/subBuckets) {
			t.Errorf("Quantile(%v)\n got %v\nwant %v (to +1/%d)", c.q, got, c.want, subBuckets)
		}
	}
	if h.Quantile(0) != time.Microsecond || h.Min() != time.Microsecond || h.Max() != 10*time.Millisecond {
		t.Errorf("min %v, max %v, Quantile(0) %v; want 1µs, 10ms, 1µs", h.Min(), h.Max(), h.Quantile(0))
	}
	if m := h.Mean(); m < 5000*time.Microsecond || m > 5001*time.Microsecond {
		t.Errorf("mean %v, want 5.0005ms", m)
	}
}

func TestHistogramMergeAndNegative(t *testing.T) {
	var all, a, b Histogram
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		d := time.Duration(r.Int64N(int64(50 * time.Millisecond)))
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(&Histogram{})
	if m != all {
		t.Fatal("merging two halves differs from recording everything in one")
	}
	var n Histogram
	n.Record(-time.Second)
	if n.Count() != 1 || n.Max() != 0 || n.Quantile(1) != 0 {
		t.Errorf("a negative duration: count %d, max %v; want 1 and 0", n.Count(), n.Max())
	}
}

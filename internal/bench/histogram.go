package bench

import (
	"math"
	"math/bits"
	"time"
)

// Histogram is a fixed-size log-linear histogram of durations with
// nanosecond resolution: values below 2·subBuckets ns have a bucket each;
// above that, each power of two is split into subBuckets equal buckets,
// so any recorded value is known to within 1/subBuckets (1.6 %). It holds
// values up to 2^45 ns (9.7 hours); larger ones count in the last bucket.
// The zero value is empty and ready for use; it is not safe for concurrent
// use (give each worker its own and Merge them).
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	min    int64
	max    int64
	sum    float64
}

const (
	subBits    = 6
	subBuckets = 1 << subBits // per power of two
	maxShift   = 38           // values up to 2^(maxShift+subBits+1) ns
	numBuckets = (maxShift + 2) * subBuckets
)

// bucketOf returns the bucket index of v nanoseconds (v ≥ 0).
func bucketOf(v uint64) int {
	if v < 2*subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1)
	if shift > maxShift {
		return numBuckets - 1
	}
	// v>>shift is in [subBuckets, 2·subBuckets).
	return shift*subBuckets + int(v>>shift)
}

// bucketBounds returns the lowest and highest value bucket i holds.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 2*subBuckets {
		return uint64(i), uint64(i)
	}
	shift := i/subBuckets - 1
	mant := uint64(i - shift*subBuckets)
	return mant << shift, (mant+1)<<shift - 1
}

// Record adds one duration. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(uint64(v))]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds every value recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min and Max return the smallest and largest values recorded (exactly),
// or 0 when empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest value recorded, or 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean of the values recorded, or 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value at quantile q (0 ≤ q ≤ 1): the upper bound of
// the bucket holding the ⌈q·n⌉-th smallest value, capped by the largest
// value recorded, so it never understates a latency. Quantile(0) is the
// smallest value recorded. It returns 0 when the histogram is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.min)
	}
	q = math.Min(1, q)
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketBounds(i)
			return time.Duration(min(int64(hi), h.max))
		}
	}
	return time.Duration(h.max)
}

package bench

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"no concurrency", Options{Duration: time.Second}, "concurrency: want 1 to 4096, got 0"},
		{"too much concurrency", Options{Concurrency: 5000, Duration: time.Second}, "concurrency: want 1 to 4096, got 5000"},
		{"no duration", Options{Concurrency: 1}, "duration: want more than 0, got 0s"},
		{"negative warmup", Options{Concurrency: 1, Duration: time.Second, Warmup: -1}, "warmup: want 0 or more"},
		{"negative grace", Options{Concurrency: 1, Duration: time.Second, Grace: -1}, "grace: want 0 or more"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.o.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("got  %v\nwant %s…", err, c.want)
			}
			if _, err := Run(t.Context(), c.o, func(context.Context, int) error { return nil }); err == nil {
				t.Fatal("Run accepted options Validate refuses")
			}
		})
	}
	if err := (&Options{Concurrency: 1, Duration: time.Millisecond}).Validate(); err != nil {
		t.Fatalf("minimal options refused: %v", err)
	}
}

// TestRunCountsInsideTheWindow runs a 1 ms operation from 4 workers for a
// 50 ms window after a 30 ms warm-up, with every fifth call failing.
func TestRunCountsInsideTheWindow(t *testing.T) {
	var calls atomic.Int64
	var workersSeen sync.Map
	var events []bool
	var mu sync.Mutex
	errBoom := errors.New("boom")
	res, err := Run(t.Context(), Options{
		Concurrency: 4, Duration: 50 * time.Millisecond, Warmup: 30 * time.Millisecond,
		OnWindow: func(open bool) { mu.Lock(); events = append(events, open); mu.Unlock() },
	}, func(ctx context.Context, w int) error {
		workersSeen.Store(w, true)
		time.Sleep(time.Millisecond)
		if calls.Add(1)%5 == 0 {
			return errBoom
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	total := uint64(calls.Load())
	if res.Ops == 0 || res.Errors == 0 || res.Ops+res.Errors > total {
		t.Fatalf("ops %d, errors %d of %d calls: want both counted, within the calls", res.Ops, res.Errors, total)
	}
	// Roughly 4 workers × 80 ms / 1 ms: the window holds at most 5/8.
	if res.Ops >= total*7/8 {
		t.Errorf("%d of %d calls counted: the warm-up was counted too", res.Ops, total)
	}
	if !errors.Is(res.FirstError, errBoom) {
		t.Errorf("FirstError %v, want %v", res.FirstError, errBoom)
	}
	if res.Elapsed != 50*time.Millisecond || res.Latency.Count() != res.Ops {
		t.Errorf("elapsed %v, %d latencies for %d ops; want 50ms and one per op", res.Elapsed, res.Latency.Count(), res.Ops)
	}
	if p50 := res.Latency.Quantile(0.5); p50 < time.Millisecond || p50 > 50*time.Millisecond {
		t.Errorf("p50 %v for a 1 ms operation", p50)
	}
	for w := range 4 {
		if _, ok := workersSeen.Load(w); !ok {
			t.Errorf("worker %d never ran", w)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || !events[0] || events[1] {
		t.Errorf("OnWindow calls %v, want [true false]", events)
	}
	if got := res.OpsPerSecond(); got <= 0 || got != float64(res.Ops)/0.05 {
		t.Errorf("OpsPerSecond %v, want ops/0.05", got)
	}
}

func TestRunMaxOpsEndsTheWindow(t *testing.T) {
	start := time.Now()
	res, err := Run(t.Context(), Options{Concurrency: 2, Duration: time.Minute, MaxOps: 100}, func(context.Context, int) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops < 100 || res.Ops > 101 {
		t.Errorf("ops %d, want 100 (or 101: the other worker's last)", res.Ops)
	}
	if res.Elapsed <= 0 || res.Elapsed >= time.Minute || time.Since(start) > 10*time.Second {
		t.Errorf("elapsed %v after MaxOps; want the time to the 100th op", res.Elapsed)
	}
}

func TestRunGraceCancelsStuckOperations(t *testing.T) {
	res, err := Run(t.Context(), Options{Concurrency: 3, Duration: 200 * time.Millisecond, Grace: 30 * time.Millisecond}, func(ctx context.Context, w int) error {
		if w == 0 {
			<-ctx.Done() // stuck until the run gives up on it
			return ctx.Err()
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 1 || !errors.Is(res.FirstError, context.DeadlineExceeded) {
		t.Errorf("errors %d (first %v), want the stuck operation counted once as a deadline", res.Errors, res.FirstError)
	}
	if res.Ops == 0 {
		t.Error("the other workers' operations were not counted")
	}
}

func TestRunCallerCancels(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(30*time.Millisecond, cancel)
	res, err := Run(ctx, Options{Concurrency: 2, Duration: time.Minute}, func(ctx context.Context, w int) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
			return nil
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if res == nil || res.Errors != 0 || res.Elapsed >= time.Minute || res.Elapsed <= 0 {
		t.Fatalf("result %+v: want the partial window and no errors from the cancellation", res)
	}
}

func TestRunNothingCompleted(t *testing.T) {
	_, err := Run(t.Context(), Options{Concurrency: 1, Duration: time.Millisecond, Warmup: 20 * time.Millisecond}, func(ctx context.Context, w int) error {
		time.Sleep(40 * time.Millisecond)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "no operation completed inside the window") {
		t.Fatalf("err %v, want no operation completed", err)
	}
}

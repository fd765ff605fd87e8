package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults and limits for Options.
const (
	// DefaultMaxOps bounds the operations one Run counts when
	// Options.MaxOps is 0.
	DefaultMaxOps = 1 << 30
	// DefaultGrace is how long operations still in flight at the end of
	// the window may take before Run cancels them, when Options.Grace is 0.
	DefaultGrace = 10 * time.Second
	// MaxConcurrency bounds Options.Concurrency.
	MaxConcurrency = 4096
)

// Op performs one operation and reports whether it failed. It is called
// from every worker at once; worker (0 to Concurrency-1) identifies the
// caller, for per-worker state such as a request buffer. ctx ends when
// the run is cut short.
type Op func(ctx context.Context, worker int) error

// Options configure a Run.
type Options struct {
	// Concurrency is the number of workers, each with one operation in
	// flight at a time. Required: 1 to MaxConcurrency.
	Concurrency int
	// Duration is the measured window. Required: more than 0.
	Duration time.Duration
	// Warmup runs the loop before the window opens, uncounted (connections
	// are dialed, caches and the scheduler settle). 0 means none.
	Warmup time.Duration
	// MaxOps ends the window early once this many operations have been
	// counted. 0 means DefaultMaxOps.
	MaxOps uint64
	// Grace bounds how long the operations in flight when the window ends
	// may still take; then their context is cancelled. 0 means
	// DefaultGrace.
	Grace time.Duration
	// OnWindow, if not nil, is called with true when the window opens and
	// with false when it closes (at its scheduled end, or when Run
	// returns, whichever comes first), from a goroutine of its own: for
	// sampling e.g. a server's CPU time over exactly the window.
	OnWindow func(open bool)
}

// Validate checks the options, naming the field at fault.
func (o *Options) Validate() error {
	if o.Concurrency < 1 || o.Concurrency > MaxConcurrency {
		return fmt.Errorf("concurrency: want 1 to %d, got %d", MaxConcurrency, o.Concurrency)
	}
	if o.Duration <= 0 {
		return fmt.Errorf("duration: want more than 0, got %s", o.Duration)
	}
	if o.Warmup < 0 {
		return fmt.Errorf("warmup: want 0 or more, got %s", o.Warmup)
	}
	if o.Grace < 0 {
		return fmt.Errorf("grace: want 0 or more, got %s", o.Grace)
	}
	return nil
}

// Result is what a Run measured.
type Result struct {
	// Ops counts the operations that succeeded and completed inside the
	// window.
	Ops uint64
	// Errors counts the operations that failed, over the whole run
	// (warm-up included): an operation still in flight Options.Grace after
	// the window is cancelled and counts as failed. Operations failed by
	// the caller cancelling ctx are not counted.
	Errors uint64
	// Elapsed is the window's length: Options.Duration, or less if MaxOps
	// or the caller's context ended it early.
	Elapsed time.Duration
	// Latency holds the latency of every counted operation.
	Latency Histogram
	// FirstError is the first error an operation returned, nil if none.
	FirstError error
}

// OpsPerSecond is Ops over Elapsed.
func (r *Result) OpsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

type worker struct {
	hist   Histogram
	ops    uint64
	errors uint64
	_      [64]byte // keep workers' counters off each other's cache lines
}

// Run runs op in a closed loop from Options.Concurrency workers: warm-up,
// then the measured window, then it waits for the operations in flight
// (at most Options.Grace). It returns an error for invalid options, or
// the caller's ctx.Err() (with the partial result) if ctx ended first.
func Run(ctx context.Context, o Options, op Op) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	maxOps := o.MaxOps
	if maxOps == 0 {
		maxOps = DefaultMaxOps
	}
	grace := o.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	begin := time.Now()
	start := begin.Add(o.Warmup)
	end := start.Add(o.Duration)
	runCtx, cancel := context.WithDeadline(ctx, end.Add(grace))
	defer cancel()
	if o.OnWindow != nil {
		var once sync.Once
		closeWindow := func() { once.Do(func() { o.OnWindow(false) }) }
		var opened sync.WaitGroup
		opened.Add(1)
		t1 := time.AfterFunc(time.Until(start), func() { defer opened.Done(); o.OnWindow(true) })
		t2 := time.AfterFunc(time.Until(end), func() { opened.Wait(); closeWindow() })
		defer func() {
			if t1.Stop() {
				opened.Done() // never opened: don't close either
				t2.Stop()
				return
			}
			t2.Stop()
			opened.Wait()
			closeWindow()
		}()
	}

	var (
		counted  atomic.Uint64
		stopped  atomic.Bool
		stopAt   atomic.Int64 // when MaxOps ended the window, as UnixNano
		firstErr atomic.Pointer[error]
		wg       sync.WaitGroup
	)
	workers := make([]worker, o.Concurrency)
	for i := range workers {
		w := &workers[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped.Load() {
				t0 := time.Now()
				err := op(runCtx, i)
				t1 := time.Now()
				if err != nil {
					if ctx.Err() != nil {
						return // the caller cut the run short
					}
					w.errors++
					firstErr.CompareAndSwap(nil, &err)
					if runCtx.Err() != nil {
						return // in flight past the grace period
					}
				} else if !t1.Before(start) && t1.Before(end) {
					w.ops++
					w.hist.Record(t1.Sub(t0))
					if counted.Add(1) >= maxOps && stopped.CompareAndSwap(false, true) {
						stopAt.Store(t1.UnixNano())
					}
				}
				if !t1.Before(end) || ctx.Err() != nil {
					return
				}
			}
		}()
	}
	wg.Wait()

	r := &Result{Elapsed: o.Duration}
	if ns := stopAt.Load(); ns != 0 {
		r.Elapsed = time.Unix(0, ns).Sub(start)
	}
	for i := range workers {
		r.Ops += workers[i].ops
		r.Errors += workers[i].errors
		r.Latency.Merge(&workers[i].hist)
	}
	if p := firstErr.Load(); p != nil {
		r.FirstError = *p
	}
	if err := ctx.Err(); err != nil {
		if now := time.Now(); now.Before(end) {
			r.Elapsed = max(0, now.Sub(start))
		}
		return r, fmt.Errorf("bench: run cut short: %w", err)
	}
	if r.Ops == 0 && r.Errors == 0 {
		return r, errors.New("bench: no operation completed inside the window")
	}
	return r, nil
}

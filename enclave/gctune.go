package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// A fixed GOGC multiplies whatever is live: gcPercent (1000) is right for
// signing alone, whose live heap is a few megabytes, but signerd also
// holds structures that grow with load and configuration (the audit
// trail's buffer, the nonce cache of authenticated requests, large key
// sets), and with 30 MB live a GOGC of 1000 lets the heap reach 330 MB
// before collecting: most of a 512 MiB enclave. What gcPercent was chosen
// for is an amount of headroom (tens of megabytes between collections),
// not a ratio; retuneGC keeps that amount: four times a second it sets GOGC so
// that the next heap goal is about gcHeadroom above the live heap, never
// above gcPercent and never below gcPercentFloor.
const (
	gcHeadroom     = 40 << 20
	gcPercentFloor = 50
	gcRetuneEvery  = 250 * time.Millisecond
)

// gcPercentFor returns the GOGC that puts the heap goal about gcHeadroom
// above a live heap of live bytes.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcPercent
	}
	p := uint64(gcHeadroom) * 100 / live
	return int(min(max(p, gcPercentFloor), gcPercent))
}

// liveHeap returns the heap the last collection found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// retuneGCOnce sets GOGC for the live heap if it moved by more than a
// tenth from cur, and returns the GOGC in force.
func retuneGCOnce(cur int) int {
	want := gcPercentFor(liveHeap())
	if d := want - cur; d*10 > cur || -d*10 > cur {
		debug.SetGCPercent(want)
		return want
	}
	return cur
}

// retuneGC keeps GOGC at gcPercentFor(live heap) until ctx ends. It runs
// only when GOGC is not set in the environment (the operator's choice
// wins, as in tuneGC).
func retuneGC(ctx context.Context, getenv func(string) string) {
	if getenv("GOGC") != "" {
		return
	}
	t := time.NewTicker(gcRetuneEvery)
	defer t.Stop()
	cur := gcPercent
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cur = retuneGCOnce(cur)
		}
	}
}

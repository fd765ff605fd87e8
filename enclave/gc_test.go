package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

const sampleMeminfo = `MemTotal:        8048576 kB
MemFree:         6000000 kB
MemAvailable:    7000000 kB
`

func TestTuneGC(t *testing.T) {
	prevGC := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prevGC)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	defer debug.SetMemoryLimit(prevLimit)

	tuneGC(func(string) string { return "" }, []byte(sampleMeminfo))
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, gcPercent)
	}
	if got, want := debug.SetMemoryLimit(math.MaxInt64), int64(8048576*1024/2); got != want {
		t.Errorf("GOMEMLIMIT unset: memory limit %d, want half of MemTotal, %d", got, want)
	}

	tuneGC(func(k string) string {
		switch k {
		case "GOGC":
			return "50"
		case "GOMEMLIMIT":
			return "100MiB"
		}
		return ""
	}, []byte(sampleMeminfo))
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=50 in the environment: GC percent changed to %d, want it left alone", got)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT in the environment: memory limit changed to %d, want it left alone", got)
	}

	tuneGC(func(string) string { return "" }, nil) // no /proc/meminfo
	if got := debug.SetMemoryLimit(math.MaxInt64); got != math.MaxInt64 {
		t.Errorf("no meminfo: memory limit set to %d, want none", got)
	}
}

func TestMemTotal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{sampleMeminfo, 8048576 * 1024, true},
		{"MemFree: 1 kB\nMemTotal:\t 2048 kB\n", 2 << 20, true},
		{"MemTotal: 2048 MB\n", 0, false},
		{"MemTotal: lots kB\n", 0, false},
		{"MemTotal: 0 kB\n", 0, false},
		{"MemTotal: 99999999999999999999 kB\n", 0, false},
		{"MemFree: 1 kB\n", 0, false},
		{"", 0, false},
	} {
		got, ok := memTotal([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("memTotal(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, gcPercent},
		{1 << 20, gcPercent},        // 40 MB of headroom would be 4000 %: capped
		{4 << 20, gcPercent},        // exactly 1000 %
		{20 << 20, 200},             // goal 60 MB
		{40 << 20, 100},             // goal 80 MB
		{200 << 20, gcPercentFloor}, // 20 % would collect too often: floor
		{1 << 40, gcPercentFloor},
	} {
		if got := gcPercentFor(tc.live); got != tc.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}

// TestRetuneGCOnce: with 80 MiB live the retuner lowers GOGC so that the
// heap goal stays about gcHeadroom above it; once it is freed GOGC goes
// back up.
func TestRetuneGCOnce(t *testing.T) {
	prev := debug.SetGCPercent(gcPercent)
	defer debug.SetGCPercent(prev)
	live := make([][]byte, 80)
	for i := range live {
		live[i] = make([]byte, 1<<20)
		live[i][0] = 1
	}
	runtime.GC()
	cur := retuneGCOnce(gcPercent)
	if cur > 60 || cur < gcPercentFloor {
		t.Errorf("80 MiB live: GOGC %d, want about 50 (40 MiB of headroom)", cur)
	}
	if got := debug.SetGCPercent(cur); got != cur {
		t.Errorf("retuneGCOnce returned %d but set %d", cur, got)
	}
	runtime.KeepAlive(live)
	live = nil
	runtime.GC()
	if cur = retuneGCOnce(cur); cur < gcPercent/2 {
		t.Errorf("after freeing: GOGC %d, want it back near %d", cur, gcPercent)
	}
}

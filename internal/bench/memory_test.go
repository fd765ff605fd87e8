package bench

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestStatusField(t *testing.T) {
	status := "Name:\tsignerd\nVmPeak:\t 1300000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n"
	for _, c := range []struct {
		status, name string
		want         uint64
		err          string
	}{
		{status, "VmRSS", 10240, ""},
		{status, "VmHWM", 20480, ""},
		{status, "VmSwap", 0, "no VmSwap line"},
		{"VmRSS:\t12 MB\n", "VmRSS", 0, "want a number of kB"},
		{"VmRSS:\t-3 kB\n", "VmRSS", 0, "want a number of kB"},
		{"VmRSS:\n", "VmRSS", 0, "want a number of kB"},
		{"VmRSSX:\t3 kB\n", "VmRSS", 0, "no VmRSS line"},
	} {
		got, err := statusField([]byte(c.status), c.name)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s of %q: %v, want an error with %q", c.name, c.status, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s of %q: %d, %v; want %d", c.name, c.status, got, err, c.want)
		}
	}
}

func TestSplitPeaks(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int, kib uint64) memorySample {
		return memorySample{t0.Add(time.Duration(ms) * time.Millisecond), kib}
	}
	// A sawtooth that repeats is no growth; a higher second-half peak is.
	steady := []memorySample{at(100, 50), at(200, 90), at(300, 40), at(600, 60), at(700, 89), at(1000, 45)}
	p := splitPeaks(steady, t0, t0.Add(time.Second), true)
	if p.FirstHalfKiB != 90 || p.SecondHalfKiB != 89 || p.Samples != [2]int{3, 3} || !p.Exact {
		t.Errorf("steady: %+v", p)
	}
	if g := p.Growth(); g > 0 {
		t.Errorf("steady growth %v, want <= 0", g)
	}
	leak := []memorySample{at(250, 100), at(500, 110), at(501, 150), at(1000, 200)}
	p = splitPeaks(leak, t0, t0.Add(time.Second), false)
	if p.FirstHalfKiB != 110 || p.SecondHalfKiB != 200 || p.Samples != [2]int{2, 2} || p.Exact {
		t.Errorf("leak: %+v (a sample at the midpoint belongs to the first half)", p)
	}
	if g := p.Growth(); g < 0.8 || g > 0.82 {
		t.Errorf("leak growth %v, want 200/110-1", g)
	}
	if g := (MemoryPeaks{}).Growth(); g != 0 {
		t.Errorf("empty growth %v", g)
	}
}

// TestMemorySamplerSeesGrowth watches this process grow by 64 MiB in the
// second half of a window and not in the first.
func TestMemorySamplerSeesGrowth(t *testing.T) {
	if runtime.GOOS != "linux" {
		if _, err := ProcessRSS(0); err == nil {
			t.Fatal("ProcessRSS works off Linux: test the sampler there too")
		}
		return
	}
	m := &MemorySampler{PID: 0, Interval: 10 * time.Millisecond}
	m.Start()
	time.Sleep(400 * time.Millisecond)
	grown := make([]byte, 64<<20)
	for i := 0; i < len(grown); i += 4096 {
		grown[i] = 1 // touch every page, so it is resident
	}
	time.Sleep(200 * time.Millisecond)
	p, err := m.Stop()
	runtime.KeepAlive(grown)
	if err != nil {
		t.Fatal(err)
	}
	if p.SecondHalfKiB < p.FirstHalfKiB+60<<10 {
		t.Errorf("peaks %d KiB then %d KiB: want the second half 64 MiB higher", p.FirstHalfKiB, p.SecondHalfKiB)
	}
	if p.Samples[0] == 0 || p.Samples[1] == 0 {
		t.Errorf("samples per half %v: want some in each", p.Samples)
	}
	if !p.Exact {
		t.Errorf("not exact: /proc/self/clear_refs could not reset the high-water mark")
	}
	if _, err := (&MemorySampler{PID: 0}).Stop(); err == nil {
		t.Error("Stop without Start: no error")
	}
}

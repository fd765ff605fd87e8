package bench

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// MemoryPeaks is what a MemorySampler saw of one process over a window:
// the peak resident set size over its first half and over its second half.
// Peaks, not averages or last values, so that the garbage collector's
// sawtooth is not mistaken for growth: a process that holds steady has
// about the same peak in both halves, one that leaks has a higher second.
type MemoryPeaks struct {
	FirstHalfKiB  uint64
	SecondHalfKiB uint64
	// Exact is true when every sample was the kernel's high-water mark
	// since the previous sample (VmHWM, reset after each read through
	// /proc/PID/clear_refs), so no peak between samples was missed; false
	// when it had to fall back to the resident size at each sample.
	Exact bool
	// Samples is how many readings each half holds, first and second.
	Samples [2]int
}

// Growth is the second half's peak relative to the first's: 0.05 means 5 %
// more. It is 0 when the first half saw nothing.
func (p MemoryPeaks) Growth() float64 {
	if p.FirstHalfKiB == 0 {
		return 0
	}
	return float64(p.SecondHalfKiB)/float64(p.FirstHalfKiB) - 1
}

// DefaultMemoryInterval is how often a MemorySampler reads by default.
const DefaultMemoryInterval = 50 * time.Millisecond

// MemorySampler reads the resident memory of a process at a fixed interval
// between Start and Stop, and reports the peak over each half of that
// window. It is meant for Options.OnWindow: Start when the window opens,
// Stop when it closes, so the halves are those of the window actually
// measured, however it ended.
type MemorySampler struct {
	// PID is the process to watch. Required.
	PID int
	// Interval between readings; 0 means DefaultMemoryInterval.
	Interval time.Duration

	mu      sync.Mutex
	samples []memorySample
	exact   bool
	err     error
	start   time.Time
	stop    chan struct{}
	done    chan struct{}
}

type memorySample struct {
	at  time.Time
	kib uint64
}

// Start begins sampling. It resets the process's high-water mark first,
// so the first sample covers only the window.
func (m *MemorySampler) Start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stop != nil {
		return
	}
	m.exact = resetPeakRSS(m.PID) == nil
	m.start = time.Now()
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	every := m.Interval
	if every <= 0 {
		every = DefaultMemoryInterval
	}
	go m.loop(every)
}

func (m *MemorySampler) loop(every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			m.sample()
			return
		case <-t.C:
			m.sample()
		}
	}
}

// sample takes one reading: the peak since the previous reading when the
// high-water mark can be reset, else the resident size now.
func (m *MemorySampler) sample() {
	m.mu.Lock()
	exact := m.exact
	m.mu.Unlock()
	st, err := readProcStatus(m.PID)
	var kib uint64
	if err == nil {
		if exact {
			kib, err = statusField(st, "VmHWM")
			if err == nil && resetPeakRSS(m.PID) != nil {
				exact = false
			}
		} else {
			kib, err = statusField(st, "VmRSS")
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if m.err == nil {
			m.err = err
		}
		return
	}
	m.exact = m.exact && exact
	m.samples = append(m.samples, memorySample{time.Now(), kib})
}

// Stop ends sampling (taking one last reading) and returns the peaks over
// the two halves of the time from Start to Stop. It returns an error if
// the process could not be read at all.
func (m *MemorySampler) Stop() (MemoryPeaks, error) {
	m.mu.Lock()
	stop, done := m.stop, m.done
	m.mu.Unlock()
	if stop == nil {
		return MemoryPeaks{}, fmt.Errorf("memory of process %d: sampler never started", m.PID)
	}
	select {
	case <-stop:
	default:
		close(stop)
	}
	<-done
	end := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) == 0 {
		if m.err == nil {
			m.err = fmt.Errorf("memory of process %d: no sample taken", m.PID)
		}
		return MemoryPeaks{}, m.err
	}
	return splitPeaks(m.samples, m.start, end, m.exact), nil
}

// splitPeaks returns the largest sample of each half of [start, end]. A
// sample covers the time up to its reading, so it belongs to the half its
// reading falls in.
func splitPeaks(samples []memorySample, start, end time.Time, exact bool) MemoryPeaks {
	mid := start.Add(end.Sub(start) / 2)
	p := MemoryPeaks{Exact: exact}
	for _, s := range samples {
		if !s.at.After(mid) {
			p.FirstHalfKiB = max(p.FirstHalfKiB, s.kib)
			p.Samples[0]++
		} else {
			p.SecondHalfKiB = max(p.SecondHalfKiB, s.kib)
			p.Samples[1]++
		}
	}
	return p
}

// ProcessRSS returns the resident set size of process pid (0: this
// process) in KiB.
func ProcessRSS(pid int) (uint64, error) {
	st, err := readProcStatus(pid)
	if err != nil {
		return 0, err
	}
	return statusField(st, "VmRSS")
}

// statusField reads a "Name:   N kB" line of /proc/PID/status, in KiB.
func statusField(status []byte, name string) (uint64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte(name+":"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("/proc status: %s line %q: want a number of kB", name, bytes.TrimSpace(line))
		}
		n, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc status: %s %q: want a number of kB", name, f[0])
		}
		return n, nil
	}
	return 0, fmt.Errorf("/proc status: no %s line (a kernel thread, or not Linux?)", name)
}

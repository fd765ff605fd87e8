package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// AvailableCPUs returns the CPUs the calling thread may run on, ascending.
// Call it before pinning anything: it is the machine's share for this
// process (as taskset or a cgroup cpuset left it).
func AvailableCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	return setCPUs(&set), nil
}

func setCPUs(set *unix.CPUSet) []int {
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

func cpuSet(cpus []int) (unix.CPUSet, error) {
	var set unix.CPUSet
	if len(cpus) == 0 {
		return set, errors.New("empty CPU list")
	}
	for _, c := range cpus {
		if c < 0 || c >= len(set)*64 {
			return set, fmt.Errorf("CPU %d out of range", c)
		}
		set.Set(c)
	}
	return set, nil
}

// PinProcess sets the CPU affinity of every thread of process pid (0 means
// this process) to cpus, as taskset -a -p does. Threads started meanwhile
// by a thread not yet pinned are caught by scanning /proc/PID/task again
// until two scans in a row, a millisecond apart, find every thread
// pinned; threads created later inherit the affinity of their (pinned)
// creator.
func PinProcess(pid int, cpus []int) error {
	want, err := cpuSet(cpus)
	if err != nil {
		return fmt.Errorf("pin process %d: %w", pid, err)
	}
	if pid == 0 {
		pid = os.Getpid()
	}
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	clean := 0
	for pass := 0; pass < 1000; pass++ {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("pin process %d: list threads: %w", pid, err)
		}
		changed := false
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			var got unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &got); err == nil && got == want {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &want); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue // the thread exited
				}
				return fmt.Errorf("pin process %d: thread %d to CPUs %s: %w", pid, tid, FormatCPUs(cpus), err)
			}
			changed = true
		}
		if changed {
			clean = 0
			continue
		}
		if clean++; clean == 2 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("pin process %d: its threads kept changing", pid)
}

// StartPinned starts cmd with every thread pinned to cpus from its first
// instruction: it forks from an OS thread of this process that has that
// affinity for the moment (Linux copies the forking thread's affinity
// into the child), then gives the thread its own affinity back. If that
// fails, the thread is retired rather than reused.
func StartPinned(cmd *exec.Cmd, cpus []int) error {
	want, err := cpuSet(cpus)
	if err != nil {
		return fmt.Errorf("start %s pinned: %w", cmd.Path, err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var old unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("start %s pinned: sched_getaffinity: %w", cmd.Path, err)
			return
		}
		if err := unix.SchedSetaffinity(0, &want); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("start %s pinned to CPUs %s: %w", cmd.Path, FormatCPUs(cpus), err)
			return
		}
		err := cmd.Start()
		if unix.SchedSetaffinity(0, &old) == nil {
			runtime.UnlockOSThread()
		} // else: exiting locked, the thread ends with this goroutine
		errc <- err
	}()
	return <-errc
}

// ProcessCPUTime returns the user plus system CPU time process pid (0
// means this process) has used so far, all its threads together: from
// getrusage for this process (microseconds), from /proc/PID/stat for
// another (1/100 s).
func ProcessCPUTime(pid int) (time.Duration, error) {
	if pid == 0 {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
			return 0, fmt.Errorf("getrusage: %w", err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("CPU time of process %d: %w", pid, err)
	}
	return parseStatCPU(b)
}

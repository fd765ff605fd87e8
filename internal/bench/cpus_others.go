//go:build !linux

package bench

import (
	"fmt"
	"os/exec"
	"runtime"
	"time"
)

// AvailableCPUs returns 0 to runtime.NumCPU()-1: CPU affinity is Linux
// only here.
func AvailableCPUs() ([]int, error) {
	cpus := make([]int, runtime.NumCPU())
	for i := range cpus {
		cpus[i] = i
	}
	return cpus, nil
}

// PinProcess is not supported on this system.
func PinProcess(pid int, cpus []int) error {
	return fmt.Errorf("pin process %d: CPU affinity is not supported on %s", pid, runtime.GOOS)
}

// StartPinned is not supported on this system.
func StartPinned(cmd *exec.Cmd, cpus []int) error {
	return fmt.Errorf("start %s pinned: CPU affinity is not supported on %s", cmd.Path, runtime.GOOS)
}

// ProcessCPUTime is not supported on this system.
func ProcessCPUTime(pid int) (time.Duration, error) {
	return 0, fmt.Errorf("CPU time of process %d: not supported on %s", pid, runtime.GOOS)
}

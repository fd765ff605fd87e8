//go:build !linux

package bench

import (
	"fmt"
	"runtime"
)

func readProcStatus(pid int) ([]byte, error) {
	return nil, fmt.Errorf("memory of process %d: not supported on %s", pid, runtime.GOOS)
}

func resetPeakRSS(pid int) error {
	return fmt.Errorf("peak memory of process %d: not supported on %s", pid, runtime.GOOS)
}

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

func procPath(pid int, name string) string {
	if pid == 0 {
		return filepath.Join("/proc/self", name)
	}
	return filepath.Join("/proc", strconv.Itoa(pid), name)
}

func readProcStatus(pid int) ([]byte, error) {
	b, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return nil, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	return b, nil
}

// resetPeakRSS sets the process's high-water mark (VmHWM) back to its
// resident size now: writing 5 to /proc/PID/clear_refs (Linux 4.0 and
// later; the caller must be allowed to ptrace the process, as its owner
// or root is).
func resetPeakRSS(pid int) error {
	f, err := os.OpenFile(procPath(pid, "clear_refs"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("5"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

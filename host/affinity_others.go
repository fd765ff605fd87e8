//go:build !linux

package main

import (
	"fmt"
	"runtime"
)

func setAffinity(pid int, cpus []int) error {
	return fmt.Errorf("CPU affinity is not supported on %s", runtime.GOOS)
}

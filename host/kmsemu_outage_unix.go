//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// outageSignals are the KMS emulator's outage controls: SIGUSR1 takes its
// KMS listener down (connections refused), SIGUSR2 brings it back.
func outageSignals() (down, up <-chan os.Signal, stop func()) {
	d, u := make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(d, syscall.SIGUSR1)
	signal.Notify(u, syscall.SIGUSR2)
	return d, u, func() { signal.Stop(d); signal.Stop(u) }
}

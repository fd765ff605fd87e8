//go:build !unix

package main

import "os"

// outageSignals: no SIGUSR1 or SIGUSR2 here, so no outage control.
func outageSignals() (down, up <-chan os.Signal, stop func()) {
	return nil, nil, func() {}
}

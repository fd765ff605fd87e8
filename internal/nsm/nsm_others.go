//go:build !linux

package nsm

import (
	"fmt"
	"runtime"
)

// DevicePath is where the Nitro Security Module appears inside an enclave.
const DevicePath = "/dev/nsm"

// Open fails: Nitro Enclaves run Linux only.
func Open() (Device, error) {
	return nil, fmt.Errorf("open NSM: not available on %s: Nitro Enclaves run Linux", runtime.GOOS)
}

package nsm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	hfnsm "github.com/hf/nsm"
)

// DevicePath is where the Nitro Security Module appears inside an enclave.
const DevicePath = "/dev/nsm"

// Open opens the real NSM device. Outside an enclave the device is
// missing, and the error says so plainly.
func Open() (Device, error) {
	if _, err := os.Stat(DevicePath); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open NSM: %s does not exist: this is not a Nitro Enclave (use --attestation simulated on a development machine)", DevicePath)
	}
	s, err := hfnsm.OpenDefaultSession()
	if err != nil {
		return nil, fmt.Errorf("open NSM %s: %w", DevicePath, err)
	}
	return s, nil
}

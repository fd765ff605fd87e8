package attestation

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

// Outside an enclave (every build and CI machine), opening the NSM fails
// with a message that says plainly why.
func TestOpenNSMMissingDevice(t *testing.T) {
	if _, err := os.Stat(DevicePath); !errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s exists: this test is about machines without an NSM", DevicePath)
	}
	_, err := OpenNSM()
	if err == nil || !strings.Contains(err.Error(), "not a Nitro Enclave") || !strings.Contains(err.Error(), "--attestation simulated") {
		t.Fatalf("OpenNSM() error = %v, want one saying this is not a Nitro Enclave", err)
	}
}

package nsm

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// Outside an enclave (every build and CI machine), opening the NSM fails
// with a message that says plainly why.
func TestOpenNSMMissingDevice(t *testing.T) {
	if _, err := os.Stat(DevicePath); !errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s exists: this test is about machines without an NSM", DevicePath)
	}
	_, err := Open()
	if err == nil || !strings.Contains(err.Error(), "not a Nitro Enclave") || !strings.Contains(err.Error(), "--attestation simulated") {
		t.Fatalf("Open() error = %v, want one saying this is not a Nitro Enclave", err)
	}
}

// The NSM's field limit and the one the verifier enforces on documents
// are the same number, kept in two packages so that the public verifier
// need not import this one.
func TestMaxFieldSizeIsTheVerifiers(t *testing.T) {
	if MaxFieldSize != attestation.MaxUserFieldSize {
		t.Fatalf("nsm.MaxFieldSize = %d, attestation.MaxUserFieldSize = %d: they must be equal", MaxFieldSize, attestation.MaxUserFieldSize)
	}
}

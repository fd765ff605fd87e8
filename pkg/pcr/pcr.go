// Package pcr computes Nitro Enclaves platform configuration register values
// the way the Nitro hypervisor does.
//
// Every Nitro PCR is SHA-384 and starts as 48 zero bytes; extending it with
// data sets it to SHA-384(old ‖ data). PCR3 is the parent instance's IAM role
// ARN extended once into a zero PCR, and PCR4 its instance id likewise (AWS
// Nitro Enclaves User Guide, "Where to get an enclave's measurements"). A
// plain sha384sum of the ARN, as some guides show, is never what an enclave
// presents.
package pcr

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"strings"
)

// Size is the length of a Nitro PCR value in bytes (SHA-384).
const Size = sha512.Size384

// Extend returns SHA-384(pcr ‖ data), the TPM-style extend operation.
func Extend(pcr []byte, data []byte) []byte {
	h := sha512.New384()
	h.Write(pcr)
	h.Write(data)
	return h.Sum(nil)
}

// Zero returns a fresh all-zero PCR value.
func Zero() []byte { return make([]byte, Size) }

// RoleARN returns PCR3 for an enclave whose parent instance has the IAM role
// arn (arn:aws:iam::ACCOUNT:role/NAME), not the instance profile's ARN nor
// an sts assumed-role session ARN.
func RoleARN(arn string) []byte { return Extend(Zero(), []byte(arn)) }

// InstanceID returns PCR4 for an enclave on the instance id (i-…).
func InstanceID(id string) []byte { return Extend(Zero(), []byte(id)) }

// Image returns the PCR0/1/2/8 value for measured bytes: one extend of a zero
// PCR with SHA-384 of the bytes, as nitro-cli measures an image section.
func Image(measured []byte) []byte {
	d := sha512.Sum384(measured)
	return Extend(Zero(), d[:])
}

// IsZero reports whether v is a PCR made entirely of zero bytes, as PCR0, 1,
// 2 and 8 are in an enclave started with --debug-mode.
func IsZero(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	for _, b := range v {
		if b != 0 {
			return false
		}
	}
	return true
}

// ValidateRoleARN checks that arn names an IAM role, the only input AWS
// hashes into PCR3.
func ValidateRoleARN(arn string) error {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iam" || !strings.HasPrefix(parts[5], "role/") || len(parts[5]) == len("role/") {
		if len(parts) == 6 && parts[2] == "sts" {
			return fmt.Errorf("%q is an sts session ARN: PCR3 is computed from the IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME", arn)
		}
		if len(parts) == 6 && strings.HasPrefix(parts[5], "instance-profile/") {
			return fmt.Errorf("%q is an instance profile ARN: PCR3 is computed from the role in it, arn:aws:iam::ACCOUNT:role/NAME", arn)
		}
		return fmt.Errorf("%q is not an IAM role ARN: want arn:aws:iam::ACCOUNT:role/NAME", arn)
	}
	return nil
}

// ValidateInstanceID checks the form of an EC2 instance id (i- then 8 or 17
// lowercase hex digits).
func ValidateInstanceID(id string) error {
	hexPart, ok := strings.CutPrefix(id, "i-")
	if !ok || (len(hexPart) != 8 && len(hexPart) != 17) {
		return fmt.Errorf("%q is not an EC2 instance id: want i- followed by 8 or 17 hex digits", id)
	}
	for _, c := range hexPart {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("%q is not an EC2 instance id: want i- followed by lowercase hex digits", id)
		}
	}
	return nil
}

// ParseHex parses a PCR value written as 96 hex digits (either case).
func ParseHex(s string) ([]byte, error) {
	if len(s) != 2*Size {
		return nil, fmt.Errorf("PCR value has %d hex characters, want %d", len(s), 2*Size)
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("PCR value is not hex: %v", err)
	}
	return v, nil
}

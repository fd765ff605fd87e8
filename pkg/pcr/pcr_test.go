package pcr

import (
	"encoding/hex"
	"testing"
)

// Vectors from the AWS Nitro Enclaves User Guide (set-up-attestation.html).
func TestRoleARNAndInstanceID(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"PCR3 role ARN", RoleARN("arn:aws:iam::123456789012:role/Webserver"),
			"78fce75db17cd4e0a3fb8dad3ad128ca5e77edbb2b2c7f75329dccd99aa5f6ef4fc1f1a452e315b9e98f9e312e6921e6"},
		{"PCR4 instance id", InstanceID("i-1234567890abcdef0"),
			"08f996b5d43e047a9eb51e7f548bfee7e164fd7dc8f65541f2ac09d6545ac812719327281c401a67a10fcba87ae79ce0"},
		// PCR4 of the real document att-tkhq-qos-mock_attestation_doc, whose
		// module_id is i-07e25f3bada361dec-enc0181d3dff86da785.
		{"PCR4 of a real document", InstanceID("i-07e25f3bada361dec"),
			"7021a47677bff47b7623ed573cb71326925d51773cb4f5af33f346d9ffceb3d6e2c4aa85f1e2b352e4b295ff22d16485"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(tt.got); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
	// The wrong method some guides show (bare sha384sum) must not be what we compute.
	if hex.EncodeToString(RoleARN("arn:aws:iam::123456789012:role/Webserver"))[:8] == "c63a5830" {
		t.Error("RoleARN computes a bare SHA-384 of the ARN")
	}
}

func TestIsZero(t *testing.T) {
	if !IsZero(Zero()) {
		t.Error("IsZero(Zero()) = false")
	}
	v := Zero()
	v[47] = 1
	if IsZero(v) || IsZero(nil) {
		t.Error("IsZero true for a non-zero or empty value")
	}
}

func TestValidate(t *testing.T) {
	for _, ok := range []string{"arn:aws:iam::123456789012:role/Webserver", "arn:aws-cn:iam::123456789012:role/path/x"} {
		if err := ValidateRoleARN(ok); err != nil {
			t.Errorf("ValidateRoleARN(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Webserver", "arn:aws:sts::123456789012:assumed-role/W/i-1", "arn:aws:iam::123456789012:instance-profile/W", "arn:aws:iam::123456789012:role/"} {
		if err := ValidateRoleARN(bad); err == nil {
			t.Errorf("ValidateRoleARN(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"i-1234567890abcdef0", "i-12345678"} {
		if err := ValidateInstanceID(ok); err != nil {
			t.Errorf("ValidateInstanceID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "i-", "1234567890abcdef0", "i-1234567890ABCDEF0", "i-1234567890abcdefg", "i-123"} {
		if err := ValidateInstanceID(bad); err == nil {
			t.Errorf("ValidateInstanceID(%q) accepted", bad)
		}
	}
}

func TestImage(t *testing.T) {
	// Image(x) is one extend of zero with SHA-384(x): Extend(Zero(), sha384(x)).
	a, b := Image([]byte("eif")), Image([]byte("eif2"))
	if len(a) != Size || hex.EncodeToString(a) == hex.EncodeToString(b) {
		t.Fatal("Image values wrong size or equal for different inputs")
	}
}

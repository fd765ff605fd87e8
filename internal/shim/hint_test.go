package shim

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// TestHint: each failure says what to fix, not "fix the policy" for all.
func TestHint(t *testing.T) {
	cfg := &Config{Identity: "/etc/signer/identity.enc", Region: "eu-west-1", Keyrings: []string{"/etc/signer/a.age", "s3://b/k.age"}}
	for _, tc := range []struct {
		name string
		e    wire.StatusError
		want []string
		not  []string
	}{
		{"access denied", wire.StatusError{Step: "kms_decrypt", Message: "kms decrypt: access denied", KMSCode: "AccessDeniedException", PCR0: []byte{0xab, 0xcd},
			KMSMessage: "User: arn:aws:sts::1:assumed-role/r/i is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:eu-west-1:1:key/k1 because no resource-based policy allows the kms:Decrypt action"},
			[]string{"key policy", "cannot tell which condition failed", "signer doctor --key-id arn:aws:kms:eu-west-1:1:key/k1", "PCR0, 1, 2, 3, 4 and 8", "PCR0 abcd", "signer policy update", "signer provision"},
			[]string{"ImageSha384"}},
		{"access denied, no key named", wire.StatusError{Step: "kms_decrypt", KMSCode: "AccessDeniedException"},
			[]string{"signer doctor --key-id KEY"}, []string{"ImageSha384"}},
		{"no answer from KMS", wire.StatusError{Step: "kms_decrypt", Message: "kms decrypt: HTTP 502: not an answer from KMS", KMSCode: "HTTP 502"},
			[]string{"vsock-proxy", "kms.eu-west-1.amazonaws.com", "signer doctor"}, []string{"key policy", "refused"}},
		{"damaged identity", wire.StatusError{Step: "kms_decrypt", Message: "kms decrypt: the sealed identity is damaged", KMSCode: "InvalidCiphertextException"},
			[]string{"/etc/signer/identity.enc", "encryption_context", "signer seal"}, []string{"key policy"}},
		{"wrong key", wire.StatusError{Step: "kms_decrypt", KMSCode: "IncorrectKeyException"}, []string{"/etc/signer/identity.enc", "signer seal"}, []string{"key policy"}},
		{"not an identity", wire.StatusError{Step: "identity", Message: "the sealed identity is not an age-keygen key file: line 1"},
			[]string{"/etc/signer/identity.enc", "not an age identity", "signer seal"}, []string{"key policy"}},
		{"keyring to another recipient", wire.StatusError{Step: "keyring", Message: `keyring "s3://b/k.age": decrypt: no identity matched any of the recipients`},
			[]string{"s3://b/k.age", "recipient", "/etc/signer/identity.enc"}, []string{"key policy"}},
		{"damaged keyring", wire.StatusError{Step: "keyring", Message: `keyring "/etc/signer/a.age": keys[0] (id "x"): private_key_pem: not PEM`},
			[]string{"/etc/signer/a.age", "damaged or malformed", "signer keyring new"}, []string{"key policy"}},
		{"duplicate key id", wire.StatusError{Step: "keyring", Message: `duplicate key id "x": in keyring "a" and in keyring "b"`},
			[]string{"unique"}, nil},
		{"expired token", wire.StatusError{Step: "kms_decrypt", KMSCode: "ExpiredTokenException"},
			[]string{"credentials", "instance role", "IMDS", "AWS_PROFILE"}, []string{"key policy"}},
		{"expired before sending", wire.StatusError{Step: "kms_decrypt", Message: "AWS credentials expired at 2025-01-01T00:00:00Z"},
			[]string{"credentials", "instance role"}, []string{"key policy"}},
		{"proxy", wire.StatusError{Step: "kms_decrypt", Message: "KMS proxy unreachable at vsock://3:8000: is vsock-proxy running?"},
			[]string{"vsock-proxy", "kms.eu-west-1.amazonaws.com"}, []string{"key policy"}},
		{"disabled key", wire.StatusError{Step: "kms_decrypt", KMSCode: "DisabledException"}, []string{"describe-key"}, nil},
		{"throttled", wire.StatusError{Step: "kms_decrypt", KMSCode: "ThrottlingException"}, []string{"retries by itself"}, nil},
		{"unsigned keyring", wire.StatusError{Step: "keyring_signature", Message: `keyring "s3://b/k.age": no signature: want a signature file`},
			[]string{"s3://b/k.age is not signed", "s3://b/k.age.sig", "signer keyring sign", "signer keyring verify"}, []string{"key policy"}},
		{"unpinned signer", wire.StatusError{Step: "keyring_signature", Message: `keyring "/etc/signer/a.age": 0 valid signatures of distinct pinned keyring signers, want …: signed by ed25519:AAAA, not a pinned keyring signer`},
			[]string{"/etc/signer/a.age.sig is not signed by enough", "someone on the host"}, nil},
		{"too few signers", wire.StatusError{Step: "keyring_signature", Message: `keyring "/etc/signer/a.age": 1 valid signature of distinct pinned keyring signers, want 2 of …: a second signature of ed25519:AAAA counts once`},
			[]string{"/etc/signer/a.age.sig is not signed by enough"}, nil},
		{"too few signers, older signerd", wire.StatusError{Step: "keyring_signature", Message: `keyring "/etc/signer/a.age": 1 valid signature(s) of distinct pinned keyring signers, want 2 of …: a second signature of ed25519:AAAA counts once`},
			[]string{"/etc/signer/a.age.sig is not signed by enough"}, nil},
		{"changed keyring", wire.StatusError{Step: "keyring_signature", Message: `keyring "/etc/signer/a.age": the signed statement is about another file: …`},
			[]string{"/etc/signer/a.age.sig does not belong to the keyring /etc/signer/a.age"}, nil},
		{"other identity", wire.StatusError{Step: "keyring_signature", Message: `keyring "/etc/signer/a.age": … it was signed for another identity`},
			[]string{"recipient.txt"}, nil},
		{"plaintext mismatch", wire.StatusError{Step: "keyring_signature", Message: `keyring "/etc/signer/a.age": the keyring's plaintext is keyring x version 2, but …`},
			[]string{"--id and --version its plaintext names"}, nil},
		{"expired keyring", wire.StatusError{Step: "keyring_expired", Message: `keyring "/etc/signer/a.age": keyring x version 3 was valid until …: expired`},
			[]string{"the keyring /etc/signer/a.age is outside the validity window", "NSM clock", "--not-after"}, nil},
		{"rollback", wire.StatusError{Step: "keyring_version", Message: `keyring "/etc/signer/a.age": keyring x version 2 is lower than version 3`},
			[]string{"older version than the enclave has accepted"}, nil},
		{"one id twice", wire.StatusError{Step: "keyring_version", Message: `keyrings "a" and "b" are both keyring x: provision one version of each keyring`},
			[]string{"same keyring id"}, nil},
		{"unpinned key", wire.StatusError{Step: "kms_key", Message: "the identity is sealed under KMS key arn:aws:kms:eu-west-1:999999999999:key/x, which is not pinned"},
			[]string{"/etc/signer/identity.enc", "signer seal --key-id ARN", "make image KMS_KEYS=", "keeps its keys"}, []string{"key policy"}},
		{"open keyring", wire.StatusError{Step: "require_auth", Message: `keyrings ["open.age"] declare no clients, …`},
			[]string{"--require-auth", "declare clients", "signer keyring new --client"}, []string{"key policy"}},
		{"nsm", wire.StatusError{Step: "attest", Message: "nsm: boom"}, []string{"restart the enclave"}, nil},
		{"unknown step", wire.StatusError{Step: "future"}, []string{"docs/signerd.md"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hint(&tc.e, cfg)
			for _, w := range tc.want {
				if !strings.Contains(h, w) {
					t.Errorf("hint %q does not mention %q", h, w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(h, w) {
					t.Errorf("hint %q mentions %q", h, w)
				}
			}
		})
	}
	if h := hint(nil, cfg); h != "" {
		t.Errorf("hint(nil) = %q", h)
	}
}

func TestIsPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{permanentError{errors.New("too big")}, true},
		{fmt.Errorf("keyring: %w", permanentError{errors.New("too big")}), true},
		{fmt.Errorf("provision: %w", wire.NewError(wire.CodeFrameTooLarge, "frame of 2000000 bytes")), true},
		{fmt.Errorf("provision: %w", wire.NewError(wire.CodeInvalidRequest, "region")), true},
		{fmt.Errorf("provision: %w", wire.NewError(wire.CodeVersionMismatch, "v2")), true},
		{fmt.Errorf("provision: %w", wire.NewError(wire.CodeProvisioningFailed, "kms")), false},
		{fmt.Errorf("provision: %w", wire.NewError(wire.CodeNotReady, "shutting down")), false},
		{fmt.Errorf("provision: %w", wireclient.ErrUnavailable), false},
		{errors.New("open /x: no such file or directory"), false},
	} {
		if got := isPermanent(tc.err); got != tc.want {
			t.Errorf("isPermanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

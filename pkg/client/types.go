package client

import "time"

// State is the enclave's provisioning state.
type State string

// The states an enclave reports in Status.State.
const (
	StateWaiting      State = "waiting"      // serving, never provisioned
	StateProvisioning State = "provisioning" // a provisioning is running
	StateReady        State = "ready"        // a keyring is loaded; signing works
	StateFailed       State = "failed"       // the last provisioning failed; see Status.Error
)

// Attestation modes reported in Status.Attestation.
const (
	AttestationNSM       = "nsm"       // the Nitro Security Module: a real enclave
	AttestationSimulated = "simulated" // the NSM simulator: a development enclave
)

// Status is the enclave's state as it reports it. It passes through the
// host: a relying party trusts an attestation document (Client.Attest),
// not this copy.
type Status struct {
	State State
	// Attestation is AttestationNSM or AttestationSimulated.
	Attestation string
	// DebugMode is true when PCR0, 1 and 2 are all zero (a debug enclave).
	DebugMode bool
	// PCRs are from the enclave's own attestation document, by index.
	PCRs map[int][]byte
	// Keys is the number of keys loaded.
	Keys int
	// Version is signerd's version string.
	Version string
	// Error says why the last provisioning failed; nil unless it did.
	Error *ProvisioningError
	// Pinned is true when signerd accepts an identity only if it is sealed
	// under one of the KMS keys fixed in its image.
	Pinned bool
	// Auth is the state of authenticated signing; nil from a signerd
	// older than it.
	Auth *AuthStatus
}

// ProvisioningError describes a failed provisioning.
type ProvisioningError struct {
	// Step names what failed, e.g. "kms_decrypt", "keyring".
	Step string
	// Message is the error, for the operator.
	Message string
	// KMSCode and KMSMessage are KMS's error code and message, when KMS
	// refused (e.g. "AccessDeniedException").
	KMSCode, KMSMessage string
}

// AuthStatus is the state of the enclave's authentication of sign
// requests.
type AuthStatus struct {
	// RequireAuth: the enclave refuses keyrings that declare no clients.
	RequireAuth bool
	// Policed is true when the loaded keys sign only authenticated
	// requests (their keyrings declare clients).
	Policed bool
	// Clients is the number of clients the loaded keyrings declare, and
	// Audiences their keyrings' audiences, sorted and distinct.
	Clients   int
	Audiences []string
	// ClockOK is false while the enclave's clock disagrees with the NSM's
	// by more than the timestamp window (authenticated requests are then
	// refused with ErrAuthUnavailable), or before the first check.
	ClockOK bool
}

// KeyInfo describes one loaded key.
type KeyInfo struct {
	ID string
	// Algorithm is "ed25519", "ecdsa-p256" or "ecdsa-secp256k1".
	Algorithm string
	// PublicKeyPEM is the PEM SubjectPublicKeyInfo.
	PublicKeyPEM string
	// EthereumAddress is "0x" + 40 hex in EIP-55 case; secp256k1 only.
	EthereumAddress string
}

// KeySet is the loaded keys with the digest the enclave attests for them.
type KeySet struct {
	Keys []KeyInfo
	// Digest is the key-set digest the enclave puts in its attestation
	// documents' user_data (48 bytes; nil from an enclave that sends
	// none): compare it with the one of a verified document to know these
	// are the attested keys.
	Digest []byte
}

// Signature is a signature the enclave made.
type Signature struct {
	KeyID     string
	Algorithm string
	// Signature is 64 bytes for ed25519, ASN.1 DER for ECDSA.
	Signature []byte
	// RecoveryID (0 or 1) is set for ecdsa-secp256k1 only.
	RecoveryID *uint8
	// RSV is r‖s‖v (65 bytes, v = RecoveryID), ecdsa-secp256k1 only.
	RSV []byte
}

// retryAfter converts the enclave's milliseconds.
func retryAfter(ms uint32) time.Duration { return time.Duration(ms) * time.Millisecond }

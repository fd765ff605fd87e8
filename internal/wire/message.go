package wire

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Version is the protocol version this package speaks. Hello offers it and
// HelloAck confirms it.
const Version uint16 = 1

// supportedVersions are the versions a Server accepts, lowest first.
var supportedVersions = []uint16{Version}

// Type is the message type code carried in every frame's envelope. Each
// message struct has exactly one.
type Type uint16

// The message types. Requests go from the host (client) to the enclave
// (server); each request names the one response type it is answered with,
// or an Error.
const (
	TypeError            Type = 1  // *Error, either direction
	TypeHello            Type = 2  // *Hello, client → server, first frame
	TypeHelloAck         Type = 3  // *HelloAck, server → client
	TypeStatusRequest    Type = 16 // *StatusRequest → *Status
	TypeStatus           Type = 17 // *Status
	TypeProvisionRequest Type = 18 // *ProvisionRequest → *Status
	TypeListKeysRequest  Type = 20 // *ListKeysRequest → *KeyList
	TypeKeyList          Type = 21 // *KeyList
	TypeSignRequest      Type = 22 // *SignRequest → *SignResponse
	TypeSignResponse     Type = 23 // *SignResponse
	TypeAttestRequest    Type = 24 // *AttestRequest → *AttestResponse
	TypeAttestResponse   Type = 25 // *AttestResponse
	// TypeAuthSignRequest is answered by *SignResponse, like TypeSignRequest.
	TypeAuthSignRequest  Type = 26 // *AuthSignRequest → *SignResponse
	TypeAuditReadRequest Type = 28 // *AuditReadRequest → *AuditBatch (privileged peers only)
	TypeAuditBatch       Type = 29 // *AuditBatch
	TypeAuditHeadRequest Type = 30 // *AuditHeadRequest → *AuditHead
	TypeAuditHead        Type = 31 // *AuditHead
)

// msgInfo describes one message type. To add a message: a Type constant, a
// struct with a MessageType method, and a row here (and in docs/protocol.md).
type msgInfo struct {
	name    string
	new     func() Message
	request bool // a Server passes it to its Handler
}

var messages = map[Type]msgInfo{
	TypeError:            {"error", func() Message { return new(Error) }, false},
	TypeHello:            {"hello", func() Message { return new(Hello) }, false},
	TypeHelloAck:         {"hello_ack", func() Message { return new(HelloAck) }, false},
	TypeStatusRequest:    {"status_request", func() Message { return new(StatusRequest) }, true},
	TypeStatus:           {"status", func() Message { return new(Status) }, false},
	TypeProvisionRequest: {"provision_request", func() Message { return new(ProvisionRequest) }, true},
	TypeListKeysRequest:  {"list_keys_request", func() Message { return new(ListKeysRequest) }, true},
	TypeKeyList:          {"key_list", func() Message { return new(KeyList) }, false},
	TypeSignRequest:      {"sign_request", func() Message { return new(SignRequest) }, true},
	TypeSignResponse:     {"sign_response", func() Message { return new(SignResponse) }, false},
	TypeAttestRequest:    {"attest_request", func() Message { return new(AttestRequest) }, true},
	TypeAttestResponse:   {"attest_response", func() Message { return new(AttestResponse) }, false},
	TypeAuthSignRequest:  {"auth_sign_request", func() Message { return new(AuthSignRequest) }, true},
	TypeAuditReadRequest: {"audit_read_request", func() Message { return new(AuditReadRequest) }, true},
	TypeAuditBatch:       {"audit_batch", func() Message { return new(AuditBatch) }, false},
	TypeAuditHeadRequest: {"audit_head_request", func() Message { return new(AuditHeadRequest) }, true},
	TypeAuditHead:        {"audit_head", func() Message { return new(AuditHead) }, false},
}

// Types returns every message type this package defines, in ascending order.
func Types() []Type {
	return []Type{
		TypeError, TypeHello, TypeHelloAck,
		TypeStatusRequest, TypeStatus, TypeProvisionRequest,
		TypeListKeysRequest, TypeKeyList, TypeSignRequest, TypeSignResponse,
		TypeAttestRequest, TypeAttestResponse, TypeAuthSignRequest,
		TypeAuditReadRequest, TypeAuditBatch, TypeAuditHeadRequest, TypeAuditHead,
	}
}

// String returns the type's snake_case name, or "type(N)" if unknown.
func (t Type) String() string {
	if mi, ok := messages[t]; ok {
		return mi.name
	}
	return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// IsRequest reports whether t is a request a Server hands to its Handler.
func (t Type) IsRequest() bool { return messages[t].request }

// Message is any message that travels in a frame: a pointer to one of the
// structs in this package.
type Message interface {
	MessageType() Type
}

// Hello is the client's first frame on a connection.
type Hello struct {
	// Versions lists the protocol versions the client speaks.
	Versions []uint16 `cbor:"1,keyasint"`
	// Software names the client's build, for the server's log. Optional.
	Software string `cbor:"2,keyasint,omitempty"`
}

// HelloAck is the server's answer to a Hello it accepts.
type HelloAck struct {
	// Version is the version chosen: the highest both sides speak.
	Version uint16 `cbor:"1,keyasint"`
	// Software names the server's build. Optional.
	Software string `cbor:"2,keyasint,omitempty"`
}

// StatusRequest asks for the enclave's Status.
type StatusRequest struct{}

// State is the enclave's provisioning state.
type State string

const (
	StateWaiting      State = "waiting"      // serving, never provisioned
	StateProvisioning State = "provisioning" // a ProvisionRequest is running
	StateReady        State = "ready"        // a keyring is loaded; signing works
	StateFailed       State = "failed"       // the last provisioning failed; see Status.Error
)

// Attestation modes reported in Status.Attestation.
const (
	AttestationNSM       = "nsm"
	AttestationSimulated = "simulated"
)

// Status is the enclave's state, the answer to StatusRequest and
// ProvisionRequest.
type Status struct {
	State State `cbor:"1,keyasint"`
	// Attestation is AttestationNSM or AttestationSimulated.
	Attestation string `cbor:"2,keyasint"`
	// DebugMode is true when PCR0, 1 and 2 are all zero (a debug enclave).
	DebugMode bool `cbor:"3,keyasint"`
	// PCRs are from the enclave's own attestation document, by index.
	PCRs map[uint16][]byte `cbor:"4,keyasint,omitempty"`
	// Keys is the number of keys loaded.
	Keys int `cbor:"5,keyasint"`
	// Error says why provisioning failed; set only in StateFailed.
	Error *StatusError `cbor:"6,keyasint,omitempty"`
	// Version is signerd's version string.
	Version string `cbor:"7,keyasint,omitempty"`
	// Pinned is true when signerd accepts an identity only if it is
	// sealed under one of Pins.KMSKeys; false (or absent, from a signerd
	// older than pinning) when any KMS key will do. Status passes through
	// the host: a relying party trusts the attested copy, not this one.
	Pinned bool `cbor:"8,keyasint,omitempty"`
	// Pins are what signerd takes keys from, fixed in its image; nil when
	// nothing is pinned.
	Pins *Pins `cbor:"9,keyasint,omitempty"`
	// Auth is the state of authenticated signing; nil from a signerd
	// older than it.
	Auth *AuthStatus `cbor:"10,keyasint,omitempty"`
	// Audit is the state of signerd's audit trail; nil from a signerd
	// without one.
	Audit *AuditStatus `cbor:"11,keyasint,omitempty"`
}

// AuthStatus is the state of signerd's authentication of sign requests
// (docs/protocol.md, Authenticated sign requests).
type AuthStatus struct {
	// RequireAuth is the --require-auth pin: a keyring without clients is
	// refused at provisioning.
	RequireAuth bool `cbor:"1,keyasint,omitempty"`
	// Policed is true when the loaded key set declares clients: its keys
	// sign only authenticated requests.
	Policed bool `cbor:"2,keyasint,omitempty"`
	// Clients is the number of clients the loaded key set declares, and
	// Audiences their keyrings' audiences, sorted and distinct.
	Clients   int      `cbor:"3,keyasint,omitempty"`
	Audiences []string `cbor:"4,keyasint,omitempty"`
	// ClockOK is false while signerd's clock and the NSM's disagree by
	// more than the timestamp window (authenticated requests are then
	// refused with auth_unavailable), or before the first check.
	ClockOK bool `cbor:"5,keyasint,omitempty"`
	// ClockSkewMillis is signerd's clock minus the NSM's at the last
	// check, in milliseconds; ClockChecked is when that was (Unix
	// seconds, signerd's clock; 0 before the first check).
	ClockSkewMillis int64 `cbor:"6,keyasint,omitempty"`
	ClockChecked    int64 `cbor:"7,keyasint,omitempty"`
	// NonceCacheSize is how many nonces signerd remembers now, and
	// NonceCacheCapacity how many it can (then it answers
	// auth_unavailable until some expire).
	NonceCacheSize     int `cbor:"8,keyasint,omitempty"`
	NonceCacheCapacity int `cbor:"9,keyasint,omitempty"`
	// The sign requests refused since signerd started, by reason.
	Unauthenticated uint64 `cbor:"10,keyasint,omitempty"`
	Forbidden       uint64 `cbor:"11,keyasint,omitempty"`
	RateLimited     uint64 `cbor:"12,keyasint,omitempty"`
	AuthUnavailable uint64 `cbor:"13,keyasint,omitempty"`
}

// The states of AuditStatus.State.
const (
	AuditOK       = "ok"       // room in the buffer
	AuditFull     = "full"     // full: signing is refused (audit_unavailable) until it is drained
	AuditDropping = "dropping" // full, --audit-overflow drop: decisions are counted into a gap entry
)

// AuditStatus is the state of signerd's audit trail (docs/audit.md).
type AuditStatus struct {
	// Buffered is how many records (entries and checkpoints) wait to be
	// drained, of Capacity.
	Buffered uint64 `cbor:"1,keyasint"`
	Capacity uint64 `cbor:"2,keyasint"`
	// Unrecorded counts the decisions, since signerd started, that found
	// the buffer full and went into gap entries instead.
	Unrecorded uint64 `cbor:"3,keyasint,omitempty"`
	// Refused counts the sign requests refused with audit_unavailable.
	Refused uint64 `cbor:"4,keyasint,omitempty"`
	// LastSeq is the sequence number of the last entry recorded (0: none).
	LastSeq uint64 `cbor:"5,keyasint,omitempty"`
	// State is AuditOK, AuditFull or AuditDropping.
	State string `cbor:"6,keyasint"`
	// LastDrain is when a reader last drained the buffer, Unix
	// milliseconds; 0 when nobody has since signerd started.
	LastDrain uint64 `cbor:"7,keyasint,omitempty"`
}

// Pins are what a signerd takes keys from, fixed in its image (and so in
// its PCR0).
type Pins struct {
	// KMSKeys are the ARNs of the KMS keys an identity may be sealed
	// under, in the order signerd tries them.
	KMSKeys []string `cbor:"1,keyasint,omitempty"`
	// KeyringSigners are the pin values of the keyring signers whose
	// signatures keyrings need (docs/keyring.md), and KeyringThreshold
	// how many distinct ones must have signed (0 when none are pinned).
	KeyringSigners   []string `cbor:"2,keyasint,omitempty"`
	KeyringThreshold int      `cbor:"3,keyasint,omitempty"`
	// RequireAuth: signerd refuses, at provisioning, a keyring that
	// declares no clients (--require-auth).
	RequireAuth bool `cbor:"4,keyasint,omitempty"`
	// AuditOverflow is "drop" when a full audit buffer records a gap
	// entry and signing goes on; "" (absent) when it refuses to sign.
	AuditOverflow string `cbor:"5,keyasint,omitempty"`
}

// StatusError describes a failed provisioning.
type StatusError struct {
	// Step names what failed, e.g. "kms_decrypt", "keyring".
	Step string `cbor:"1,keyasint"`
	// Message is the error, for the operator.
	Message string `cbor:"2,keyasint"`
	// KMSCode and KMSMessage are KMS's error code and message, when KMS
	// refused (e.g. "AccessDeniedException").
	KMSCode    string `cbor:"3,keyasint,omitempty"`
	KMSMessage string `cbor:"4,keyasint,omitempty"`
	// PCR0 is the PCR0 the enclave presented in its attestation.
	PCR0 []byte `cbor:"5,keyasint,omitempty"`
}

// ProvisionRequest gives the enclave what it needs to unseal its keyrings.
// It carries no addresses: the enclave reaches KMS only through its own
// --kms-proxy.
//
// It carries AWS credentials: String, GoString and LogValue redact them.
type ProvisionRequest struct {
	// Region is the AWS region of the KMS key, e.g. "eu-west-1".
	Region string `cbor:"1,keyasint"`
	// Credentials are the temporary credentials the enclave calls KMS with.
	Credentials Credentials `cbor:"2,keyasint"`
	// IdentityCiphertext is the KMS CiphertextBlob (raw bytes) of the age
	// identity.
	IdentityCiphertext []byte `cbor:"3,keyasint"`
	// EncryptionContext is the KMS encryption context the identity was
	// sealed with, if any.
	EncryptionContext map[string]string `cbor:"4,keyasint,omitempty"`
	// Keyrings are the age-encrypted keyrings, at least one. Provisioning
	// replaces the whole loaded set with these.
	Keyrings []SealedKeyring `cbor:"5,keyasint"`
}

// Credentials are AWS credentials. SecretAccessKey and SessionToken are
// Secrets: they print as REDACTED.
type Credentials struct {
	AccessKeyID     string `cbor:"1,keyasint"`
	SecretAccessKey Secret `cbor:"2,keyasint"`
	SessionToken    Secret `cbor:"3,keyasint,omitempty"`
	// Expiration is when the credentials expire; zero if unknown. On the
	// wire: integer Unix seconds, or null.
	Expiration time.Time `cbor:"4,keyasint"`
}

// SealedKeyring is one age-encrypted keyring file.
type SealedKeyring struct {
	// Name identifies the keyring in errors (e.g. its file name).
	Name string `cbor:"1,keyasint"`
	// Data is the age file, binary or armored.
	Data []byte `cbor:"2,keyasint"`
	// Signature is the keyring's signature file (KEYRING.sig: the signed
	// statement about Data, docs/keyring.md), or empty when there is none.
	// A signerd with pinned keyring signers refuses a keyring without it.
	Signature []byte `cbor:"3,keyasint,omitempty"`
}

// Secret is a string that must never be printed or logged. String, GoString,
// MarshalText and LogValue all give "REDACTED"; string(s) is the value.
type Secret string

const redacted = "REDACTED"

func (Secret) String() string                  { return redacted }
func (Secret) GoString() string                { return redacted }
func (Secret) LogValue() slog.Value            { return slog.StringValue(redacted) }
func (Secret) MarshalText() ([]byte, error)    { return []byte(redacted), nil }
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

// String summarizes the credentials without their secrets.
func (c Credentials) String() string {
	exp := "unknown"
	if !c.Expiration.IsZero() {
		exp = c.Expiration.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("{access_key_id=%s secret_access_key=%s session_token=%s expiration=%s}",
		c.AccessKeyID, redacted, redactedIfSet(c.SessionToken), exp)
}

// GoString is String, so %#v redacts too.
func (c Credentials) GoString() string { return c.String() }

// LogValue renders the credentials without their secrets.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_key_id", c.AccessKeyID),
		slog.String("secret_access_key", redacted),
		slog.String("session_token", redactedIfSet(c.SessionToken)),
		slog.Time("expiration", c.Expiration),
	)
}

func redactedIfSet(s Secret) string {
	if s == "" {
		return ""
	}
	return redacted
}

// String summarizes the request: region, access key id, sizes and names,
// never the secrets.
func (p ProvisionRequest) String() string {
	names := make([]string, len(p.Keyrings))
	for i, k := range p.Keyrings {
		names[i] = fmt.Sprintf("%s(%d bytes)", k.Name, len(k.Data))
		if len(k.Signature) > 0 {
			names[i] = fmt.Sprintf("%s(%d bytes, signature %d bytes)", k.Name, len(k.Data), len(k.Signature))
		}
	}
	return fmt.Sprintf("ProvisionRequest{region=%s credentials=%s identity_ciphertext=%d bytes encryption_context_keys=%d keyrings=[%s]}",
		p.Region, p.Credentials, len(p.IdentityCiphertext), len(p.EncryptionContext), strings.Join(names, " "))
}

// GoString is String, so %#v redacts too.
func (p ProvisionRequest) GoString() string { return p.String() }

// LogValue renders the request without its secrets.
func (p ProvisionRequest) LogValue() slog.Value {
	names := make([]string, len(p.Keyrings))
	for i, k := range p.Keyrings {
		names[i] = k.Name
	}
	return slog.GroupValue(
		slog.String("region", p.Region),
		slog.Any("credentials", p.Credentials),
		slog.Int("identity_ciphertext_bytes", len(p.IdentityCiphertext)),
		slog.Int("encryption_context_keys", len(p.EncryptionContext)),
		slog.Any("keyrings", names),
	)
}

// ListKeysRequest asks for the loaded keys.
type ListKeysRequest struct{}

// KeyList answers ListKeysRequest.
type KeyList struct {
	Keys []KeyInfo `cbor:"1,keyasint"`
	// KeySetDigest is the digest of Keys that signerd attests in its
	// attestation documents (attestation.KeySetDigest), 48 bytes. Absent
	// from older enclaves.
	KeySetDigest []byte `cbor:"2,keyasint,omitempty"`
}

// KeyInfo describes one loaded key.
type KeyInfo struct {
	ID string `cbor:"1,keyasint"`
	// Algorithm is "ed25519", "ecdsa-p256" or "ecdsa-secp256k1".
	Algorithm string `cbor:"2,keyasint"`
	// PublicKeyPEM is the PEM SubjectPublicKeyInfo.
	PublicKeyPEM string `cbor:"3,keyasint"`
	// EthereumAddress is "0x" + 40 hex in EIP-55 case; secp256k1 only.
	EthereumAddress string `cbor:"4,keyasint,omitempty"`
}

// SignRequest asks key KeyID to sign Data, a message or (IsDigest) a digest.
type SignRequest struct {
	KeyID string `cbor:"1,keyasint"`
	// Data is the message, or the digest when IsDigest is set. An empty
	// message is valid.
	Data []byte `cbor:"2,keyasint"`
	// IsDigest says Data is a precomputed digest (32 bytes for the ECDSA
	// algorithms; refused for ed25519).
	IsDigest bool `cbor:"3,keyasint,omitempty"`
}

// AuthSignRequest is an authenticated sign request: the HTTP request
// POST /v1/keys/{id}/sign exactly as the client sent it, which the shim
// forwards unchanged. signerd verifies Authorization (the ES-HMAC-SHA256
// scheme, docs/protocol.md) over Method, Path and Body, and then reads the
// key id from Path and what to sign from Body: nothing the host could
// change unnoticed decides what is signed, or with which key.
type AuthSignRequest struct {
	// Method is the HTTP method as sent ("POST").
	Method string `cbor:"1,keyasint"`
	// Path is the request target as sent: /v1/keys/{id}/sign, the id
	// path-escaped as the client escaped it.
	Path string `cbor:"2,keyasint"`
	// Body is the exact body: {"message": BASE64} or {"digest": BASE64}.
	Body []byte `cbor:"3,keyasint"`
	// Authorization is the Authorization header's value.
	Authorization string `cbor:"4,keyasint"`
}

// SignResponse answers SignRequest and AuthSignRequest.
type SignResponse struct {
	KeyID     string `cbor:"1,keyasint"`
	Algorithm string `cbor:"2,keyasint"`
	// Signature is 64 bytes for ed25519, ASN.1 DER for ECDSA.
	Signature []byte `cbor:"3,keyasint"`
	// RecoveryID (0 or 1) is set for ecdsa-secp256k1 only.
	RecoveryID *uint8 `cbor:"4,keyasint,omitempty"`
	// SignatureRSV is r‖s‖v (65 bytes, v = RecoveryID), secp256k1 only.
	SignatureRSV []byte `cbor:"5,keyasint,omitempty"`
}

// AttestRequest asks for a fresh attestation document.
type AttestRequest struct {
	Nonce    []byte `cbor:"1,keyasint,omitempty"`
	UserData []byte `cbor:"2,keyasint,omitempty"`
}

// AttestResponse carries the attestation document (raw COSE_Sign1 bytes).
type AttestResponse struct {
	Document []byte `cbor:"1,keyasint"`
}

// AuditReadRequest drains the audit trail (docs/audit.md): it asks for
// the records from Cursor on, and tells signerd that every record before
// Cursor of the boot whose audit key is AuditKey is stored, so it may let
// them go. Only a privileged peer may send it.
type AuditReadRequest struct {
	// AuditKey is the boot the cursor belongs to (32 bytes); absent, or
	// another boot's, the cursor is ignored: the batch starts at the oldest
	// record held and nothing is let go.
	AuditKey []byte `cbor:"1,keyasint,omitempty"`
	// Cursor is the position after the last record stored (a record's
	// position: 2·seq for an entry, 2·seq+1 for a checkpoint).
	Cursor uint64 `cbor:"2,keyasint,omitempty"`
	// Max bounds the records in the batch; 0 means signerd's default.
	Max uint32 `cbor:"3,keyasint,omitempty"`
}

// AuditBatch answers AuditReadRequest.
type AuditBatch struct {
	// AuditKey is this boot's audit key (32 bytes).
	AuditKey []byte `cbor:"1,keyasint"`
	// Records are log lines, in order: each exactly the JSON of one entry
	// or checkpoint (docs/audit.md), without the newline.
	Records [][]byte `cbor:"2,keyasint,omitempty"`
	// Next is the cursor to send next: the position after the last record
	// (the request's cursor when there are none).
	Next uint64 `cbor:"3,keyasint"`
	// More is set when records remain after these.
	More bool `cbor:"4,keyasint,omitempty"`
}

// AuditHeadRequest asks for the audit chain's end signed with Nonce.
type AuditHeadRequest struct {
	// Nonce is the caller's random bytes, 16 to 256.
	Nonce []byte `cbor:"1,keyasint"`
}

// AuditHead answers AuditHeadRequest: the chain's end (Seq, Hash) at
// Time, signed with Nonce by the boot's audit key (docs/audit.md).
type AuditHead struct {
	AuditKey []byte `cbor:"1,keyasint"`
	Seq      uint64 `cbor:"2,keyasint"`
	Hash     []byte `cbor:"3,keyasint"`
	// Time is Unix nanoseconds.
	Time  int64  `cbor:"4,keyasint"`
	Nonce []byte `cbor:"5,keyasint"`
	Sig   []byte `cbor:"6,keyasint"`
}

func (*Error) MessageType() Type            { return TypeError }
func (*Hello) MessageType() Type            { return TypeHello }
func (*HelloAck) MessageType() Type         { return TypeHelloAck }
func (*StatusRequest) MessageType() Type    { return TypeStatusRequest }
func (*Status) MessageType() Type           { return TypeStatus }
func (*ProvisionRequest) MessageType() Type { return TypeProvisionRequest }
func (*ListKeysRequest) MessageType() Type  { return TypeListKeysRequest }
func (*KeyList) MessageType() Type          { return TypeKeyList }
func (*SignRequest) MessageType() Type      { return TypeSignRequest }
func (*SignResponse) MessageType() Type     { return TypeSignResponse }
func (*AttestRequest) MessageType() Type    { return TypeAttestRequest }
func (*AttestResponse) MessageType() Type   { return TypeAttestResponse }
func (*AuthSignRequest) MessageType() Type  { return TypeAuthSignRequest }
func (*AuditReadRequest) MessageType() Type { return TypeAuditReadRequest }
func (*AuditBatch) MessageType() Type       { return TypeAuditBatch }
func (*AuditHeadRequest) MessageType() Type { return TypeAuditHeadRequest }
func (*AuditHead) MessageType() Type        { return TypeAuditHead }

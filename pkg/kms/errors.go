package kms

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"
)

// Classes of KMS failure an operator acts on differently. An *Error
// matches one of them with errors.Is.
var (
	// ErrAccessDenied: the key policy (or IAM) does not allow the call for
	// this principal and attestation document.
	ErrAccessDenied = errors.New("access denied")
	// ErrInvalidCiphertext: the ciphertext is damaged, or was encrypted
	// under another key or encryption context.
	ErrInvalidCiphertext = errors.New("invalid ciphertext")
	// ErrThrottled: KMS throttled the call beyond the retries.
	ErrThrottled = errors.New("throttled")
	// ErrBadCredentials: KMS refused the credentials (expired token,
	// unknown access key, bad signature).
	ErrBadCredentials = errors.New("credentials refused")
	// ErrKeyState: the key is disabled, pending deletion or unavailable.
	ErrKeyState = errors.New("key not usable")
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("key not found")
)

// Error is a KMS API error with what the operator needs to fix it.
type Error struct {
	Op      string
	Code    string
	Message string
	// Class is one of the sentinels above, or nil.
	Class error
	// PCR0 is what the enclave presented (hex), DebugMode whether it runs
	// in debug mode; set on access denied.
	PCR0      string
	DebugMode bool
	// Hint says what to do, when known.
	Hint string
	err  error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("kms %s: %s", e.Op, e.Code)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

func (e *Error) Is(target error) bool { return e.Class != nil && target == e.Class }
func (e *Error) Unwrap() error        { return e.err }

// wrap turns an SDK error into an *Error, or adds context to a transport
// error.
func (c *Client) wrap(op string, err error, r *Recipient) error {
	var api smithy.APIError
	if !errors.As(err, &api) {
		if errors.Is(err, ErrProxyUnreachable) {
			return fmt.Errorf("kms %s: %w", op, unwrapTo(err, ErrProxyUnreachable))
		}
		return fmt.Errorf("kms %s: %w", op, err)
	}
	e := &Error{Op: op, Code: api.ErrorCode(), Message: api.ErrorMessage(), err: err}
	switch e.Code {
	case "AccessDeniedException":
		e.Class = ErrAccessDenied
		if r != nil {
			e.PCR0, e.DebugMode = r.pcr0Hex(), r.DebugMode
			if r.DebugMode {
				e.Hint = "this is a debug-mode enclave, which presents an all-zero PCR0: the key policy must allow kms:RecipientAttestation:ImageSha384 = 96 zeros for development (signer policy render --debug); never in production"
			} else {
				e.Hint = "the enclave presented PCR0 " + e.PCR0 + "; the key policy's kms:RecipientAttestation:ImageSha384 likely expects another image: compare it with the EIF's measurements and update the policy (signer policy update); debug-mode enclaves present all zeros"
			}
		}
	case "InvalidCiphertextException", "IncorrectKeyException":
		e.Class = ErrInvalidCiphertext
		e.Hint = "the sealed identity is damaged, or was encrypted under another KMS key or encryption context: seal it again with signer seal"
	case "ThrottlingException", "LimitExceededException":
		e.Class = ErrThrottled
		e.Hint = "KMS throttled the request after retries; try again later"
	case "ExpiredTokenException", "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignature", "IncompleteSignatureException", "InvalidClientTokenId":
		e.Class = ErrBadCredentials
		e.Hint = "KMS refused the provisioned credentials: the host shim must provision fresh instance-role credentials"
	case "KMSInvalidStateException", "DisabledException", "KeyUnavailableException":
		e.Class = ErrKeyState
		e.Hint = "the KMS key is disabled, pending deletion or unavailable: check it with aws kms describe-key"
	case "NotFoundException":
		e.Class = ErrNotFound
	}
	return e
}

// unwrapTo finds the error in err's chain whose text starts with target's,
// so the operator sees the proxy message rather than the SDK's wrapping.
func unwrapTo(err, target error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if strings.HasPrefix(e.Error(), target.Error()) {
			return e
		}
	}
	return err
}

package kms

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
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
	// ErrNoKMSAnswer: something answered the call with an HTTP error that
	// carries no KMS error (a proxy's 502, a gateway's error page): KMS
	// itself may never have seen it.
	ErrNoKMSAnswer = errors.New("no answer from KMS")
)

// Error is a KMS API error with what the operator needs to fix it.
type Error struct {
	Op      string
	Code    string
	Message string
	// Class is one of the sentinels above, or nil.
	Class error
	// PCR0 is what the enclave presented (hex), PCRs the values (hex) it
	// presented for each of PolicyPCRs, DebugMode whether it runs in debug
	// mode; set on access denied.
	PCR0      string
	PCRs      map[int]string
	DebugMode bool
	// KeyARN is the key KMS named in an access-denied message ("… on
	// resource: ARN …"), or "" when it named none.
	KeyARN string
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
		if ne := noKMSAnswer(op, err, c.host); ne != nil {
			return ne
		}
		if errors.Is(err, ErrProxyUnreachable) {
			return fmt.Errorf("kms %s: %w", op, unwrapTo(err, ErrProxyUnreachable))
		}
		return fmt.Errorf("kms %s: %w", op, err)
	}
	e := &Error{Op: op, Code: api.ErrorCode(), Message: api.ErrorMessage(), err: err}
	if e.Code == "" || e.Code == "UnknownError" {
		if ne := noKMSAnswer(op, err, c.host); ne != nil {
			return ne
		}
	}
	switch e.Code {
	case "AccessDeniedException":
		e.Class = ErrAccessDenied
		if m := resourceRE.FindStringSubmatch(e.Message); m != nil {
			e.KeyARN = strings.TrimRight(m[1], ".,;")
		}
		if r != nil {
			e.PCR0, e.DebugMode = r.pcr0Hex(), r.DebugMode
			e.PCRs = make(map[int]string, len(PolicyPCRs))
			for _, i := range PolicyPCRs {
				if v, ok := r.PCRs[i]; ok {
					e.PCRs[i] = hex.EncodeToString(v)
				}
			}
			e.Hint = accessDeniedHint(e)
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

// noKMSAnswer returns an *Error of class ErrNoKMSAnswer when err comes
// from an HTTP answer that carries no KMS error (the SDK could not read an
// error code from it: a proxy's 502, a gateway's page), nil otherwise.
func noKMSAnswer(op string, err error, host string) *Error {
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() < 400 {
		return nil
	}
	return &Error{
		Op: op, Code: fmt.Sprintf("HTTP %d", re.HTTPStatusCode()),
		Message: "not an answer from KMS (no KMS error code in it)",
		Class:   ErrNoKMSAnswer,
		Hint:    "something between the enclave and KMS answered instead: check that the vsock-proxy on the parent runs and reaches " + host + " (signer doctor checks it), then provision again",
		err:     err,
	}
}

// PolicyPCRs are the PCRs an enclave's attestation measures, which key
// policies pin (kms:RecipientAttestation:ImageSha384 is PCR0, and
// kms:RecipientAttestation:PCR<n>): the image (0), kernel and boot ramfs
// (1), application (2), the parent's IAM role (3), its instance id (4),
// the EIF's signing certificate (8). The others are zero unless the
// enclave application extends them.
var PolicyPCRs = []int{0, 1, 2, 3, 4, 8}

// resourceRE finds the key ARN in KMS's access-denied message, "User: …
// is not authorized to perform: kms:Decrypt on resource: ARN because …".
var resourceRE = regexp.MustCompile(`on resource: (arn:[^\s]+)`)

// accessDeniedHint says what the enclave knows when KMS refuses it: what
// it presented, not which condition failed. KMS's refusal does not say,
// and the enclave cannot read the key policy, so the hint blames no PCR; it
// lists them all and sends the operator to signer doctor, which reads the
// policy and evaluates it against these values.
func accessDeniedHint(e *Error) string {
	var b strings.Builder
	if e.DebugMode {
		b.WriteString("this is a debug-mode enclave (PCR0, 1, 2 and 8 all zero), which only a development policy admits (signer policy render --debug; never in production); ")
	}
	b.WriteString("the enclave cannot see the key policy, so it cannot tell which condition failed. It presented")
	sep := " "
	for _, i := range PolicyPCRs {
		v, ok := e.PCRs[i]
		if !ok {
			continue
		}
		if len(v) > 16 {
			v = v[:16] + "…"
		}
		fmt.Fprintf(&b, "%sPCR%d %s", sep, i, v)
		sep = ", "
	}
	b.WriteString(" (full values under pcrs in signer status); the key policy may pin any of them (kms:RecipientAttestation:ImageSha384 is PCR0, :PCR<n> the others), or not admit this instance role at all. ")
	key := e.KeyARN
	if key == "" {
		key = "KEY"
	}
	b.WriteString("Run signer doctor --key-id " + key + " on the parent: it evaluates the key policy against these values and names the condition that fails")
	return b.String()
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

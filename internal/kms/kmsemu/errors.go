package kmsemu

import (
	"fmt"
	"net/http"
)

// APIError is an error answered to the client as KMS answers errors: HTTP
// Status with the body {"__type": Code, "message": Message}. Hooks return
// one to send a specific error; any other error from a hook becomes a 500
// KMSInternalException.
type APIError struct {
	Code    string
	Message string
	// Status is the HTTP status; 0 means 400.
	Status int
}

func (e *APIError) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

func apiErr(code, format string, a ...any) *APIError {
	return &APIError{Code: code, Message: fmt.Sprintf(format, a...), Status: http.StatusBadRequest}
}

// Error codes the emulator answers with. Client errors are 400, as KMS
// sends them (also for authentication failures, which AWS JSON services
// decode by __type whatever the status).
const (
	CodeAccessDenied             = "AccessDeniedException"
	CodeAlreadyExists            = "AlreadyExistsException"
	CodeExpiredToken             = "ExpiredTokenException"
	CodeIncorrectKey             = "IncorrectKeyException"
	CodeInternal                 = "KMSInternalException"
	CodeInvalidAliasName         = "InvalidAliasNameException"
	CodeInvalidCiphertext        = "InvalidCiphertextException"
	CodeInvalidKeyUsage          = "InvalidKeyUsageException"
	CodeInvalidMarker            = "InvalidMarkerException"
	CodeMalformedPolicyDocument  = "MalformedPolicyDocumentException"
	CodeNotFound                 = "NotFoundException"
	CodeSerialization            = "SerializationException"
	CodeThrottling               = "ThrottlingException"
	CodeUnknownOperation         = "UnknownOperationException"
	CodeUnrecognizedClient       = "UnrecognizedClientException"
	CodeUnsupportedOperation     = "UnsupportedOperationException"
	CodeValidation               = "ValidationException"
	CodeRequestEntityTooLarge    = "RequestEntityTooLargeException"
	CodeMissingAuthenticationTok = "MissingAuthenticationTokenException"
)

// validationError phrases a constraint failure as AWS does.
func validationError(format string, a ...any) *APIError {
	return apiErr(CodeValidation, "1 validation error detected: "+format, a...)
}

// checkBlob checks a required blob member's length as KMS's model does.
func checkBlob(member string, b []byte, max int) error {
	switch {
	case b == nil:
		return required(member)
	case len(b) == 0:
		return validationError("Value at '%s' failed to satisfy constraint: Member must have length greater than or equal to 1", member)
	case len(b) > max:
		return validationError("Value at '%s' failed to satisfy constraint: Member must have length less than or equal to %d", member, max)
	}
	return nil
}

func required(member string) *APIError {
	return validationError("Value null at '%s' failed to satisfy constraint: Member must not be null", member)
}

// notModelled is the loud failure for a request feature the emulator does
// not implement: the caller learns that the emulator, not their request,
// is at fault.
func notModelled(what string) *APIError {
	return apiErr(CodeValidation, "kmsemu does not model %s; this emulator refuses rather than ignore it", what)
}

// Package kmsemu is an http.Handler that speaks the AWS KMS JSON protocol
// (awsJson1_1) well enough for the unmodified AWS SDKs and CLI to use it as
// their KMS endpoint in tests and local development.
//
// # What it models
//
// SigV4 authentication (package sigv4) with access keys mapped to principal
// ARNs, fixed ones and those issued while it runs ([Server.LookupCredential]:
// the instance-role credentials of package imdsemu, refused with
// ExpiredTokenException once expired); symmetric SYMMETRIC_DEFAULT keys;
// elliptic-curve signing keys (ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521
// with SIGN_VERIFY, see asymmetric.go); aliases; key policies evaluated by
// package policy for every key operation; the operations CreateKey,
// DescribeKey, ListKeys, CreateAlias, ListAliases, Encrypt, Decrypt,
// GenerateDataKey, GenerateRandom, GetKeyPolicy, PutKeyPolicy, Sign, Verify
// and GetPublicKey. Keys live in the caller's account (from its principal
// ARN) and region (from the SigV4 scope).
//
// # Failing loudly
//
// Like tailscale's testcontrol, the server refuses what it does not model
// instead of pretending: other operations get UnknownOperationException,
// request members it does not implement (grant tokens, DryRun, other key
// specs) get a ValidationException saying so, and the Recipient parameter
// is refused unless [Server.OpenRecipient] is set. Internal failures are
// 500 KMSInternalException with the detail in the log.
//
// # Faults
//
// [Server.ThrottleFraction] answers a share of the requests with KMS's
// ThrottlingException, which the SDKs retry; [Server.Intercept] answers
// any error a test chooses.
//
// # Ciphertext blobs
//
// The emulator's own versioned format (see blob.go): the key id, a nonce
// and AES-256-GCM under the key's material, with the header and the
// canonicalized encryption context as additional data. Blobs are bound to
// the key and context but are not interchangeable with real KMS blobs.
package kmsemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/sigv4"
)

// Credential is an access key the server accepts.
type Credential struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken, when set, must arrive in X-Amz-Security-Token; when
	// empty, a request carrying a token is refused.
	SessionToken string
	// Expires, when not zero, is when the credential stops working: later
	// requests get ExpiredTokenException.
	Expires time.Time
	// Principal is the ARN requests signed with this key act as, e.g.
	// arn:aws:iam::000000000000:role/dev or
	// arn:aws:sts::111122223333:assumed-role/enclave/i-0123. Its account
	// field is the caller's account.
	Principal string
}

// LogValue keeps the secret and token out of logs.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("access_key_id", c.AccessKeyID), slog.String("principal", c.Principal))
}

// DefaultCredential is the credential accepted when Server.Credentials is
// empty: access key "test", secret "test", the usual local-emulator
// convention.
var DefaultCredential = Credential{
	AccessKeyID:     "test",
	SecretAccessKey: "test",
	Principal:       "arn:aws:iam::000000000000:role/dev",
}

// DefaultAccount is the account of a principal whose ARN names none.
const DefaultAccount = "000000000000"

// RecipientInfo is the Recipient parameter of Decrypt, GenerateDataKey and
// GenerateRandom, as sent.
type RecipientInfo struct {
	AttestationDocument    []byte `json:"AttestationDocument,omitempty"`
	KeyEncryptionAlgorithm string `json:"KeyEncryptionAlgorithm,omitempty"`
}

// AttestedRecipient is what Server.OpenRecipient makes of a valid
// attestation document.
type AttestedRecipient struct {
	// ConditionKeys are added to the key-policy evaluation context, e.g.
	// "kms:RecipientAttestation:ImageSha384": {"<hex>"}.
	ConditionKeys map[string][]string
	// Seal encrypts plaintext to the document's public key and returns
	// the CiphertextForRecipient bytes (a CMS EnvelopedData). It is called
	// only after the key policy allowed the request.
	Seal func(plaintext []byte) ([]byte, error)
}

// Server is the KMS emulator. Its zero value is ready for use: it keeps
// state in memory and accepts DefaultCredential. Set fields before the
// first request and do not change them afterwards.
type Server struct {
	// Credentials are the access keys accepted, each mapped to the
	// principal its requests act as. Empty means DefaultCredential only.
	Credentials []Credential

	// LookupCredential, when set, is asked about an access key id that
	// Credentials does not hold: how credentials issued while the server
	// runs (the emulated instance metadata service of package imdsemu)
	// are accepted, each until its Expires. It must be safe for
	// concurrent use. Nil means only Credentials.
	LookupCredential func(accessKeyID string) (Credential, bool)

	// StatePath is the JSON file that holds keys (with their material),
	// policies and aliases across restarts. Empty keeps state in memory.
	// An existing file is read by Init (or on the first request); every
	// change rewrites it atomically (temporary file, fsync, rename), mode
	// 0600.
	StatePath string

	// Log gets a line per request and the reason for every refusal (which
	// statement or condition denied, which SigV4 check failed). Nil
	// discards. Key material and secrets are never logged.
	Log *slog.Logger

	// Now is the clock for SigV4 time checks, credential expiry and
	// creation dates. Nil means time.Now.
	Now func() time.Time

	// Rand is the source of symmetric key material, data keys, random
	// bytes, nonces, key ids and request ids. Nil means crypto/rand. (ECC
	// key pairs and signatures always come from crypto/rand: Go's
	// crypto/ecdsa ignores other readers.)
	Rand io.Reader

	// TrustRoots are attestation roots trusted beside the AWS Nitro root.
	// The server only carries them for OpenRecipient implementations; nil
	// means none extra.
	TrustRoots []*x509.Certificate

	// OpenRecipient verifies the Recipient parameter's attestation
	// document. It runs before the key policy is evaluated; a returned
	// *APIError is sent as is (e.g. AccessDeniedException for a bad
	// signature), any other error becomes KMSInternalException. Nil means
	// every request carrying Recipient is refused with ValidationException
	// ("Recipient is not supported by this emulator build yet").
	OpenRecipient func(ctx context.Context, r RecipientInfo) (*AttestedRecipient, error)

	// ThrottleFraction, between 0 and 1, is the share of authenticated
	// requests answered as KMS answers when it throttles: HTTP 400 with
	// __type ThrottlingException and KMS's message ("You have exceeded the
	// rate at which you may call KMS. …"), which the AWS SDKs and CLI
	// classify as a throttling error and retry with backoff. The throttled requests are spread evenly and
	// deterministically over the server's requests, whatever their
	// operation, the first one throttled: 0.5 throttles the 1st, 3rd, 5th
	// request and so on, 0.25 the 1st, 5th, 9th, 1 every request. A
	// throttled request changes nothing. Zero (the default) throttles
	// none. Init refuses a value outside [0, 1].
	ThrottleFraction float64

	// Intercept, when set, runs for every authenticated request before its
	// operation, with the operation name (e.g. "Decrypt") and the
	// principal. A non-nil result is sent instead of running the
	// operation: this is how tests make KMS misbehave (throttling, 500s,
	// outages). Nil means no interception.
	Intercept func(op, principal string) *APIError

	initOnce sync.Once
	initErr  error

	// throttlePPM is ThrottleFraction in parts per million, and requests
	// counts the authenticated requests of modelled operations.
	throttlePPM uint64
	requests    atomic.Uint64

	mu sync.Mutex
	st *state
}

// maxBody bounds a request body. KMS's largest member, an attestation
// document, is at most 256 KiB (about 350 KiB in base64).
const maxBody = 1 << 20

// Init reads StatePath, creating it if absent, and checks the credentials.
// ServeHTTP calls it on first use; call it first to learn of a bad state
// file or configuration before serving.
func (s *Server) Init() error {
	s.initOnce.Do(func() { s.initErr = s.init() })
	return s.initErr
}

func (s *Server) init() error {
	if f := s.ThrottleFraction; !(f >= 0 && f <= 1) {
		return fmt.Errorf("kmsemu: ThrottleFraction %v: want a fraction from 0 to 1", f)
	}
	s.throttlePPM = uint64(math.Round(s.ThrottleFraction * 1e6))
	if s.throttlePPM == 0 && s.ThrottleFraction > 0 {
		s.throttlePPM = 1
	}
	seen := map[string]bool{}
	for i, c := range s.credentials() {
		if c.AccessKeyID == "" || c.SecretAccessKey == "" {
			return fmt.Errorf("kmsemu: credential %d: access key id and secret must not be empty", i)
		}
		if seen[c.AccessKeyID] {
			return fmt.Errorf("kmsemu: credential %d: access key id %q is given twice", i, c.AccessKeyID)
		}
		seen[c.AccessKeyID] = true
		if _, err := accountOf(c.Principal); err != nil {
			return fmt.Errorf("kmsemu: credential %q: %w", c.AccessKeyID, err)
		}
	}
	st, err := loadState(s.StatePath)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	return nil
}

func (s *Server) credentials() []Credential {
	if len(s.Credentials) == 0 {
		return []Credential{DefaultCredential}
	}
	return s.Credentials
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Server) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *Server) rand() io.Reader {
	if s.Rand == nil {
		return rand.Reader
	}
	return s.Rand
}

// call is one authenticated request.
type call struct {
	ctx       context.Context
	op        string
	principal string
	account   string
	region    string
	body      []byte
	log       *slog.Logger
}

// ServeHTTP answers one KMS API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := s.newUUID()
	w.Header().Set("x-amzn-RequestId", reqID)
	// The SDKs correct their clock skew from Date: it must come from the
	// same clock that checks X-Amz-Date.
	w.Header().Set("Date", s.now().UTC().Format(http.TimeFormat))
	log := s.log().With("request_id", reqID)

	if err := s.Init(); err != nil {
		log.Error("kmsemu is not initialized", "err", err)
		s.writeError(w, log, &APIError{Code: CodeInternal, Message: "the emulator failed to start: see its log", Status: http.StatusInternalServerError})
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		s.writeError(w, log, apiErr(CodeUnknownOperation, "kmsemu models only POST / (awsJson1_1), got %s %s", r.Method, r.URL.Path))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		s.writeError(w, log, apiErr(CodeSerialization, "reading request body: %v", err))
		return
	}
	if len(body) > maxBody {
		s.writeError(w, log, &APIError{Code: CodeRequestEntityTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", maxBody), Status: http.StatusRequestEntityTooLarge})
		return
	}
	c, aerr := s.authenticate(r, body, log)
	if aerr != nil {
		s.writeError(w, log, aerr)
		return
	}
	c.ctx = r.Context()
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "TrentService.")
	if !ok || op == "" {
		s.writeError(w, c.log, apiErr(CodeUnknownOperation, "X-Amz-Target %q: want TrentService.<Operation>", target))
		return
	}
	c.op = op
	c.log = c.log.With("op", op)
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		s.writeError(w, c.log, apiErr(CodeSerialization, "Content-Type %q: want application/x-amz-json-1.1", ct))
		return
	}
	h, ok := operations[op]
	if !ok {
		c.log.Error("operation not modelled by kmsemu", "op", op)
		s.writeError(w, c.log, apiErr(CodeUnknownOperation, "kmsemu does not model operation %s", op))
		return
	}
	if s.throttle() {
		c.log.Info("request throttled (ThrottleFraction)", "throttle_fraction", s.ThrottleFraction)
		s.writeError(w, c.log, &APIError{Code: CodeThrottling, Message: throttlingMessage, Status: http.StatusBadRequest})
		return
	}
	if s.Intercept != nil {
		if e := s.Intercept(op, c.principal); e != nil {
			c.log.Info("request intercepted by hook", "code", e.Code)
			s.writeError(w, c.log, e)
			return
		}
	}
	out, err := h(s, c)
	if err != nil {
		s.writeError(w, c.log, err)
		return
	}
	if out == nil {
		out = struct{}{}
	}
	b, err := json.Marshal(out)
	if err != nil {
		s.writeError(w, c.log, fmt.Errorf("encoding %s response: %w", op, err))
		return
	}
	c.log.Info("kms request", "status", http.StatusOK)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// throttlingMessage is the message real KMS sends with ThrottlingException.
const throttlingMessage = "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."

// throttle counts a request and reports whether ThrottleFraction throttles
// it: request n is throttled when ceil(n·F) passes an integer that
// ceil((n−1)·F) had not, which spreads ⌈N·F⌉ throttles evenly over the
// first N requests, starting with the first. Integer arithmetic in parts
// per million keeps the pattern exact.
func (s *Server) throttle() bool {
	if s.throttlePPM == 0 {
		return false
	}
	n := s.requests.Add(1)
	ceil := func(k uint64) uint64 { return (k*s.throttlePPM + 1e6 - 1) / 1e6 }
	return ceil(n) > ceil(n-1)
}

// authenticate verifies SigV4 and maps the access key to its principal.
// Nothing about keys is looked at before it succeeds.
func (s *Server) authenticate(r *http.Request, body []byte, log *slog.Logger) (*call, *APIError) {
	a, err := sigv4.ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, sigv4Error(err, log)
	}
	log = log.With("access_key_id", a.AccessKeyID)
	var cred *Credential
	for _, c := range s.credentials() {
		if c.AccessKeyID == a.AccessKeyID {
			cred = &c
			break
		}
	}
	if cred == nil && s.LookupCredential != nil {
		if c, ok := s.LookupCredential(a.AccessKeyID); ok {
			if _, err := accountOf(c.Principal); err != nil {
				log.Error("LookupCredential returned a credential with a bad principal", "err", err)
				return nil, &APIError{Code: CodeInternal, Message: "internal error in kmsemu; see its log", Status: http.StatusInternalServerError}
			}
			cred = &c
		}
	}
	if cred == nil {
		log.Warn("unknown access key id")
		return nil, apiErr(CodeUnrecognizedClient, "The security token included in the request is invalid.")
	}
	token := r.Header.Get("X-Amz-Security-Token")
	switch {
	case cred.SessionToken == "" && token != "":
		log.Warn("request carries a session token, the credential has none")
		return nil, apiErr(CodeUnrecognizedClient, "The security token included in the request is invalid.")
	case cred.SessionToken != "" && !sameSecret(token, cred.SessionToken):
		log.Warn("session token missing or wrong", "token_present", token != "")
		return nil, apiErr(CodeUnrecognizedClient, "The security token included in the request is invalid.")
	}
	now := s.now()
	if !cred.Expires.IsZero() && !now.Before(cred.Expires) {
		log.Warn("credential expired", "expired_at", cred.Expires)
		return nil, apiErr(CodeExpiredToken, "The security token included in the request is expired")
	}
	if err := sigv4.Verify(r, body, a, sigv4.Check{Secret: cred.SecretAccessKey, Service: "kms", Now: now}); err != nil {
		return nil, sigv4Error(err, log)
	}
	account, _ := accountOf(cred.Principal) // checked by Init or above
	return &call{
		principal: cred.Principal,
		account:   account,
		region:    a.Region,
		body:      body,
		log:       log.With("principal", cred.Principal, "region", a.Region),
	}, nil
}

// sameSecret compares a secret the client sent with the expected one in
// time that depends on neither: both are hashed first, so even their
// lengths stay hidden from a caller timing the answers.
func sameSecret(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func sigv4Error(err error, log *slog.Logger) *APIError {
	var se *sigv4.Error
	if !errors.As(err, &se) {
		return &APIError{Code: CodeInternal, Message: err.Error(), Status: http.StatusInternalServerError}
	}
	log.Warn("sigv4 verification failed", "code", se.Kind.Code(), "why", se.Message)
	return apiErr(se.Kind.Code(), "%s", se.Message)
}

// accountOf returns the account field of an ARN
// (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE), or DefaultAccount when
// it is empty.
func accountOf(arn string) (string, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[5] == "" {
		return "", fmt.Errorf("principal %q is not an ARN (want arn:aws:iam::ACCOUNT:role/NAME or similar)", arn)
	}
	if parts[4] == "" {
		return DefaultAccount, nil
	}
	if len(parts[4]) != 12 || strings.Trim(parts[4], "0123456789") != "" {
		return "", fmt.Errorf("principal %q: account %q is not 12 digits", arn, parts[4])
	}
	return parts[4], nil
}

func (s *Server) writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	var e *APIError
	if !errors.As(err, &e) {
		log.Error("internal error", "err", err)
		e = &APIError{Code: CodeInternal, Message: "internal error in kmsemu; see its log", Status: http.StatusInternalServerError}
	}
	status := e.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	if status >= 500 {
		log.Error("kms request failed", "status", status, "code", e.Code, "message", e.Message)
	} else {
		log.Info("kms request refused", "status", status, "code", e.Code, "message", e.Message)
	}
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(map[string]string{"__type": e.Code, "message": e.Message})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// decode reads the request body into v, refusing members v does not have:
// a member the emulator does not know is a feature it does not model.
func decode(c *call, v any) error {
	body := bytes.TrimSpace(c.body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return notModelled(fmt.Sprintf("the %s member %s", c.op, name))
		}
		return apiErr(CodeSerialization, "%s request body: %v", c.op, err)
	}
	if dec.More() {
		return apiErr(CodeSerialization, "%s request body: data after the JSON object", c.op)
	}
	return nil
}

// newUUID returns a random (version 4) UUID from s.Rand.
func (s *Server) newUUID() string {
	var b [16]byte
	if _, err := io.ReadFull(s.rand(), b[:]); err != nil {
		panic(fmt.Sprintf("kmsemu: reading randomness: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

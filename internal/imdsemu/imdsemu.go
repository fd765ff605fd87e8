// Package imdsemu is an http.Handler that answers as the EC2 instance
// metadata service (IMDSv2) of an instance with a role attached, well
// enough for the unmodified AWS SDKs (their instance-role credentials
// provider) and signer doctor to use it on loopback, in tests and local
// development. The credentials it hands out expire and are replaced as
// EC2 replaces them, on a lifetime scaled down at will; [Server.Lookup]
// lets the KMS emulator (package kmsemu) accept exactly those, until they
// expire.
//
// # What it models
//
// IMDSv2 with session tokens required: PUT /latest/api/token with
// X-aws-ec2-metadata-token-ttl-seconds (1 to 21600) returns a token, and
// every GET must carry a live one in X-aws-ec2-metadata-token, else 401.
// A token request carrying X-Forwarded-For is refused (403), as EC2
// refuses one that went through a proxy. The paths:
//
//	/latest/meta-data/iam/security-credentials/       the role's name
//	/latest/meta-data/iam/security-credentials/ROLE   the credentials document
//	/latest/meta-data/iam/info                        the instance profile
//	/latest/meta-data/instance-id
//	/latest/meta-data/placement/region
//	/latest/meta-data/placement/availability-zone
//	/latest/dynamic/instance-identity/document        account, region, instance
//
// and the listings of their directories. Anything else is 404; methods
// other than GET, HEAD and the token PUT are 405.
//
// # Rotation, scaled
//
// EC2 promises new instance-role credentials at least five minutes before
// the old ones expire. The emulator issues a set valid for Lifetime and
// makes the next set available once the current one is past half its
// lifetime: with a lifetime of 6 hours, 3 hours before expiry; with 30
// seconds, 15 seconds before. A client that fetches again within the
// second half always finds credentials valid for at least another half
// lifetime, as on EC2. The old set stays valid until its own expiration.
//
// # Never in production
//
// The credentials are random strings that only a KMS emulator given
// Lookup accepts. The package is wired only into `signer kms-emulator`,
// which listens on loopback; nothing in `signer serve` or signerd serves
// or trusts it.
package imdsemu

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Credentials are one set of instance-role credentials as issued.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Issued          time.Time
	Expiration      time.Time
	// Principal is the ARN requests signed with them act as:
	// arn:aws:sts::ACCOUNT:assumed-role/ROLE/INSTANCE_ID, as for EC2
	// instance-role sessions.
	Principal string
}

// LogValue keeps the secret and the token out of logs.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("access_key_id", c.AccessKeyID),
		slog.Time("expiration", c.Expiration), slog.String("principal", c.Principal))
}

// String keeps the secret and the token out of formatted output.
func (c Credentials) String() string {
	return fmt.Sprintf("{AccessKeyID:%s SecretAccessKey:REDACTED SessionToken:REDACTED Expiration:%s Principal:%s}",
		c.AccessKeyID, c.Expiration.UTC().Format(time.RFC3339), c.Principal)
}

// Defaults of the optional Server fields.
const (
	DefaultAccount  = "000000000000"
	DefaultRegion   = "us-east-1"
	DefaultLifetime = 6 * time.Hour
	// MinLifetime is the shortest Lifetime: credentials are stamped in
	// whole seconds, as EC2 stamps them.
	MinLifetime = 2 * time.Second
)

// IMDSv2's limits on session tokens.
const (
	maxTokenTTL = 21600 // seconds
	// maxTokens bounds the live session tokens kept; the oldest go first.
	maxTokens = 4096
	// maxIssued bounds the credential sets remembered for Lookup; older
	// ones are then unknown access keys rather than expired ones.
	maxIssued = 1024
)

// Server is the emulated instance metadata service. Set the fields before
// the first request and do not change them afterwards; Init checks them.
type Server struct {
	// Role is the name of the instance's role, e.g. "dev". Required.
	Role string
	// Account is the role's 12-digit account; empty means DefaultAccount.
	Account string
	// Region is the instance's region; empty means DefaultRegion.
	Region string
	// InstanceID is the instance's id (i- and 8 or 17 hex digits); empty
	// means a random one, chosen by Init.
	InstanceID string
	// Lifetime is how long each set of credentials is valid; zero means
	// DefaultLifetime. At least MinLifetime. A new set is made available
	// once the current one is past half of it.
	Lifetime time.Duration
	// Log gets a line per set of credentials issued (never the secret or
	// token) and per refused request. Nil discards.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the source of credentials, tokens and the instance id; nil
	// means crypto/rand.
	Rand io.Reader

	initOnce sync.Once
	initErr  error
	started  time.Time

	mu      sync.Mutex
	current *Credentials
	issued  map[string]*Credentials // by access key id
	order   []string                // access key ids, oldest first
	tokens  map[string]time.Time    // session token → expiry
}

// Init checks the configuration and fills in the defaults. ServeHTTP and
// Lookup call it on first use; call it first to learn of a bad
// configuration before serving.
func (s *Server) Init() error {
	s.initOnce.Do(func() { s.initErr = s.init() })
	return s.initErr
}

func (s *Server) init() error {
	if s.Role == "" || strings.ContainsAny(s.Role, "/: \t\n") || len(s.Role) > 64 {
		return fmt.Errorf("imdsemu: role %q: want a role name (at most 64 characters, no '/', ':' or spaces), e.g. dev", s.Role)
	}
	if s.Account == "" {
		s.Account = DefaultAccount
	}
	if len(s.Account) != 12 || strings.Trim(s.Account, "0123456789") != "" {
		return fmt.Errorf("imdsemu: account %q: want 12 digits", s.Account)
	}
	if s.Region == "" {
		s.Region = DefaultRegion
	}
	if s.Lifetime == 0 {
		s.Lifetime = DefaultLifetime
	}
	if s.Lifetime < MinLifetime {
		return fmt.Errorf("imdsemu: lifetime %s: want at least %s", s.Lifetime, MinLifetime)
	}
	if s.InstanceID == "" {
		s.InstanceID = "i-" + s.randomHex(17)
	} else if !validInstanceID(s.InstanceID) {
		return fmt.Errorf("imdsemu: instance id %q: want i- and 8 or 17 hex digits", s.InstanceID)
	}
	s.started = s.now().UTC().Truncate(time.Second)
	s.issued = map[string]*Credentials{}
	s.tokens = map[string]time.Time{}
	return nil
}

func validInstanceID(id string) bool {
	hexPart, ok := strings.CutPrefix(id, "i-")
	if !ok || (len(hexPart) != 8 && len(hexPart) != 17) {
		return false
	}
	return strings.Trim(hexPart, "0123456789abcdef") == ""
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

func (s *Server) read(b []byte) {
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, b); err != nil {
		panic(fmt.Sprintf("imdsemu: reading randomness: %v", err))
	}
}

func (s *Server) randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	s.read(b)
	return hex.EncodeToString(b)[:n]
}

// randomFrom returns n characters of alphabet, chosen uniformly.
func (s *Server) randomFrom(alphabet string, n int) string {
	out := make([]byte, n)
	var b [1]byte
	for i := 0; i < n; {
		s.read(b[:])
		// Reject the top of the byte range so every character is equally
		// likely.
		if int(b[0]) >= 256-256%len(alphabet) {
			continue
		}
		out[i] = alphabet[int(b[0])%len(alphabet)]
		i++
	}
	return string(out)
}

// Principal is the ARN the issued credentials act as.
func (s *Server) Principal() string {
	return "arn:aws:sts::" + s.Account + ":assumed-role/" + s.Role + "/" + s.InstanceID
}

// Current returns the credentials a request would get now, issuing a new
// set if the current one is past half its lifetime.
func (s *Server) Current() (Credentials, error) {
	if err := s.Init(); err != nil {
		return Credentials{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.currentLocked(), nil
}

func (s *Server) currentLocked() *Credentials {
	// Stamped in whole seconds, as the RFC 3339 document carries them, so
	// what the KMS side enforces is exactly what the client was told.
	now := s.now().UTC().Truncate(time.Second)
	if c := s.current; c != nil && now.Before(c.Issued.Add(s.Lifetime/2)) {
		return c
	}
	c := &Credentials{
		AccessKeyID:     "ASIA" + s.randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
		SecretAccessKey: s.randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40),
		SessionToken:    s.sessionToken(),
		Issued:          now,
		Expiration:      now.Add(s.Lifetime).Truncate(time.Second),
		Principal:       s.Principal(),
	}
	s.current = c
	s.issued[c.AccessKeyID] = c
	s.order = append(s.order, c.AccessKeyID)
	if len(s.order) > maxIssued {
		delete(s.issued, s.order[0])
		s.order = s.order[1:]
	}
	s.log().Info("issued instance-role credentials", "credentials", *c, "lifetime", s.Lifetime,
		"next_available", c.Issued.Add(s.Lifetime/2))
	return c
}

func (s *Server) sessionToken() string {
	b := make([]byte, 96)
	s.read(b)
	return "IQoJb3JpZ2luX2VtdW" + base64.StdEncoding.EncodeToString(b)
}

// Lookup returns the credentials issued with this access key id, expired
// ones included (the KMS emulator answers those ExpiredTokenException).
// Safe for concurrent use.
func (s *Server) Lookup(accessKeyID string) (Credentials, bool) {
	if s.Init() != nil {
		return Credentials{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.issued[accessKeyID]
	if !ok {
		return Credentials{}, false
	}
	return *c, true
}

// Issued returns every set of credentials issued so far, oldest first
// (at most the last 1024).
func (s *Server) Issued() []Credentials {
	if s.Init() != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Credentials, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, *s.issued[id])
	}
	return out
}

const (
	tokenPath    = "/latest/api/token"
	tokenTTLHdr  = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	tokenHdr     = "X-Aws-Ec2-Metadata-Token"
	credsDir     = "/latest/meta-data/iam/security-credentials/"
	metadataRoot = "/latest/"
)

// ServeHTTP answers one metadata request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.Init(); err != nil {
		s.log().Error("imdsemu is not initialized", "err", err)
		http.Error(w, "the emulated IMDS failed to start: see its log", http.StatusInternalServerError)
		return
	}
	if r.URL.Path == tokenPath {
		s.serveToken(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.refuse(w, r, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if !s.validToken(r.Header.Get(tokenHdr)) {
		// IMDSv2 required (http-tokens required): no token, an unknown
		// one or an expired one is 401.
		s.refuse(w, r, http.StatusUnauthorized, "missing, unknown or expired session token (IMDSv2: PUT "+tokenPath+" first)")
		return
	}
	body, ok := s.document(r.URL.Path)
	if !ok {
		s.refuse(w, r, http.StatusNotFound, "not found")
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, why string) {
	s.log().Info("imds request refused", "method", r.Method, "path", r.URL.Path, "status", status, "why", why)
	http.Error(w, http.StatusText(status), status)
}

// serveToken answers PUT /latest/api/token.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", "PUT")
		s.refuse(w, r, http.StatusMethodNotAllowed, "the token path takes PUT")
		return
	}
	if r.Header.Get("X-Forwarded-For") != "" {
		s.refuse(w, r, http.StatusForbidden, "token requests through a proxy (X-Forwarded-For) are refused")
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(tokenTTLHdr))
	if err != nil || ttl < 1 || ttl > maxTokenTTL {
		s.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("%s must be 1 to %d seconds, got %q", tokenTTLHdr, maxTokenTTL, r.Header.Get(tokenTTLHdr)))
		return
	}
	b := make([]byte, 32)
	s.read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	now := s.now()
	s.mu.Lock()
	for t, exp := range s.tokens {
		if !now.Before(exp) {
			delete(s.tokens, t)
		}
	}
	if len(s.tokens) >= maxTokens {
		var oldest string
		for t, exp := range s.tokens {
			if oldest == "" || exp.Before(s.tokens[oldest]) {
				oldest = t
			}
		}
		delete(s.tokens, oldest)
	}
	s.tokens[tok] = now.Add(time.Duration(ttl) * time.Second)
	s.mu.Unlock()
	w.Header().Set(tokenTTLHdr, strconv.Itoa(ttl))
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, tok)
}

func (s *Server) validToken(tok string) bool {
	if tok == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[tok]
	return ok && s.now().Before(exp)
}

// document returns the body at path: a leaf, or a directory's listing.
func (s *Server) document(path string) ([]byte, bool) {
	leaves := s.leaves()
	if f, ok := leaves[path]; ok {
		return f(), true
	}
	if !strings.HasSuffix(path, "/") || !strings.HasPrefix(path, metadataRoot) {
		return nil, false
	}
	// A directory lists its entries, subdirectories with a trailing '/'.
	seen := map[string]bool{}
	for leaf := range leaves {
		rest, ok := strings.CutPrefix(leaf, path)
		if !ok || rest == "" {
			continue
		}
		if i := strings.Index(rest, "/"); i >= 0 {
			rest = rest[:i+1]
		}
		seen[rest] = true
	}
	if len(seen) == 0 {
		return nil, false
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return []byte(strings.Join(names, "\n")), true
}

// leaves are the documents served, by path.
func (s *Server) leaves() map[string]func() []byte {
	text := func(v string) func() []byte { return func() []byte { return []byte(v) } }
	js := func(v func() any) func() []byte {
		return func() []byte {
			b, err := json.MarshalIndent(v(), "", "  ")
			if err != nil {
				panic(err) // maps of strings always marshal
			}
			return b
		}
	}
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	return map[string]func() []byte{
		credsDir + s.Role: js(func() any {
			s.mu.Lock()
			c := *s.currentLocked()
			s.mu.Unlock()
			return map[string]string{
				"Code": "Success", "LastUpdated": stamp(c.Issued), "Type": "AWS-HMAC",
				"AccessKeyId": c.AccessKeyID, "SecretAccessKey": c.SecretAccessKey, "Token": c.SessionToken,
				"Expiration": stamp(c.Expiration),
			}
		}),
		"/latest/meta-data/iam/info": js(func() any {
			return map[string]string{
				"Code": "Success", "LastUpdated": stamp(s.started),
				"InstanceProfileArn": "arn:aws:iam::" + s.Account + ":instance-profile/" + s.Role,
				"InstanceProfileId":  "AIPA" + strings.ToUpper(strings.TrimPrefix(s.InstanceID, "i-")),
			}
		}),
		"/latest/meta-data/instance-id":                 text(s.InstanceID),
		"/latest/meta-data/placement/region":            text(s.Region),
		"/latest/meta-data/placement/availability-zone": text(s.Region + "a"),
		"/latest/dynamic/instance-identity/document": js(func() any {
			return map[string]string{
				"accountId": s.Account, "region": s.Region, "availabilityZone": s.Region + "a",
				"instanceId": s.InstanceID, "pendingTime": stamp(s.started), "version": "2017-09-30",
			}
		}),
	}
}

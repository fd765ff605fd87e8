// Package sigv4 verifies AWS Signature Version 4 on incoming HTTP requests,
// the way an AWS service does: generically over whatever headers the client
// listed in SignedHeaders.
//
// # Scope
//
// Only the Authorization-header form (AWS4-HMAC-SHA256) is verified; the
// presigned-URL form (X-Amz-Signature in the query) is refused as
// incomplete. The payload hash is always computed from the body received:
// an x-amz-content-sha256 header, signed or not, must equal it. Headers
// AWS requires to be signed (host, the date, content-type and every other
// x-amz-* header present, x-amz-security-token included) must be among
// SignedHeaders.
// The canonical URI follows the rule for every service but S3: the escaped
// path is escaped once more.
//
// The algorithm follows AWS's "Create a signed AWS API request"
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html)
// and is checked against AWS's published SigV4 test-suite vectors and the
// aws-sdk-go-v2 signer.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the only signing algorithm verified here.
const Algorithm = "AWS4-HMAC-SHA256"

// TimeFormat is the layout of X-Amz-Date.
const TimeFormat = "20060102T150405Z"

// DefaultMaxSkew is how far the request time may be from the server's clock
// in either direction, as AWS allows.
const DefaultMaxSkew = 15 * time.Minute

// Kind classifies a verification failure. Each kind maps onto the error
// code AWS JSON services answer with.
type Kind int

const (
	// MissingAuthentication: no Authorization header at all.
	MissingAuthentication Kind = iota + 1
	// Incomplete: the Authorization header or a required part of the
	// request (date, signed host) is malformed or absent.
	Incomplete
	// Mismatch: the signature does not match, or the credential scope is
	// wrong (date, service, terminator).
	Mismatch
	// Expired: the request time is outside the allowed skew.
	Expired
)

// Code returns the AWS error code for k.
func (k Kind) Code() string {
	switch k {
	case MissingAuthentication:
		return "MissingAuthenticationTokenException"
	case Incomplete:
		return "IncompleteSignatureException"
	case Mismatch, Expired:
		return "InvalidSignatureException"
	}
	return "InvalidSignatureException"
}

// Error is every error this package returns. Its message is meant for the
// client, as AWS would phrase it, and never contains the secret key.
type Error struct {
	Kind    Kind
	Message string
}

func (e *Error) Error() string { return "sigv4: " + e.Message }

func errorf(k Kind, format string, a ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, a...)}
}

// Authorization is a parsed Authorization header.
type Authorization struct {
	AccessKeyID string
	// Date (YYYYMMDD), Region and Service are the credential scope.
	Date    string
	Region  string
	Service string
	// SignedHeaders are the lowercase header names, in the order given.
	SignedHeaders []string
	// Signature is the lowercase hex signature.
	Signature string
}

// Scope returns the credential scope, DATE/REGION/SERVICE/aws4_request.
func (a *Authorization) Scope() string {
	return a.Date + "/" + a.Region + "/" + a.Service + "/aws4_request"
}

// ParseAuthorization parses the value of an Authorization header:
//
//	AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=HEX
func ParseAuthorization(h string) (*Authorization, error) {
	if h == "" {
		return nil, errorf(MissingAuthentication, "Missing Authentication Token")
	}
	alg, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || alg != Algorithm {
		return nil, errorf(Incomplete, "Authorization header must start with %q", Algorithm+" ")
	}
	params := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, errorf(Incomplete, "Authorization header parameter %q is not KEY=VALUE", part)
		}
		if _, dup := params[k]; dup {
			return nil, errorf(Incomplete, "Authorization header repeats parameter %q", k)
		}
		params[k] = v
	}
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if params[k] == "" {
			return nil, errorf(Incomplete, "Authorization header requires '%s' parameter", k)
		}
	}
	cred := strings.Split(params["Credential"], "/")
	if len(cred) != 5 {
		return nil, errorf(Incomplete, "Credential must have 5 slash-separated parts (AKID/DATE/REGION/SERVICE/aws4_request), got %d", len(cred))
	}
	a := &Authorization{
		AccessKeyID: cred[0],
		Date:        cred[1],
		Region:      cred[2],
		Service:     cred[3],
		Signature:   params["Signature"],
	}
	if a.AccessKeyID == "" || a.Region == "" || a.Service == "" {
		return nil, errorf(Incomplete, "Credential has an empty access key, region or service")
	}
	if cred[4] != "aws4_request" {
		return nil, errorf(Mismatch, "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'", cred[4])
	}
	if _, err := time.Parse("20060102", a.Date); err != nil {
		return nil, errorf(Mismatch, "Credential should be scoped to a valid date (YYYYMMDD), got %q", a.Date)
	}
	if len(a.Signature) != 64 || strings.ToLower(a.Signature) != a.Signature {
		return nil, errorf(Incomplete, "Signature must be 64 lowercase hex digits")
	}
	if _, err := hex.DecodeString(a.Signature); err != nil {
		return nil, errorf(Incomplete, "Signature must be 64 lowercase hex digits")
	}
	for name := range strings.SplitSeq(params["SignedHeaders"], ";") {
		if name == "" || strings.ToLower(name) != name {
			return nil, errorf(Incomplete, "SignedHeaders must be lowercase names separated by ';', got %q", params["SignedHeaders"])
		}
		a.SignedHeaders = append(a.SignedHeaders, name)
	}
	if !contains(a.SignedHeaders, "host") {
		return nil, errorf(Incomplete, "SignedHeaders must include 'host'")
	}
	return a, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// RequestTime returns the request's signing time, from X-Amz-Date or else
// Date (RFC 1123), which must be among the signed headers.
func RequestTime(r *http.Request, a *Authorization) (time.Time, error) {
	if v := r.Header.Get("X-Amz-Date"); v != "" {
		if !contains(a.SignedHeaders, "x-amz-date") {
			return time.Time{}, errorf(Incomplete, "x-amz-date must be a signed header")
		}
		t, err := time.Parse(TimeFormat, v)
		if err != nil {
			return time.Time{}, errorf(Incomplete, "X-Amz-Date %q is not in the form YYYYMMDDTHHMMSSZ", v)
		}
		return t, nil
	}
	if v := r.Header.Get("Date"); v != "" {
		if !contains(a.SignedHeaders, "date") {
			return time.Time{}, errorf(Incomplete, "date must be a signed header")
		}
		t, err := http.ParseTime(v)
		if err != nil {
			return time.Time{}, errorf(Incomplete, "Date %q is not an HTTP date", v)
		}
		return t.UTC(), nil
	}
	return time.Time{}, errorf(Incomplete, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header")
}

// Check holds what Verify needs besides the request.
type Check struct {
	// Secret is the secret access key of the Authorization's access key id.
	Secret string
	// Service is the service the scope must name, e.g. "kms". Empty
	// accepts any.
	Service string
	// Now is the server's clock; zero means time.Now().
	Now time.Time
	// MaxSkew bounds |request time - Now|; zero means DefaultMaxSkew.
	MaxSkew time.Duration
}

// Verify checks the SigV4 signature of r, whose body was already read into
// body, against a (from ParseAuthorization) and c. Besides the signature it
// checks that every header AWS requires to be signed is (see
// CheckSignedHeaders).
func Verify(r *http.Request, body []byte, a *Authorization, c Check) error {
	if c.Service != "" && a.Service != c.Service {
		return errorf(Mismatch, "Credential should be scoped to correct service: '%s'.", c.Service)
	}
	if err := CheckSignedHeaders(r, a); err != nil {
		return err
	}
	t, err := RequestTime(r, a)
	if err != nil {
		return err
	}
	if got := t.Format("20060102"); got != a.Date {
		return errorf(Mismatch, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", a.Date, got, t.Format(TimeFormat))
	}
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	skew := c.MaxSkew
	if skew == 0 {
		skew = DefaultMaxSkew
	}
	if t.Before(now.Add(-skew)) {
		return errorf(Expired, "Signature expired: %s is now earlier than %s (%s - %s.)",
			t.Format(TimeFormat), now.Add(-skew).Format(TimeFormat), now.Format(TimeFormat), skewText(skew))
	}
	if t.After(now.Add(skew)) {
		return errorf(Expired, "Signature not yet current: %s is still later than %s (%s + %s.)",
			t.Format(TimeFormat), now.Add(skew).Format(TimeFormat), now.Format(TimeFormat), skewText(skew))
	}
	payloadHash := PayloadHash(body)
	if v := r.Header.Get("X-Amz-Content-Sha256"); v != "" && v != payloadHash {
		return errorf(Mismatch, "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	creq, err := CanonicalRequest(r, a.SignedHeaders, payloadHash)
	if err != nil {
		return err
	}
	sts := StringToSign(t, a.Scope(), creq)
	want := Sign(SigningKey(c.Secret, a.Date, a.Region, a.Service), sts)
	if !hmac.Equal([]byte(want), []byte(a.Signature)) {
		return errorf(Mismatch, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return nil
}

// CheckSignedHeaders refuses a request that carries, outside its
// SignedHeaders, a header AWS requires to be signed. AWS's SigV4 reference
// (IAM User Guide, "Create a signed AWS API request", the canonical headers
// step) says the canonical headers must include host, content-type when
// the request has one, and every x-amz-* header the request carries, naming
// x-amz-security-token for temporary credentials. Unsigned, those headers
// could be changed in transit without breaking the signature: for the JSON
// protocol, x-amz-target picks the operation and content-type the
// protocol. host is checked by ParseAuthorization, x-amz-date (or date) by
// RequestTime. x-amz-content-sha256 alone may go unsigned (S3 tolerates it
// so): Verify compares it with the body's hash whether signed or not.
//
// AWS documents the rule, not the answer to a request breaking it; S3
// answers AccessDenied "There were headers present in the request which
// were not signed". This package answers Incomplete
// (IncompleteSignatureException), the class of a request whose signing
// information is incomplete. The unmodified Go SDK, AWS CLI, boto3 and the
// Nitro Enclaves SDK for C sign all of these headers.
func CheckSignedHeaders(r *http.Request, a *Authorization) error {
	var missing []string
	for name := range r.Header {
		lower := strings.ToLower(name)
		required := lower == "content-type" ||
			strings.HasPrefix(lower, "x-amz-") && lower != "x-amz-content-sha256"
		if required && !contains(a.SignedHeaders, lower) {
			missing = append(missing, lower)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	return errorf(Incomplete, "There were headers present in the request which were not signed: %s (content-type and every x-amz-* header must be in SignedHeaders)", strings.Join(missing, ", "))
}

func skewText(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.Itoa(int(d/time.Minute)) + " min"
	}
	return d.String()
}

// PayloadHash is the lowercase hex SHA-256 of body.
func PayloadHash(body []byte) string {
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}

// CanonicalRequest builds the canonical request of r over signedHeaders
// (lowercase names, in the order the client listed them):
//
//	METHOD \n CANONICAL_URI \n CANONICAL_QUERY \n CANONICAL_HEADERS \n SIGNED_HEADERS \n PAYLOAD_HASH
//
// A signed header that the request lacks is an Incomplete error.
func CanonicalRequest(r *http.Request, signedHeaders []string, payloadHash string) (string, error) {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(canonicalURI(r))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery))
	b.WriteByte('\n')
	for _, name := range signedHeaders {
		values, ok := headerValues(r, name)
		if !ok {
			return "", errorf(Incomplete, "signed header %q is not in the request", name)
		}
		b.WriteString(name)
		b.WriteByte(':')
		for i, v := range values {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(trimValue(v))
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signedHeaders, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String(), nil
}

// headerValues returns the values of a header as the client sent it. Go's
// server moves Host into r.Host and may drop Content-Length in favour of
// r.ContentLength, so those two come from the request's fields.
func headerValues(r *http.Request, name string) ([]string, bool) {
	switch name {
	case "host":
		if r.Host == "" {
			return nil, false
		}
		return []string{r.Host}, true
	case "content-length":
		if v := r.Header.Values("Content-Length"); len(v) > 0 {
			return v, true
		}
		if r.ContentLength >= 0 {
			return []string{strconv.FormatInt(r.ContentLength, 10)}, true
		}
		return nil, false
	}
	v := r.Header.Values(name)
	if len(v) == 0 {
		// Header.Values canonicalizes the name; a client may have sent a
		// name Go could not canonicalize (e.g. with an underscore).
		for k, vv := range r.Header {
			if strings.ToLower(k) == name {
				v = append(v, vv...)
			}
		}
	}
	return v, len(v) > 0
}

// trimValue trims a header value and collapses runs of spaces into one.
func trimValue(v string) string {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, "  ") {
		return v
	}
	var b strings.Builder
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(c)
	}
	return b.String()
}

func canonicalURI(r *http.Request) string {
	p := r.URL.EscapedPath()
	if r.URL.Opaque != "" {
		p = r.URL.Opaque
	}
	if p == "" {
		p = "/"
	}
	// Every service but S3 escapes the (already escaped) path once more.
	return escape(p, false)
}

func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var pairs []kv
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		pairs = append(pairs, kv{escape(unescape(k), true), escape(unescape(v), true)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

// unescape decodes %XX sequences and '+' as space, keeping malformed
// escapes as they are.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '+':
			b.WriteByte(' ')
		case s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]):
			x, _ := hex.DecodeString(s[i+1 : i+3])
			b.WriteByte(x[0])
			i += 2
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// escape is AWS's UriEncode: every byte but A-Z a-z 0-9 - _ . ~ becomes %XX
// (uppercase hex); '/' is kept unless encodeSlash.
func escape(s string, encodeSlash bool) string {
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
	return b.String()
}

// StringToSign is "AWS4-HMAC-SHA256\nTIME\nSCOPE\nhex(sha256(canonicalRequest))".
func StringToSign(t time.Time, scope, canonicalRequest string) string {
	h := sha256.Sum256([]byte(canonicalRequest))
	return Algorithm + "\n" + t.UTC().Format(TimeFormat) + "\n" + scope + "\n" + hex.EncodeToString(h[:])
}

// SigningKey derives the signing key from the secret and the scope.
func SigningKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

// Sign returns the lowercase hex signature of stringToSign under key.
func Sign(key []byte, stringToSign string) string {
	return hex.EncodeToString(hmacSHA256(key, stringToSign))
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

package signreq

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Scheme is the Authorization scheme's name. Like every HTTP
// authentication scheme it is matched case-insensitively; it is written as
// here, and the MAC input always carries it as here.
const Scheme = "ES-HMAC-SHA256"

// Sizes, in bytes, of what the scheme carries.
const (
	SecretSize = 32 // a client secret: 256 bits
	NonceSize  = 16 // the nonce, sent as 32 lowercase hex digits
	MACSize    = 32 // HMAC-SHA256, sent as 64 lowercase hex digits
	// MaxClientID is the longest client id, in bytes.
	MaxClientID = 64
	// MaxHeader is the longest Authorization value accepted: the longest
	// well-formed one (a 64-byte client id and a 12-digit timestamp) with
	// room for spaces.
	MaxHeader = 256
	// MaxPath is the longest request path the MAC input may carry.
	MaxPath = 2048
	// MaxMethod is the longest HTTP method the MAC input may carry.
	MaxMethod = 16
	// MaxAudience is the longest audience.
	MaxAudience = 64
)

// maxTimestampDigits bounds ts: 12 digits reach the year 33658.
const maxTimestampDigits = 12

// ErrBadMAC is the verification failure: the mac matches none of the
// client's secrets. Its message says what the MAC covers, so a client can
// look for what it sent differently, and nothing about the secrets.
var ErrBadMAC = errors.New("mac does not match: the MAC input (scheme, audience, client, ts, nonce, method, path, SHA-256 of the body) " +
	"differs from what was signed, or the secret is not one of the client's (docs/protocol.md, Authenticated sign requests)")

// Credential is a parsed Authorization header. It is what the client
// claims; Verify decides whether it holds.
type Credential struct {
	Client    string
	Timestamp int64 // Unix seconds
	Nonce     [NonceSize]byte
	MAC       [MACSize]byte
}

// Time returns the credential's timestamp.
func (c *Credential) Time() time.Time { return time.Unix(c.Timestamp, 0) }

// String is the header value (the canonical form ParseAuthorization reads).
// The MAC is not a secret: it is in every request that carries it.
func (c *Credential) String() string {
	b := make([]byte, 0, 48+len(c.Client)+2*NonceSize+2*MACSize)
	b = append(b, Scheme...)
	b = append(b, " client="...)
	b = append(b, c.Client...)
	b = append(b, ", ts="...)
	b = strconv.AppendInt(b, c.Timestamp, 10)
	b = append(b, ", nonce="...)
	b = appendHex(b, c.Nonce[:])
	b = append(b, ", mac="...)
	b = appendHex(b, c.MAC[:])
	return string(b)
}

// authError is a malformed Authorization header: what was wrong and what
// was expected. It never quotes the mac, and quotes other values only
// shortened.
type authError struct{ msg string }

func (e *authError) Error() string { return "authorization: " + e.msg }

func authErrorf(format string, a ...any) error { return &authError{fmt.Sprintf(format, a...)} }

// headerForm is the syntax every parse error repeats.
const headerForm = Scheme + " client=ID, ts=UNIX_SECONDS, nonce=32_HEX, mac=64_HEX"

// ParseAuthorization reads an Authorization header value:
//
//	ES-HMAC-SHA256 client=<id>, ts=<unix seconds>, nonce=<32 hex>, mac=<64 hex>
//
// The four parameters come in this order, each exactly once, separated by
// a comma and optional spaces; values are unquoted. The client id is 1 to
// 64 of A-Z a-z 0-9 . _ : @ -; ts is decimal without leading zeros; nonce
// and mac are lowercase hex. Anything else is an error that says what was
// wrong.
func ParseAuthorization(h string) (Credential, error) {
	var c Credential
	h = strings.TrimRight(h, " \t")
	if h == "" {
		return c, authErrorf("no credential: want %s", headerForm)
	}
	if len(h) > MaxHeader {
		return c, authErrorf("the header is %d bytes, want at most %d: %s", len(h), MaxHeader, headerForm)
	}
	sp := strings.IndexByte(h, ' ')
	if sp < 0 || !strings.EqualFold(h[:sp], Scheme) {
		scheme := h
		if sp >= 0 {
			scheme = h[:sp]
		}
		return c, authErrorf("scheme %s: want %s", quoteShort(scheme), headerForm)
	}
	rest := strings.TrimLeft(h[sp:], " ")
	for i, name := range [...]string{"client", "ts", "nonce", "mac"} {
		if i > 0 {
			if rest == "" || rest[0] != ',' {
				return Credential{}, authErrorf("want \", %s=\" after the %s parameter: %s", name, [...]string{"client", "ts", "nonce"}[i-1], headerForm)
			}
			rest = strings.TrimLeft(rest[1:], " \t")
		}
		if !strings.HasPrefix(rest, name+"=") {
			return Credential{}, authErrorf("want parameter %d to be %s=, in the order client, ts, nonce, mac: %s", i+1, name, headerForm)
		}
		rest = rest[len(name)+1:]
		end := valueEnd(rest)
		val := rest[:end]
		rest = strings.TrimLeft(rest[end:], " \t")
		var err error
		switch name {
		case "client":
			c.Client, err = val, checkClient(val)
		case "ts":
			c.Timestamp, err = parseTimestamp(val)
		case "nonce":
			err = decodeLowerHex(c.Nonce[:], val, "nonce")
		case "mac":
			err = decodeLowerHex(c.MAC[:], val, "mac")
		}
		if err != nil {
			return Credential{}, &authError{err.Error()}
		}
	}
	if rest != "" {
		return Credential{}, authErrorf("unexpected data after the mac parameter: %s", headerForm)
	}
	return c, nil
}

// valueEnd is the index of the first comma, space or tab in s (len(s)
// if none): where a parameter's value ends.
func valueEnd(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ',' || c == ' ' || c == '\t' {
			return i
		}
	}
	return len(s)
}

// checkClient checks a client id's syntax.
func checkClient(id string) error {
	if id == "" || len(id) > MaxClientID {
		return fmt.Errorf("client: want an id of 1 to %d characters, got %d", MaxClientID, len(id))
	}
	for i := 0; i < len(id); i++ {
		if !isIDByte(id[i]) {
			return fmt.Errorf("client %s: byte %d is not one of A-Z a-z 0-9 . _ : @ -", quoteShort(id), i)
		}
	}
	return nil
}

func isIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '@' || c == '-'
}

func parseTimestamp(s string) (int64, error) {
	if s == "" || len(s) > maxTimestampDigits || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("ts %s: want Unix seconds in decimal, 1 to %d digits without leading zeros", quoteShort(s), maxTimestampDigits)
	}
	var v int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("ts %s: want Unix seconds in decimal digits only", quoteShort(s))
		}
		v = v*10 + int64(s[i]-'0')
	}
	return v, nil
}

// decodeLowerHex decodes exactly 2*len(dst) lowercase hex digits. The
// error never quotes the value.
func decodeLowerHex(dst []byte, s, field string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%s: want %d lowercase hex digits (%d bytes), got %d characters", field, 2*len(dst), len(dst), len(s))
	}
	for i := range dst {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			return fmt.Errorf("%s: want lowercase hex digits (0-9 a-f) only", field)
		}
		dst[i] = hi<<4 | lo
	}
	return nil
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, src []byte) []byte {
	for _, b := range src {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// quoteShort quotes s for an error message, cut to 32 bytes.
func quoteShort(s string) string {
	if len(s) > 32 {
		return strconv.Quote(s[:32]) + "…"
	}
	return strconv.Quote(s)
}

// Params are what a MAC covers.
type Params struct {
	// Audience names the deployment (the keyring's "audience"), so that a
	// request made for one cannot be replayed to another.
	Audience  string
	Client    string
	Timestamp int64 // Unix seconds
	Nonce     [NonceSize]byte
	// Method is the HTTP method as sent, e.g. "POST".
	Method string
	// Path is the request target as sent: the escaped path and, if there
	// is one, "?" and the query (what an HTTP/1.1 request line carries).
	Path string
	// Body is the exact body bytes.
	Body []byte
}

// MACInput appends the bytes the MAC is computed over to dst: eight lines
// joined by "\n", with no newline after the last:
//
//	ES-HMAC-SHA256
//	<audience>
//	<client>
//	<ts, decimal>
//	<nonce, 32 lowercase hex>
//	<method>
//	<path>
//	<SHA-256 of the body, 64 lowercase hex>
//
// It refuses fields that could make two different inputs read alike (a
// newline or any control character in one) or that no request carries.
func (p *Params) MACInput(dst []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return dst, err
	}
	sum := sha256.Sum256(p.Body)
	return p.appendInput(dst, &sum), nil
}

func (p *Params) appendInput(dst []byte, bodySum *[32]byte) []byte {
	dst = append(dst, Scheme...)
	dst = append(append(dst, '\n'), p.Audience...)
	dst = append(append(dst, '\n'), p.Client...)
	dst = strconv.AppendInt(append(dst, '\n'), p.Timestamp, 10)
	dst = appendHex(append(dst, '\n'), p.Nonce[:])
	dst = append(append(dst, '\n'), p.Method...)
	dst = append(append(dst, '\n'), p.Path...)
	return appendHex(append(dst, '\n'), bodySum[:])
}

func (p *Params) check() error {
	if p.Audience == "" || len(p.Audience) > MaxAudience || !printable(p.Audience) {
		return fmt.Errorf("audience: want 1 to %d printable ASCII characters", MaxAudience)
	}
	if err := checkClient(p.Client); err != nil {
		return err
	}
	if p.Timestamp < 0 {
		return fmt.Errorf("ts %d: want Unix seconds, not negative", p.Timestamp)
	}
	if p.Method == "" || len(p.Method) > MaxMethod || !printable(p.Method) {
		return fmt.Errorf("method %s: want an HTTP method such as POST", quoteShort(p.Method))
	}
	if len(p.Path) == 0 || p.Path[0] != '/' || len(p.Path) > MaxPath || !printable(p.Path) || strings.ContainsRune(p.Path, ' ') {
		return fmt.Errorf("path %s: want the request target as sent, starting with / and at most %d printable ASCII characters without spaces", quoteShort(p.Path), MaxPath)
	}
	return nil
}

// printable reports whether s is printable ASCII (0x20 to 0x7e).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// MAC computes the mac of p under secret.
func MAC(secret []byte, p *Params) ([MACSize]byte, error) {
	var out [MACSize]byte
	if len(secret) != SecretSize {
		return out, fmt.Errorf("client secret is %d bytes, want %d", len(secret), SecretSize)
	}
	var buf [blockSize + 512]byte
	in, err := p.MACInput(buf[:blockSize])
	if err != nil {
		return out, err
	}
	return hmacSHA256(secret, in), nil
}

// blockSize is SHA-256's block size, to which HMAC pads the key.
const blockSize = 64

// hmacSHA256 is HMAC-SHA256 (RFC 2104) of buf[blockSize:] under key (at
// most blockSize bytes; a client secret is 32), as crypto/hmac computes it
// (TestHMACMatchesCryptoHMAC), but with no allocation: buf[:blockSize] is
// scratch for the inner pad, so that each of the two hashes is one
// sha256.Sum256 over contiguous bytes. This runs for every authenticated
// request, once per secret of the client. The pads, derived from the key,
// are zeroed before it returns.
func hmacSHA256(key, buf []byte) [MACSize]byte {
	var outer [blockSize + sha256.Size]byte
	for i := range blockSize {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		buf[i] = k ^ 0x36
		outer[i] = k ^ 0x5c
	}
	inner := sha256.Sum256(buf)
	copy(outer[blockSize:], inner[:])
	mac := sha256.Sum256(outer[:])
	clear(buf[:blockSize])
	clear(outer[:])
	return mac
}

// Authorization returns the header value for p signed with secret.
func Authorization(secret []byte, p *Params) (string, error) {
	mac, err := MAC(secret, p)
	if err != nil {
		return "", err
	}
	c := Credential{Client: p.Client, Timestamp: p.Timestamp, Nonce: p.Nonce, MAC: mac}
	return c.String(), nil
}

// Check is the verification of one credential: the MAC input is built
// once, then compared against each of the client's secrets (Try), each
// comparison in constant time. Try every secret, whatever the outcome, so
// that timing tells nothing about which one matched.
type Check struct {
	buf     []byte // blockSize bytes of scratch, then the MAC input
	mac     [MACSize]byte
	matched int
}

// NewCheck prepares the verification of c for a request with this
// audience, method, path and body. It fails when a field cannot be in a
// MAC input.
func NewCheck(c *Credential, audience, method, path string, body []byte) (*Check, error) {
	p := Params{Audience: audience, Client: c.Client, Timestamp: c.Timestamp, Nonce: c.Nonce, Method: method, Path: path}
	if err := p.check(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	k := &Check{mac: c.MAC}
	k.buf = p.appendInput(make([]byte, blockSize, blockSize+256+len(path)), &sum)
	return k, nil
}

// Try compares the credential's mac with the one secret makes. A secret
// of the wrong size never matches.
func (k *Check) Try(secret []byte) {
	if len(secret) != SecretSize {
		return
	}
	got := hmacSHA256(secret, k.buf)
	k.matched |= subtle.ConstantTimeCompare(got[:], k.mac[:])
}

// Matched reports whether a secret tried so far matched.
func (k *Check) Matched() bool { return k.matched == 1 }

// Verify reports whether c's mac is right for a request with this
// audience, method, path and body under one of secrets (a client has one
// or two), trying each (Check). It returns nil, ErrBadMAC, or an error
// saying which field cannot be in a MAC input.
func Verify(c *Credential, secrets [][]byte, audience, method, path string, body []byte) error {
	k, err := NewCheck(c, audience, method, path, body)
	if err != nil {
		return err
	}
	for _, s := range secrets {
		k.Try(s)
	}
	if !k.Matched() {
		return ErrBadMAC
	}
	return nil
}

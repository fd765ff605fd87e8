package keyring

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Clients and per-key policy (format 2 only). A keyring that declares
// "clients" is policed: each of its keys may be used only by the clients
// its "policy" lists, for the kinds it lists, at its rate, with messages up
// to its size limit. A keyring without "clients" is open: anyone who
// reaches signerd may use its keys. signerd authenticates the clients and
// enforces the rules; this package only reads and checks them.

// Limits on what a keyring may declare.
const (
	// ClientSecretSize is the length of a client secret in bytes (HMAC-SHA256
	// keys of 256 bits). The keyring and the secret file hold it as 64 hex
	// digits.
	ClientSecretSize = 32
	// MaxClientSecrets is how many secrets a client may have at once: two,
	// so a secret can be rotated without downtime.
	MaxClientSecrets = 2
	// MaxAudienceLength is the longest audience accepted.
	MaxAudienceLength = 64
	// MaxRatePerSecond bounds a rate's per_second; it has at most
	// RateDecimals digits after the decimal point, so the smallest rate is
	// 0.001 per second (one every 1000 s).
	MaxRatePerSecond = 1_000_000
	// RateDecimals is how many digits per_second may have after the point.
	RateDecimals = 3
	// MaxBurst bounds a rate's burst.
	MaxBurst = 1_000_000
	// MaxMessageBytesLimit bounds max_message_bytes: the wire's frame size
	// (1 MiB) caps any message anyway.
	MaxMessageBytesLimit = 1 << 20
)

// ErrForbidden: a key's policy refuses a request (the client is not in
// the key's allow list, the kind is not allowed, the message is too long,
// or the key has no policy in a policed keyring). The error is a
// *PolicyError naming the rule.
var ErrForbidden = errors.New("forbidden by the key's policy")

// Rate is a token-bucket limit: PerSecond tokens added each second, up to
// Burst. A request takes one token.
type Rate struct {
	// PerSecond is in (0, MaxRatePerSecond], with at most RateDecimals
	// digits after the decimal point as written in the keyring.
	PerSecond float64
	// Burst is in [1, MaxBurst].
	Burst int
}

// String writes the rate as the CLI takes it: "5/s,burst=10".
func (r Rate) String() string {
	return strconv.FormatFloat(r.PerSecond, 'f', -1, 64) + "/s,burst=" + strconv.Itoa(r.Burst)
}

// KeyPolicy is what a key of a policed keyring allows. It is shared and
// immutable: read it, don't modify it.
type KeyPolicy struct {
	// Clients may use the key: ids of clients of the key's keyring, at
	// least one, no duplicates, in keyring order.
	Clients []string
	// Kinds are the request kinds allowed (KindMessage, KindDigest). When
	// the keyring doesn't list them this is every kind the key's algorithm
	// signs (ed25519: message only).
	Kinds []string
	// Rate limits the key's signatures, over all its clients; nil means no
	// limit.
	Rate *Rate
	// MaxMessageBytes is the largest message the key signs; 0 means no
	// limit beyond the wire's.
	MaxMessageBytes int
}

// AllowsClient reports whether the client id is in the allow list.
func (p *KeyPolicy) AllowsClient(id string) bool {
	return p != nil && slices.Contains(p.Clients, id)
}

// AllowsKind reports whether the request kind is allowed.
func (p *KeyPolicy) AllowsKind(kind string) bool {
	return p != nil && slices.Contains(p.Kinds, kind)
}

// Client is a client a keyring declares: its id, the keyring's audience
// (which its requests must name), its rate, and one or two secrets. It is
// immutable and safe for concurrent use; its secrets are wiped when its
// Set (or Keyring) is destroyed. It formats (fmt, slog) without secrets.
type Client struct {
	// ID matches [A-Za-z0-9._-]{1,64} and is unique within a Set.
	ID string
	// Audience is the audience of the client's keyring.
	Audience string
	// Rate limits the client's signatures, over all keys; nil means no
	// limit.
	Rate *Rate

	keyring string
	secrets [][]byte // each ClientSecretSize bytes; wiped by destroy
	guard   guard
}

// Keyring returns the name of the keyring that declares the client.
func (c *Client) Keyring() string { return c.keyring }

// Secrets returns the client's one or two secrets (32 bytes each), the
// current one first as the keyring lists them. The slices are the
// client's own: don't modify or retain them, and don't use them after the
// Set is destroyed (they are wiped then); MatchSecret is the safe way to
// use them while a Set may be destroyed concurrently.
func (c *Client) Secrets() [][]byte { return c.secrets }

// MatchSecret calls match with each secret in turn until it returns true,
// and reports whether one did. The secrets are not wiped while it runs; on
// a destroyed client it returns an error wrapping ErrDestroyed. match must
// not retain the secret.
func (c *Client) MatchSecret(match func(secret []byte) bool) (bool, error) {
	if !c.guard.acquire() {
		return false, fmt.Errorf("client %q: %w", c.ID, ErrDestroyed)
	}
	defer c.guard.release()
	for _, s := range c.secrets {
		if match(s) {
			return true, nil
		}
	}
	return false, nil
}

// destroy waits for MatchSecret calls in flight, then wipes the secrets.
func (c *Client) destroy() {
	c.guard.destroy(func() {
		for _, s := range c.secrets {
			clear(s)
		}
	})
}

// String names the client; the secrets show as REDACTED.
func (c *Client) String() string {
	if c == nil {
		return "keyring.Client(nil)"
	}
	rate := "none"
	if c.Rate != nil {
		rate = c.Rate.String()
	}
	return fmt.Sprintf("keyring.Client{id: %q, audience: %q, rate: %s, secrets: %d REDACTED}", c.ID, c.Audience, rate, len(c.secrets))
}

// Format makes every fmt verb print String.
func (c *Client) Format(f fmt.State, _ rune) { io.WriteString(f, c.String()) }

// LogValue logs the client's id and audience only.
func (c *Client) LogValue() slog.Value {
	if c == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.String("client", c.ID), slog.String("audience", c.Audience), slog.String("secrets", redacted))
}

// PolicyError is a request a key's policy refuses; it wraps ErrForbidden.
// It names the rule (the keyring field) that refused, never a secret.
type PolicyError struct {
	KeyID  string
	Client string
	// Rule is the policy field that refused: "policy" (the key has none,
	// so no client may use it), "policy.clients", "policy.kinds" or
	// "policy.max_message_bytes".
	Rule string
	// Detail says why, for people.
	Detail string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("key %s: %s: %s", quoteID(e.KeyID), e.Rule, e.Detail)
}

func (e *PolicyError) Unwrap() error { return ErrForbidden }

// Authorize checks a request against the key's policy: client is the
// authenticated client id, kind the request kind, size the length of the
// message (or digest) to sign. A key of an open keyring allows everything
// (nil). Otherwise the error is a *PolicyError wrapping ErrForbidden. Rates
// are not checked here: they need the caller's clock and buckets.
func (k *Key) Authorize(client, kind string, size int) error {
	if !k.policed {
		return nil
	}
	fail := func(rule, format string, args ...any) error {
		return &PolicyError{KeyID: k.info.ID, Client: client, Rule: rule, Detail: fmt.Sprintf(format, args...)}
	}
	p := k.policy
	switch {
	case p == nil:
		return fail("policy", "the key has no policy in keyring %q, which declares clients: no client may use it", k.info.Keyring)
	case !p.AllowsClient(client):
		return fail("policy.clients", "client %s is not allowed to use this key", quoteID(client))
	case !p.AllowsKind(kind):
		return fail("policy.kinds", "request kind %s is not allowed for this key, want one of %v", quoteName(kind), p.Kinds)
	case p.MaxMessageBytes > 0 && size > p.MaxMessageBytes:
		return fail("policy.max_message_bytes", "the message is %d bytes, the key signs at most %d", size, p.MaxMessageBytes)
	}
	return nil
}

// Policed reports whether the key's keyring declares clients: then only the
// clients its policy lists may use it.
func (k *Key) Policed() bool { return k.policed }

// Policy returns the key's policy, or nil when it has none (then, in a
// policed keyring, no client may use it). The policy is shared: don't
// modify it.
func (k *Key) Policy() *KeyPolicy { return k.policy }

// kindsFor lists the request kinds an algorithm signs.
func kindsFor(alg Algorithm) []string {
	if alg == Ed25519 {
		return []string{KindMessage}
	}
	return []string{KindMessage, KindDigest}
}

// checkAudience enforces the audience charset [A-Za-z0-9._:-]{1,64}.
func checkAudience(a []byte) error {
	if len(a) == 0 || len(a) > MaxAudienceLength {
		return fmt.Errorf("%d bytes long, want 1 to %d characters from [A-Za-z0-9._:-]", len(a), MaxAudienceLength)
	}
	for i, c := range a {
		if !idChar(c) && c != ':' {
			return fmt.Errorf("invalid character at position %d, want only [A-Za-z0-9._:-]", i+1)
		}
	}
	return nil
}

// CheckAudience reports whether s is a valid audience ([A-Za-z0-9._:-], 1
// to MaxAudienceLength characters), without quoting it.
func CheckAudience(s string) error { return checkAudience([]byte(s)) }

// checkRate checks a rate's bounds.
func checkRate(r Rate) error {
	if !(r.PerSecond > 0) || r.PerSecond > MaxRatePerSecond {
		return fmt.Errorf("per_second is %s, want more than 0 and at most %d", strconv.FormatFloat(r.PerSecond, 'f', -1, 64), MaxRatePerSecond)
	}
	if r.Burst < 1 || r.Burst > MaxBurst {
		return fmt.Errorf("burst is %d, want 1 to %d", r.Burst, MaxBurst)
	}
	return nil
}

// decodeSecret decodes 64 hex digits (either case) into a fresh 32-byte
// slice. Its errors give positions and lengths, never the text.
func decodeSecret(h []byte) ([]byte, error) {
	if len(h) != 2*ClientSecretSize {
		return nil, fmt.Errorf("%d characters, want %d hex digits (%d bytes)", len(h), 2*ClientSecretSize, ClientSecretSize)
	}
	for i, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return nil, fmt.Errorf("not hex at position %d, want %d hex digits (%d bytes)", i+1, 2*ClientSecretSize, ClientSecretSize)
		}
	}
	s := make([]byte, ClientSecretSize)
	if _, err := hex.Decode(s, h); err != nil {
		clear(s)
		return nil, errors.New("malformed hex") // unreachable: checked above
	}
	return s, nil
}

// GenerateClientSecret returns a new 32-byte client secret from
// crypto/rand. The caller owns it and should wipe it with clear.
func GenerateClientSecret() ([]byte, error) {
	s := make([]byte, ClientSecretSize)
	if _, err := io.ReadFull(rand.Reader, s); err != nil {
		return nil, fmt.Errorf("generate client secret: %v", err)
	}
	return s, nil
}

// EncodeClientSecretFile returns the content of a client secret file: the
// secret as 64 lowercase hex digits and a newline. The result is secret;
// wipe it with clear.
func EncodeClientSecretFile(secret []byte) ([]byte, error) {
	if len(secret) != ClientSecretSize {
		return nil, fmt.Errorf("client secret of %d bytes, want %d", len(secret), ClientSecretSize)
	}
	out := make([]byte, 2*ClientSecretSize+1)
	hex.Encode(out, secret)
	out[2*ClientSecretSize] = '\n'
	return out, nil
}

// ParseClientSecretFile reads a client secret file: 64 hex digits (either
// case), optionally followed by one newline ("\n" or "\r\n"), nothing else.
// It returns the 32-byte secret in a fresh slice the caller should wipe;
// the caller keeps ownership of b. Errors never quote the content.
func ParseClientSecretFile(b []byte) ([]byte, error) {
	h := b
	switch {
	case len(h) > 0 && h[len(h)-1] == '\n':
		h = h[:len(h)-1]
		if len(h) > 0 && h[len(h)-1] == '\r' {
			h = h[:len(h)-1]
		}
	}
	s, err := decodeSecret(h)
	if err != nil {
		return nil, fmt.Errorf("client secret file: %v, then an optional newline", err)
	}
	return s, nil
}

// ParseRate reads a rate as the CLI takes it: "N/s" or "N/s,burst=B". N
// is written as per_second in the keyring (a decimal with at most
// RateDecimals digits after the point, e.g. 5 or 0.5); B defaults to N
// rounded up (at least 1), one second's worth.
func ParseRate(s string) (Rate, error) {
	const want = `want N/s or N/s,burst=B (e.g. 5/s,burst=10 or 0.5/s)`
	num, rest, ok := strings.Cut(s, "/s")
	if !ok {
		return Rate{}, fmt.Errorf("%q: no /s, %s", s, want)
	}
	r := &jsonReader{b: []byte(num)}
	ps, err := r.decimal(RateDecimals)
	if err == nil && r.pos != len(r.b) {
		err = errors.New("unexpected text after the number")
	}
	if err != nil {
		return Rate{}, fmt.Errorf("%q: rate: %v; %s", s, err, want)
	}
	rate := Rate{PerSecond: ps, Burst: max(1, int(math.Ceil(ps)))}
	if rest != "" {
		b, ok := strings.CutPrefix(rest, ",burst=")
		if !ok {
			return Rate{}, fmt.Errorf("%q: unexpected %q after /s, %s", s, rest, want)
		}
		n, err := strconv.Atoi(b)
		if err != nil || strings.HasPrefix(b, "+") {
			return Rate{}, fmt.Errorf("%q: burst %q is not an integer, %s", s, b, want)
		}
		rate.Burst = n
	}
	if err := checkRate(rate); err != nil {
		return Rate{}, fmt.Errorf("%q: %v", s, err)
	}
	return rate, nil
}

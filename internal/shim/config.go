package shim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// Config is the shim's whole configuration, the JSON file given to
// `signer serve --config FILE`. docs/shim.md documents every field with an
// example. Durations are JSON strings such as "5s" or "1m". The zero value
// of each optional field means its default.
type Config struct {
	// Enclave is the enclave's wire-protocol address, e.g.
	// "vsock://16:5005" (CID 16, port 5005); unix:// and tcp:// for
	// development and tests. Required.
	Enclave string `json:"enclave"`
	// Listen is where the HTTP API listens: HOST:PORT, tcp://HOST:PORT or
	// unix:///path. Default "127.0.0.1:8080". Unless AllowPublicListen is
	// set, HOST must be a loopback address (127.0.0.0/8, ::1, also
	// IPv4-mapped) or localhost.
	Listen string `json:"listen,omitempty"`
	// AllowPublicListen allows any Listen host: a wildcard (0.0.0.0, [::],
	// [::ffff:0.0.0.0] or an empty host), another interface's address, a
	// host name. The API has no authentication: anyone who reaches it can
	// sign.
	AllowPublicListen bool `json:"allow_public_listen,omitempty"`
	// AllowedHosts are more names (or addresses) the API answers to in the
	// Host header, without port: e.g. "signer.internal" when clients use
	// such a name. Loopback addresses, localhost and the Listen host are
	// always accepted; a unix socket accepts every Host. Any other Host is
	// refused (403 forbidden_origin), which stops web pages reaching the
	// API through DNS rebinding.
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
	// ListenMode is the permission of the unix socket Listen names, as an
	// octal string: who may connect, so who may sign (connecting needs
	// write permission). Default "0600", the shim's user only; "0660" lets
	// the socket's group in too (run the shim with that group). Only for a
	// unix:// Listen.
	ListenMode string `json:"listen_mode,omitempty"`

	// Region is the AWS region of the KMS key that sealed the identity,
	// sent to the enclave. Required.
	Region string `json:"region"`
	// Identity is where the sealed age identity (the KMS CiphertextBlob
	// that `signer seal` writes) is: a local file path or s3://BUCKET/KEY.
	// Required.
	Identity string `json:"identity"`
	// EncryptionContext is the KMS encryption context the identity was
	// sealed with. Optional.
	EncryptionContext map[string]string `json:"encryption_context,omitempty"`
	// Keyrings are the age-encrypted keyrings to load: local file paths or
	// s3://BUCKET/KEY URIs. At least one. Each provisioning fetches them
	// again, so new versions are picked up by `signer provision`.
	Keyrings []string `json:"keyrings"`

	// S3Region is the region of the S3 bucket(s). Default: Region.
	S3Region string `json:"s3_region,omitempty"`
	// S3Endpoint replaces the S3 endpoint (a VPC interface endpoint or an
	// S3-compatible store): an http:// or https:// URL. Default: the
	// regional AWS endpoint.
	S3Endpoint string `json:"s3_endpoint,omitempty"`
	// S3UsePathStyle addresses objects as ENDPOINT/BUCKET/KEY instead of
	// BUCKET.ENDPOINT/KEY.
	S3UsePathStyle bool `json:"s3_use_path_style,omitempty"`

	// EnclaveConnections is the number of multiplexed connections to the
	// enclave. Default 2.
	EnclaveConnections int `json:"enclave_connections,omitempty"`
	// RequestTimeout bounds each API request's exchange with the enclave;
	// past it the request answers 503 not_ready. Default "5s".
	RequestTimeout Duration `json:"request_timeout,omitzero"`
	// ProvisionTimeout bounds one provisioning (fetching the sealed files,
	// credentials, and the enclave's unsealing through KMS). Default "60s".
	ProvisionTimeout Duration `json:"provision_timeout,omitzero"`
	// StatusInterval is how often the shim asks the enclave for its status
	// to notice a restart (state waiting) and re-provision. Default "2s".
	StatusInterval Duration `json:"status_interval,omitzero"`
	// RetryMin and RetryMax bound the exponential backoff between failed
	// provisioning attempts. Defaults "1s" and "1m".
	RetryMin Duration `json:"provision_retry_min,omitzero"`
	RetryMax Duration `json:"provision_retry_max,omitzero"`
	// CredentialRefresh is how long before the provisioned credentials
	// expire the shim fetches new ones and provisions again. EC2 makes new
	// instance-role credentials available at least five minutes before the
	// old ones expire. Default "5m".
	CredentialRefresh Duration `json:"credential_refresh,omitzero"`

	// AuditLog is the file the enclave's audit trail is drained into
	// (docs/audit.md): JSON Lines, appended to, created with mode 0600. A
	// local path. Without it the trail is not drained, and signerd stops
	// signing once its audit buffer is full (the shim warns at start).
	AuditLog string `json:"audit_log,omitempty"`

	// Instance is an opaque label the shim reports in /v1/status
	// (shim.instance), so whoever started it can tell it from another
	// process answering on the same address (signer dev sets a random one
	// at each start). At most 128 printable ASCII characters. Optional.
	Instance string `json:"instance,omitempty"`

	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `json:"log_level,omitempty"`
	// LogFormat is json or text. Default json.
	LogFormat string `json:"log_format,omitempty"`

	enclaveAddr transport.Addr
	listenAddr  transport.Addr
	listenMode  fs.FileMode
}

// Defaults of the optional Config fields.
const (
	DefaultListen             = "127.0.0.1:8080"
	DefaultEnclaveConnections = 2
	DefaultRequestTimeout     = 5 * time.Second
	DefaultProvisionTimeout   = 60 * time.Second
	DefaultStatusInterval     = 2 * time.Second
	DefaultRetryMin           = time.Second
	DefaultRetryMax           = time.Minute
	DefaultCredentialRefresh  = 5 * time.Minute
)

// Duration is a time.Duration written in JSON as a string ("5s", "1m30s").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText writes d as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration such as \"5s\" or \"1m\", got %q", b)
	}
	*d = Duration(v)
	return nil
}

// durationFields are the JSON names of the Duration fields.
var durationFields = []string{"request_timeout", "provision_timeout", "status_interval", "provision_retry_min", "provision_retry_max", "credential_refresh"}

// maxConfigSize bounds the configuration file.
const maxConfigSize = 1 << 20

// ParseConfig reads a JSON configuration strictly (unknown fields are
// errors), fills in the defaults and validates it.
func ParseConfig(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("config: larger than %d bytes", maxConfigSize)
	}
	// encoding/json drops the field name from UnmarshalText errors, so
	// check the durations first, by name.
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) == nil {
		var errs []error
		for _, name := range durationFields {
			v, ok := raw[name]
			if !ok {
				continue
			}
			var s string
			if json.Unmarshal(v, &s) != nil {
				errs = append(errs, fmt.Errorf("config: %s: want a duration string such as \"5s\" or \"1m\", got %s", name, v))
			} else if _, err := time.ParseDuration(s); err != nil {
				errs = append(errs, fmt.Errorf("config: %s: want a duration such as \"5s\" or \"1m\", got %q", name, s))
			}
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %s", describeJSONError(data, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("config: more than one JSON value")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// describeJSONError turns encoding/json's errors into messages that name
// the field and the line.
func describeJSONError(data []byte, err error) string {
	line := func(off int64) int { return 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n")) }
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("line %d: %v", line(se.Offset), se)
	case errors.As(err, &te):
		return fmt.Sprintf("line %d: %s: want %s, got a JSON %s", line(te.Offset), te.Field, te.Type, te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ") + " (see docs/shim.md for the fields)"
	}
	return err.Error()
}

// Validate fills in defaults and checks every field; each error names the
// field, what was wrong and what is wanted.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.Enclave == "" {
		bad("enclave", "required: the enclave's address, e.g. \"vsock://16:5005\"")
	} else if a, err := transport.ParseAddr(c.Enclave); err != nil {
		bad("enclave", "%v", err)
	} else {
		c.enclaveAddr = a
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if a, err := transport.ParseHTTPAddr(c.Listen); err != nil {
		bad("listen", "%v", err)
	} else {
		c.listenAddr = a
		if a.Scheme == transport.TCP && !c.AllowPublicListen {
			host, _, _ := net.SplitHostPort(a.HostPort)
			if why := notLoopback(host); why != "" {
				bad("listen", "%q %s, and the API has no authentication: use 127.0.0.1:PORT, [::1]:PORT, localhost:PORT or a unix:// socket, or set \"allow_public_listen\": true", c.Listen, why)
			}
		}
	}
	if mode, err := parseListenMode(c.ListenMode); err != nil {
		bad("listen_mode", "%v", err)
	} else if c.ListenMode != "" && c.listenAddr.Scheme != transport.Unix {
		bad("listen_mode", "only for a unix:// listen address (who may connect to a TCP port is not a file mode): remove it, or listen on unix:///PATH")
	} else {
		c.listenMode = mode
	}
	for i, h := range c.AllowedHosts {
		if !validAllowedHost(h) {
			bad(fmt.Sprintf("allowed_hosts[%d]", i), "want a host name such as \"signer.internal\" or an IP address, without scheme or port, got %q", h)
		}
	}
	if c.Region == "" {
		bad("region", "required: the AWS region of the KMS key, e.g. \"eu-west-1\"")
	} else if !validRegion(c.Region) {
		bad("region", "want an AWS region such as \"eu-west-1\", got %q", c.Region)
	}
	if c.S3Region != "" && !validRegion(c.S3Region) {
		bad("s3_region", "want an AWS region such as \"eu-west-1\", got %q", c.S3Region)
	}
	if c.Identity == "" {
		bad("identity", "required: a file path or s3://BUCKET/KEY of the sealed identity")
	} else if err := checkSource(c.Identity); err != nil {
		bad("identity", "%v", err)
	}
	if len(c.Keyrings) == 0 {
		bad("keyrings", "required: at least one file path or s3://BUCKET/KEY of an age-encrypted keyring")
	}
	seen := map[string]bool{}
	for i, k := range c.Keyrings {
		if err := checkSource(k); err != nil {
			bad(fmt.Sprintf("keyrings[%d]", i), "%v", err)
		} else if seen[k] {
			bad(fmt.Sprintf("keyrings[%d]", i), "%q is listed twice", k)
		}
		seen[k] = true
	}
	if c.AuditLog != "" {
		if strings.Contains(c.AuditLog, "://") || strings.ContainsRune(c.AuditLog, 0) {
			bad("audit_log", "want a local file path (the shim appends to it and syncs it after every batch), got %q", c.AuditLog)
		} else if fi, err := os.Stat(c.AuditLog); err == nil && !fi.Mode().IsRegular() {
			bad("audit_log", "%s is not a regular file", c.AuditLog)
		}
	}
	for k := range c.EncryptionContext {
		if k == "" {
			bad("encryption_context", "empty key")
		}
	}
	if c.S3Endpoint != "" {
		if u, err := url.Parse(c.S3Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("s3_endpoint", "want http://HOST[:PORT] or https://HOST[:PORT], got %q", c.S3Endpoint)
		}
	}
	if c.EnclaveConnections < 0 || c.EnclaveConnections > 64 {
		bad("enclave_connections", "want 1 to 64, got %d", c.EnclaveConnections)
	} else if c.EnclaveConnections == 0 {
		c.EnclaveConnections = DefaultEnclaveConnections
	}
	durations := []struct {
		name string
		d    *Duration
		def  time.Duration
	}{
		{"request_timeout", &c.RequestTimeout, DefaultRequestTimeout},
		{"provision_timeout", &c.ProvisionTimeout, DefaultProvisionTimeout},
		{"status_interval", &c.StatusInterval, DefaultStatusInterval},
		{"provision_retry_min", &c.RetryMin, DefaultRetryMin},
		{"provision_retry_max", &c.RetryMax, DefaultRetryMax},
		{"credential_refresh", &c.CredentialRefresh, DefaultCredentialRefresh},
	}
	for _, d := range durations {
		if *d.d < 0 {
			bad(d.name, "want a positive duration, got %s", d.d.D())
		} else if *d.d == 0 {
			*d.d = Duration(d.def)
		}
	}
	if c.RetryMax < c.RetryMin {
		bad("provision_retry_max", "%s is shorter than provision_retry_min (%s)", c.RetryMax.D(), c.RetryMin.D())
	}
	if len(c.Instance) > 128 || strings.IndexFunc(c.Instance, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		bad("instance", "want at most 128 printable ASCII characters, got %q", c.Instance)
	}
	switch c.LogLevel {
	case "":
		c.LogLevel = "info"
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "":
		c.LogFormat = "json"
	case "json", "text":
	default:
		bad("log_format", "want json or text, got %q", c.LogFormat)
	}
	return errors.Join(errs...)
}

// EnclaveAddr returns the parsed Enclave address (after Validate).
func (c *Config) EnclaveAddr() transport.Addr { return c.enclaveAddr }

// ListenAddr returns the parsed Listen address (after Validate).
func (c *Config) ListenAddr() transport.Addr { return c.listenAddr }

// ListenSocketMode is the mode of the unix socket the API listens on (after
// Validate): ListenMode's value, or DefaultListenMode.
func (c *Config) ListenSocketMode() fs.FileMode { return c.listenMode }

// DefaultListenMode is a unix-socket listener's mode when listen_mode is
// not set: the shim's user only.
const DefaultListenMode fs.FileMode = 0o600

// parseListenMode reads listen_mode: an octal permission that lets the
// owner read and write (else the owner's own clients could not connect)
// and gives nothing to others beyond the group (a socket anyone on the
// host may connect to is what a TCP port on loopback already is: use
// that).
func parseListenMode(s string) (fs.FileMode, error) {
	if s == "" {
		return DefaultListenMode, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("want an octal permission such as \"0600\" or \"0660\", got %q", s)
	}
	mode := fs.FileMode(n)
	if mode&0o600 != 0o600 {
		return 0, fmt.Errorf("%q does not let the owner read and write the socket, so the shim's own user could not connect: want e.g. \"0600\" or \"0660\"", s)
	}
	if mode&0o007 != 0 {
		return 0, fmt.Errorf("%q lets every user on the host connect, and so sign: give a group instead (\"0660\", with the shim running in that group)", s)
	}
	return mode, nil
}

// notLoopback says why a listen host is not loopback-only, or returns ""
// if it is. IPv4-mapped IPv6 addresses are unmapped first:
// [::ffff:0.0.0.0] binds every interface, as [::] does. A host name other
// than localhost is refused rather than resolved: what it resolves to can
// change after the check.
func notLoopback(host string) string {
	if host == "" {
		return "listens on every interface"
	}
	if strings.EqualFold(host, "localhost") {
		return ""
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return "names a host name, not a loopback address"
	case ip.Unmap().IsUnspecified():
		return "listens on every interface"
	case ip.Unmap().IsLoopback():
		return ""
	}
	return "is not a loopback address: it is reachable from other machines"
}

// validAllowedHost: a DNS name (letters, digits, '-', '.', '_') or an IP
// address, possibly bracketed.
func validAllowedHost(h string) bool {
	if _, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
		return true
	}
	if h == "" || len(h) > 253 || strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return false
	}
	for _, ch := range h {
		if (ch < 'a' || ch > 'z') && (ch < 'A' || ch > 'Z') && (ch < '0' || ch > '9') && ch != '-' && ch != '.' && ch != '_' {
			return false
		}
	}
	return true
}

func validRegion(r string) bool {
	if len(r) < 4 || len(r) > 32 {
		return false
	}
	for _, ch := range r {
		if (ch < 'a' || ch > 'z') && (ch < '0' || ch > '9') && ch != '-' {
			return false
		}
	}
	return strings.Contains(r, "-")
}

// checkSource checks a file path or s3://BUCKET/KEY.
func checkSource(s string) error {
	if rest, ok := strings.CutPrefix(s, "s3://"); ok {
		bucket, key, _ := strings.Cut(rest, "/")
		if bucket == "" || key == "" {
			return fmt.Errorf("want s3://BUCKET/KEY, got %q", s)
		}
		return nil
	}
	if strings.Contains(s, "://") {
		return fmt.Errorf("want a file path or s3://BUCKET/KEY, got %q", s)
	}
	return nil
}

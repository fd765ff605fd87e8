// Package kms is the enclave's client for AWS KMS: Decrypt (and
// GenerateDataKey, GenerateRandom) with the Recipient parameter, so that
// KMS re-encrypts the answer to a key only the attested enclave holds.
//
// It uses the unmodified aws-sdk-go-v2 KMS client, without the SDK's config
// package (signerd stays small and reads no files or environment). Its three
// seams are the endpoint URL, the HTTP transport's dialer (vsock to the
// parent's vsock-proxy in production; unix or loopback TCP in tests) and the
// TLS roots (compiled into the binary, since the enclave image is FROM
// scratch). TLS ends inside the enclave: the proxy relays bytes, so the
// parent sees only ciphertext, and SNI and the Host header name
// kms.<region>.amazonaws.com whatever socket carries them.
package kms

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Credentials are the AWS credentials the host provisions (the instance
// role's session credentials). They render as REDACTED except for the
// access key id.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Expires is when the credentials stop working; zero means they do not
	// expire.
	Expires time.Time
}

// String redacts the secret parts.
func (c Credentials) String() string {
	return fmt.Sprintf("{AccessKeyID:%s SecretAccessKey:REDACTED SessionToken:REDACTED Expires:%s}", c.AccessKeyID, c.Expires.Format(time.RFC3339))
}

// LogValue redacts the secret parts.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("access_key_id", c.AccessKeyID), slog.Time("expires", c.Expires))
}

// Config configures a Client.
type Config struct {
	// Region is the KMS region, e.g. us-east-1. Required.
	Region string
	// Credentials sign every request. Required.
	Credentials Credentials
	// Proxy is where every connection to KMS is dialed: the vsock-proxy
	// (vsock://3:8000 by AWS's convention). Required.
	Proxy transport.Addr
	// Endpoint overrides https://kms.<Region>.amazonaws.com; only signerd
	// under --attestation simulated sets it.
	Endpoint string
	// Roots verify KMS's TLS certificate; nil means the roots compiled into
	// the binary (Mozilla's NSS set from golang.org/x/crypto/x509roots).
	Roots *x509.CertPool
	// MaxAttempts bounds tries per call, retries included; 0 means 5.
	MaxAttempts int
	// Timeout bounds each call, retries included, when the caller's context
	// has no earlier deadline; 0 means 60 s.
	Timeout time.Duration
	// Log receives one line per call; nil discards.
	Log *slog.Logger
	// Now is the clock for credential expiry; nil means time.Now.
	Now func() time.Time
}

// Client calls KMS from the enclave.
type Client struct {
	api       *awskms.Client
	transport *http.Transport
	cfg       Config
	host      string
	log       *slog.Logger
	timeout   time.Duration
}

// ErrProxyUnreachable is wrapped by errors from calls whose connection to the
// KMS proxy could not be made.
var ErrProxyUnreachable = errors.New("KMS proxy unreachable")

// DefaultRoots returns the TLS roots compiled into the binary.
func DefaultRoots() *x509.CertPool {
	p := x509.NewCertPool()
	for c := range bundle.Roots() {
		cert, err := x509.ParseCertificate(c.Certificate)
		if err != nil {
			panic(fmt.Sprintf("kms: compiled-in root does not parse: %v", err))
		}
		if c.Constraint == nil {
			p.AddCert(cert)
		} else {
			p.AddCertWithConstraint(cert, c.Constraint)
		}
	}
	return p
}

// New returns a client. It dials nothing until the first call.
func New(cfg Config) (*Client, error) {
	if cfg.Region == "" {
		return nil, errors.New("kms: region is required")
	}
	if cfg.Credentials.AccessKeyID == "" || cfg.Credentials.SecretAccessKey == "" {
		return nil, errors.New("kms: credentials are required (access key id and secret access key)")
	}
	if cfg.Proxy.Scheme == "" {
		return nil, errors.New("kms: the proxy address is required")
	}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = "https://kms." + cfg.Region + ".amazonaws.com"
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("kms: endpoint %q: want https://HOST[:PORT]", endpoint)
	}
	if cfg.Roots == nil {
		cfg.Roots = DefaultRoots()
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Client{cfg: cfg, host: u.Hostname(), log: cfg.Log, timeout: cfg.Timeout}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.timeout == 0 {
		c.timeout = 60 * time.Second
	}
	dial := transport.Dialer(cfg.Proxy)
	c.transport = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err != nil {
				return nil, fmt.Errorf("%w at %s: is vsock-proxy running and allowing %s? (%v)", ErrProxyUnreachable, cfg.Proxy, c.host, err)
			}
			return conn, nil
		},
		TLSClientConfig:       &tls.Config{RootCAs: cfg.Roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	httpc := &http.Client{Transport: c.transport}
	creds := cfg.Credentials
	c.api = awskms.New(awskms.Options{
		Region:       cfg.Region,
		BaseEndpoint: aws.String(endpoint),
		HTTPClient:   httpc,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{
				AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken,
				CanExpire: !creds.Expires.IsZero(), Expires: creds.Expires, Source: "enclave-signer provisioning",
			}, nil
		}),
		// A slow proxy and KMS throttling are retried with jittered
		// exponential backoff; no client-side retry quota, since one enclave
		// makes few calls.
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = cfg.MaxAttempts
			o.MaxBackoff = 10 * time.Second
			o.RateLimiter = ratelimit.None
		}),
	})
	return c, nil
}

// Close closes the client's idle connections to the proxy. A client is
// usually made for one unseal; without Close its keep-alive connection
// would hold one of vsock-proxy's few workers until the idle timeout.
func (c *Client) Close() {
	c.transport.CloseIdleConnections()
}

// ErrCredentialsExpired is returned, before any network traffic, when the
// provisioned credentials have expired.
var ErrCredentialsExpired = errors.New("AWS credentials expired")

func (c *Client) checkCredentials() error {
	exp := c.cfg.Credentials.Expires
	if !exp.IsZero() && !c.cfg.Now().Before(exp) {
		return fmt.Errorf("%w at %s: the host shim must provision fresh instance-role credentials (signer provision)", ErrCredentialsExpired, exp.UTC().Format(time.RFC3339))
	}
	return nil
}

func (c *Client) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < c.timeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

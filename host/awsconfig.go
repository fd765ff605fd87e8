package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
)

// The operator commands that call KMS (seal, policy update) build their
// client here, from the usual AWS environment, as the AWS CLI does: region
// from --region, AWS_REGION, AWS_DEFAULT_REGION or the shared config
// profile; credentials from the SDK's default chain (environment, shared
// files and AWS_PROFILE, SSO, web identity, container, instance role);
// endpoint from --endpoint-url, else AWS_ENDPOINT_URL_KMS, else
// AWS_ENDPOINT_URL, else the service's regional endpoint. Unlike signerd,
// which reads no environment and no files, the host binary may use the
// SDK's config package.

// kmsCallTimeout bounds each KMS call, retries included, and the loading
// of credentials.
const kmsCallTimeout = 30 * time.Second

// awsFlags are the flags of every command that calls AWS.
type awsFlags struct {
	endpointURL string
	region      string
}

func addAWSFlags(fs *flag.FlagSet) *awsFlags {
	a := &awsFlags{}
	fs.StringVar(&a.endpointURL, "endpoint-url", "", "send KMS requests to `URL` (e.g. the KMS emulator's http://127.0.0.1:PORT); default AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL, else the regional endpoint")
	fs.StringVar(&a.region, "region", "", "AWS `region`; default AWS_REGION, AWS_DEFAULT_REGION or the profile's region")
	return a
}

// validate checks the flags' syntax (a usage error when wrong).
func (a *awsFlags) validate(cmd string) error {
	if a.endpointURL != "" {
		if err := checkEndpointURL(a.endpointURL); err != nil {
			return usageErrorf("%s: --endpoint-url: %v", cmd, err)
		}
	}
	return nil
}

func checkEndpointURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("want http://HOST[:PORT] or https://HOST[:PORT], got %q", s)
	}
	return nil
}

// kmsConn is a KMS client and where it goes, for messages.
type kmsConn struct {
	client *kms.Client
	region string
	// endpoint is the URL requests go to, or "" for the regional AWS
	// endpoint (or one from the shared config file).
	endpoint string
}

// where names the KMS the connection talks to, for messages.
func (k *kmsConn) where() string {
	if k.endpoint != "" {
		return k.endpoint
	}
	return "KMS in " + k.region
}

// newKMSConn loads the AWS configuration and returns a KMS client. It makes
// no request: credentials are resolved on the first call.
func newKMSConn(e *env, a *awsFlags) (*kmsConn, error) {
	var opts []func(*config.LoadOptions) error
	region := a.region
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if region == "" {
			region = e.getenv(v)
		}
	}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	ctx, cancel := context.WithTimeout(e.ctx, kmsCallTimeout)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, &hintError{
			err:   fmt.Errorf("loading the AWS configuration: %v", err),
			hints: []string{"check AWS_PROFILE, AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE"},
		}
	}
	if cfg.Region == "" {
		return nil, &hintError{
			err:   errors.New("no AWS region configured"),
			hints: []string{"set AWS_REGION (e.g. AWS_REGION=us-east-1) or pass --region; KMS keys live in one region"},
		}
	}
	endpoint := a.endpointURL
	if endpoint == "" && !strings.EqualFold(e.getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		for _, v := range []string{"AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL"} {
			if s := e.getenv(v); s != "" {
				if err := checkEndpointURL(s); err != nil {
					return nil, fmt.Errorf("%s: %v", v, err)
				}
				endpoint = s
				break
			}
		}
	}
	client := kms.NewFromConfig(cfg, func(o *kms.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	return &kmsConn{client: client, region: cfg.Region, endpoint: endpoint}, nil
}

// kmsCall runs one KMS operation under its own deadline and turns failures
// into operator messages.
func kmsCall[T any](e *env, k *kmsConn, op string, f func(context.Context, *kms.Client) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(e.ctx, kmsCallTimeout)
	defer cancel()
	out, err := f(ctx, k.client)
	if err != nil {
		var zero T
		return zero, kmsError(op, k, err)
	}
	return out, nil
}

var accessDeniedRE = regexp.MustCompile(`User: (\S+) is not authorized to perform: (\S+)(?: on resource: (\S+))?`)

// kmsError explains a failed KMS call: what was refused, to whom, and what
// to do. SDK errors never carry request bodies, so no plaintext can leak
// through them.
func kmsError(op string, k *kmsConn, err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		code, msg := api.ErrorCode(), api.ErrorMessage()
		base := fmt.Errorf("kms %s: %s: %s", op, code, msg)
		switch code {
		case "AccessDeniedException":
			m := accessDeniedRE.FindStringSubmatch(msg)
			if m == nil {
				return &hintError{err: fmt.Errorf("kms %s: access denied: %s", op, msg), hints: []string{
					"check the key policy (aws kms get-key-policy --policy-name default) and this principal's IAM policies"}}
			}
			principal, action, resource := m[1], m[2], m[3]
			if resource == "" {
				resource = "the key"
			}
			return &hintError{
				err:   fmt.Errorf("kms %s: access denied: %s may not call %s on %s (%s)", op, principal, action, resource, msg),
				hints: accessDeniedHints(action, principal),
			}
		case "NotFoundException":
			return &hintError{err: base, hints: []string{fmt.Sprintf("check --key-id and the region (%s): KMS keys and aliases are regional", k.region)}}
		case "DisabledException", "KMSInvalidStateException", "KeyUnavailableException":
			return &hintError{err: base, hints: []string{"the key is disabled, pending deletion or unavailable: aws kms describe-key shows its state"}}
		case "ExpiredTokenException", "UnrecognizedClientException", "InvalidSignatureException",
			"IncompleteSignature", "InvalidClientTokenId", "MissingAuthenticationTokenException":
			return &hintError{err: base, hints: []string{
				"KMS refused the credentials: refresh them (aws sso login, new session credentials) or check AWS_PROFILE / AWS_ACCESS_KEY_ID",
				"with --endpoint-url pointing at the KMS emulator, use the credentials it accepts (default test/test)"}}
		case "MalformedPolicyDocumentException":
			return &hintError{err: base, hints: []string{
				"KMS refused the policy; if it says the policy would lock you out, the statement that lets you call kms:PutKeyPolicy must stay in it"}}
		case "InvalidCiphertextException", "IncorrectKeyException":
			return &hintError{err: base, hints: []string{"the ciphertext was made under another key or encryption context, or is damaged"}}
		}
		return base
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &hintError{err: fmt.Errorf("kms %s: no answer from %s within %s", op, k.where(), kmsCallTimeout),
			hints: []string{"check the network path to KMS, or --endpoint-url"}}
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("kms %s: interrupted", op)
	case strings.Contains(err.Error(), "get credentials") || strings.Contains(err.Error(), "failed to refresh cached credentials"):
		return &hintError{
			err: fmt.Errorf("kms %s: no usable AWS credentials: %v", op, err),
			hints: []string{
				"set AWS_PROFILE (after aws sso login / aws configure) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run on an instance with a role",
				"the KMS emulator accepts AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test by default"}}
	}
	var oe *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &oe) || errors.As(err, &dnsErr) {
		return &hintError{err: fmt.Errorf("kms %s: cannot reach %s: %v", op, k.where(), err),
			hints: []string{"check --endpoint-url (or AWS_ENDPOINT_URL_KMS) and that the endpoint is up"}}
	}
	return fmt.Errorf("kms %s: %v", op, err)
}

// accessDeniedHints says which key-policy statement should have allowed
// action (as signer policy render writes them).
func accessDeniedHints(action, principal string) []string {
	switch strings.ToLower(action) {
	case "kms:encrypt":
		return []string{"sealing needs kms:Encrypt: the key policy's AllowEncrypt statement (signer policy render --encrypt-role) must name " + principalRole(principal)}
	case "kms:getkeypolicy", "kms:putkeypolicy", "kms:describekey":
		return []string{"updating the policy needs " + action + ": the key policy's AllowKeyAdministration statement (signer policy render --admin-role) must name " + principalRole(principal)}
	case "kms:decrypt":
		return []string{"a key policy made by signer policy render lets only the attested enclave decrypt (kms:RecipientAttestation:ImageSha384): that is the point"}
	}
	return []string{"check the key policy (aws kms get-key-policy --policy-name default) and this principal's IAM policies"}
}

// principalRole turns an assumed-role session ARN into the role ARN a key
// policy names (arn:aws:sts::A:assumed-role/R/S → arn:aws:iam::A:role/R).
func principalRole(p string) string {
	parts := strings.SplitN(p, ":", 6)
	if len(parts) == 6 && parts[2] == "sts" {
		if rest, ok := strings.CutPrefix(parts[5], "assumed-role/"); ok {
			if name, _, ok := strings.Cut(rest, "/"); ok {
				return "arn:" + parts[1] + ":iam::" + parts[4] + ":role/" + name
			}
		}
	}
	return p
}

package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// IMDSv2, as the EC2 User Guide describes it: a session token from
// PUT /latest/api/token, then GETs carrying it.
const (
	imdsTokenPath    = "/latest/api/token"
	imdsRolePath     = "/latest/meta-data/iam/security-credentials/"
	imdsInfoPath     = "/latest/meta-data/iam/info"
	imdsIdentityPath = "/latest/dynamic/instance-identity/document"
	imdsTokenTTL     = "60" // seconds; doctor needs the token only briefly
	maxIMDSResponse  = 64 << 10
)

// Credentials are what doctor keeps of an instance-role credentials
// document: never the secret access key or session token, which it does
// not even decode.
type Credentials struct {
	Code        string    `json:"Code"`
	Type        string    `json:"Type"`
	LastUpdated time.Time `json:"LastUpdated"`
	Expiration  time.Time `json:"Expiration"`
}

// Identity is what doctor keeps of the instance identity document.
type Identity struct {
	AccountID  string `json:"accountId"`
	Region     string `json:"region"`
	InstanceID string `json:"instanceId"`
}

type imdsClient struct {
	cfg   *Config
	base  string
	token string
}

// imdsError is a non-200 answer.
type imdsError struct {
	path   string
	status int
}

func (e *imdsError) Error() string {
	return fmt.Sprintf("IMDS %s: HTTP %d", e.path, e.status)
}

func (c *imdsClient) do(ctx context.Context, method, path string, hdr map[string]string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c.token != "" {
		req.Header.Set("X-aws-ec2-metadata-token", c.token)
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIMDSResponse+1))
	if err != nil {
		return nil, fmt.Errorf("IMDS %s: reading the answer: %v", path, err)
	}
	if len(body) > maxIMDSResponse {
		return nil, fmt.Errorf("IMDS %s: answer longer than %d bytes", path, maxIMDSResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &imdsError{path: path, status: resp.StatusCode}
	}
	return body, nil
}

type instanceFacts struct {
	results    []Result
	region     string
	role       string // the instance role's name
	account    string
	partition  string
	instanceID string
}

func checkCredentials(ctx context.Context, cfg *Config) instanceFacts {
	res := func(s Status, fix, format string, a ...any) Result {
		return Result{Check: CheckCredentials, Status: s, Message: fmt.Sprintf(format, a...), Fix: fix}
	}
	var f instanceFacts
	if cfg.HTTP == nil {
		f.results = append(f.results, res(Skipped, "", "no HTTP client configured"))
		return f
	}
	c := &imdsClient{cfg: cfg, base: trimBase(cfg.IMDSEndpoint, DefaultIMDSEndpoint)}
	tok, err := c.do(ctx, http.MethodPut, imdsTokenPath, map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": imdsTokenTTL})
	if err != nil {
		var ie *imdsError
		if errors.As(err, &ie) {
			f.results = append(f.results, res(Error,
				"turn IMDSv2 on: aws ec2 modify-instance-metadata-options --instance-id ID --http-endpoint enabled --http-tokens required",
				"the instance metadata service at %s refused a session token: HTTP %d", c.base, ie.status))
		} else {
			f.results = append(f.results, res(Error,
				"run doctor on the parent EC2 instance (not inside a container without --network host, unless the metadata hop limit is 2: aws ec2 modify-instance-metadata-options --http-put-response-hop-limit 2); --imds-endpoint overrides the address",
				"the instance metadata service at %s is unreachable: %s", c.base, oneLine(errText(err), 300)))
		}
		return f
	}
	c.token = strings.TrimSpace(string(tok))

	// The identity document names the region, account and instance; the
	// vsock-proxy and key-policy checks use them. Best effort.
	if b, err := c.do(ctx, http.MethodGet, imdsIdentityPath, nil); err == nil {
		var id Identity
		if json.Unmarshal(b, &id) == nil {
			f.region, f.account, f.instanceID = id.Region, id.AccountID, id.InstanceID
		}
	}

	b, err := c.do(ctx, http.MethodGet, imdsRolePath, nil)
	var ie *imdsError
	if errors.As(err, &ie) && ie.status == http.StatusNotFound {
		f.results = append(f.results, res(Error,
			"attach an instance profile whose role the key policy names: aws ec2 associate-iam-instance-profile --instance-id "+orID(f.instanceID)+" --iam-instance-profile Name=PROFILE; signerd gets its KMS credentials from it",
			"no IAM role attached to the instance: IMDS has no security credentials"))
		return f
	}
	if err != nil {
		f.results = append(f.results, res(Error, "retry; check the instance's metadata options (aws ec2 describe-instances --query 'Reservations[].Instances[].MetadataOptions')",
			"cannot list the instance role: %s", oneLine(errText(err), 300)))
		return f
	}
	role, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	role = strings.TrimSpace(role)
	if role == "" || strings.ContainsAny(role, "/ ") {
		f.results = append(f.results, res(Error, "attach an instance profile with a role: aws ec2 associate-iam-instance-profile",
			"IMDS lists no usable role name (%q)", oneLine(role, 64)))
		return f
	}
	f.role = role

	if b, err := c.do(ctx, http.MethodGet, imdsInfoPath, nil); err == nil {
		var info struct {
			InstanceProfileArn string `json:"InstanceProfileArn"`
		}
		if json.Unmarshal(b, &info) == nil {
			if a, ok := splitARN(info.InstanceProfileArn); ok {
				f.partition = a.partition
				if f.account == "" {
					f.account = a.account
				}
			}
		}
	}
	if f.partition == "" {
		f.partition = partitionOf(f.region)
	}

	b, err = c.do(ctx, http.MethodGet, imdsRolePath+url.PathEscape(role), nil)
	if err != nil {
		f.results = append(f.results, res(Error,
			"the role's credentials are not available yet (a profile attached seconds ago) or the role's trust policy does not admit ec2.amazonaws.com; retry, then check the role in IAM",
			"role %s: cannot fetch its credentials: %s", role, oneLine(errText(err), 300)))
		return f
	}
	var cred Credentials
	err = json.Unmarshal(b, &cred)
	clear(b) // the document holds the secret key and token
	if err != nil {
		f.results = append(f.results, res(Error, "retry; IMDS returned something other than a credentials document",
			"role %s: the credentials document is not JSON", role))
		return f
	}
	if cred.Code != "Success" {
		f.results = append(f.results, res(Error,
			"check the role's trust policy (it must admit ec2.amazonaws.com) and that the instance profile still exists",
			"role %s: IMDS reports credentials code %q, want Success", role, oneLine(cred.Code, 64)))
		return f
	}
	if cred.Expiration.IsZero() {
		f.results = append(f.results, res(Error, "retry; IMDS returned credentials without an expiration",
			"role %s: credentials without an Expiration", role))
		return f
	}
	where := strings.Join(nonEmpty("account "+f.account, f.account, "instance "+f.instanceID, f.instanceID, f.region, f.region), ", ")
	if where != "" {
		where = " (" + where + ")"
	}
	left := cred.Expiration.Sub(cfg.now()).Truncate(time.Second)
	exp := cred.Expiration.UTC().Format(time.RFC3339)
	switch {
	case left <= 0:
		f.results = append(f.results, res(Error,
			"IMDS should have rotated them: check the instance's clock (chronyc tracking) and retry; detach and re-attach the instance profile if it persists",
			"role %s%s: credentials expired at %s, %s ago", role, where, exp, -left))
	case left < ExpiryWarning:
		f.results = append(f.results, res(Warning,
			"EC2 makes new credentials available at least five minutes before expiry: check the instance's clock (chronyc tracking); the shim must fetch fresh credentials before it provisions again",
			"role %s%s: credentials expire at %s, in %s", role, where, exp, left))
	default:
		f.results = append(f.results, res(OK, "", "role %s%s: credentials expire at %s (in %s)", role, where, exp, left))
	}
	return f
}

// errText is err's message, stripped of the URL prefix net/http adds.
func errText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func orID(id string) string {
	if id == "" {
		return "i-…"
	}
	return id
}

// nonEmpty returns each text whose guard is non-empty: pairs of (text, guard).
func nonEmpty(pairs ...string) []string {
	var out []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			out = append(out, pairs[i])
		}
	}
	return out
}

// partitionOf guesses the ARN partition from a region name.
func partitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

type arnParts struct {
	partition, service, region, account, resource string
}

func splitARN(s string) (arnParts, bool) {
	p := strings.SplitN(s, ":", 6)
	if len(p) != 6 || p[0] != "arn" || p[1] == "" || p[2] == "" {
		return arnParts{}, false
	}
	return arnParts{p[1], p[2], p[3], p[4], p[5]}, true
}

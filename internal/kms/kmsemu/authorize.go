package kmsemu

import (
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/policy"
)

// DefaultKeyPolicy returns the key policy KMS gives a key created without
// one: the account root may do everything, which (there being no IAM here)
// admits every principal of the account.
func DefaultKeyPolicy(account string) string {
	return `{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` +
		account + `:root"},"Action":"kms:*","Resource":"*"}]}`
}

// maxPolicySize is KMS's key policy size limit.
const maxPolicySize = 32768

// parsePolicy parses a key policy for CreateKey and PutKeyPolicy.
func parsePolicy(doc string) (*policy.Policy, error) {
	if len(doc) > maxPolicySize {
		return nil, validationError("Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to %d", maxPolicySize)
	}
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		return nil, apiErr(CodeMalformedPolicyDocument, "%v", err)
	}
	return p, nil
}

// encryptionContextKeys turns an encryption context into its condition
// keys: kms:EncryptionContext:<k> for each pair and kms:EncryptionContextKeys.
func encryptionContextKeys(ec map[string]string) map[string][]string {
	if len(ec) == 0 {
		return nil
	}
	out := map[string][]string{}
	var keys []string
	for k, v := range ec {
		out["kms:EncryptionContext:"+k] = []string{v}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out["kms:EncryptionContextKeys"] = keys
	return out
}

// authorize is the one place a key operation is checked against the key's
// policy: action (e.g. "kms:Decrypt") by the caller on k, with extra
// condition keys (encryption context, attestation). A refusal is an
// AccessDeniedException phrased as KMS phrases it, and the log says which
// statement or condition decided.
func (s *Server) authorize(c *call, action string, r resolved, p *policy.Policy, extra map[string][]string) error {
	k := r.key
	ctx := map[string][]string{
		"kms:CallerAccount":         {c.account},
		"kms:GrantIsForAWSResource": {"false"},
		"aws:PrincipalArn":          {principalARN(c.principal)},
		"aws:PrincipalAccount":      {c.account},
		"kms:KeySpec":               {k.spec()},
		"kms:KeyUsage":              {k.usage()},
		"kms:KeyOrigin":             {"AWS_KMS"},
		"kms:MultiRegion":           {"false"},
	}
	if r.alias != "" {
		ctx["kms:RequestAlias"] = []string{r.alias}
	}
	maps.Copy(ctx, extra)
	if p == nil {
		p = k.parsed
	}
	if p == nil {
		return fmt.Errorf("key %s has no parsed policy", k.ID)
	}
	d := p.Evaluate(policy.Request{Principal: c.principal, Action: action, Resource: k.arn(), Context: ctx})
	if d.Allowed {
		c.log.Debug("key policy allows", "action", action, "key_arn", k.arn(), "statement", d.Statement)
		return nil
	}
	why := "because no resource-based policy allows the " + action + " action"
	if d.ExplicitDeny {
		why = "with an explicit deny in a resource-based policy"
	}
	c.log.Warn("key policy denies", "action", action, "key_arn", k.arn(),
		"explicit_deny", d.ExplicitDeny, "statement", d.Statement, "reason", d.Reason)
	return &APIError{
		Code:    CodeAccessDenied,
		Message: fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s %s", c.principal, action, k.arn(), why),
		Status:  http.StatusBadRequest,
	}
}

// principalARN is what AWS puts in aws:PrincipalArn: for an assumed-role
// session (arn:aws:sts::A:assumed-role/NAME/SESSION) the role's ARN
// (arn:aws:iam::A:role/NAME), otherwise the caller's ARN. (A role with a
// path loses it in the session ARN; the emulator cannot recover it.)
func principalARN(caller string) string {
	parts := strings.SplitN(caller, ":", 6)
	if len(parts) == 6 && parts[2] == "sts" {
		if rest, ok := strings.CutPrefix(parts[5], "assumed-role/"); ok {
			if name, _, ok := strings.Cut(rest, "/"); ok {
				return "arn:" + parts[1] + ":iam::" + parts[4] + ":role/" + name
			}
		}
	}
	return caller
}

package policy

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

const (
	keyARN         = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	enclaveSession = "arn:aws:sts::123456789012:assumed-role/NitroEnclaveInstanceRole/i-1234567890abcdef0"
)

// withStatements returns the guide's full policy with extra statements
// (JSON objects) appended.
func withStatements(t *testing.T, extra ...[]byte) *Policy {
	t.Helper()
	p := mustParse(t, string(guide(t, "policy.json")))
	for _, e := range extra {
		s := mustParse(t, `{"Statement":`+string(e)+`}`)
		p.Statements = append(p.Statements, s.Statements...)
	}
	return p
}

func attested(pcrs map[string]string) map[string][]string {
	ctx := map[string][]string{}
	for k, v := range pcrs {
		ctx[k] = []string{v}
	}
	return ctx
}

type evalCase struct {
	name      string
	req       Request
	allowed   bool
	deny      bool   // explicit deny expected
	statement string // deciding statement, when checked
	reason    string // substring of Reason, when checked
}

func runEval(t *testing.T, p *Policy, tests []evalCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.Resource == "" {
				tt.req.Resource = keyARN
			}
			d := p.Evaluate(tt.req)
			if d.Allowed != tt.allowed || d.ExplicitDeny != tt.deny {
				t.Fatalf("decision = %+v\nwant allowed=%v explicit deny=%v", d, tt.allowed, tt.deny)
			}
			if tt.statement != "" && d.Statement != tt.statement {
				t.Errorf("decided by %q, want %q", d.Statement, tt.statement)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason:\n got %q\nwant containing %q", d.Reason, tt.reason)
			}
		})
	}
}

func TestEvaluateGuidePolicy(t *testing.T) {
	p := withStatements(t)
	other := hex.EncodeToString(pcr.Image([]byte("some other image")))
	runEval(t, p, []evalCase{
		{name: "pinned PCR0 decrypts", allowed: true, statement: SidEnclaveDecrypt, reason: "allowed by statement AllowEnclaveDecrypt",
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: guidePCR0})}},
		{name: "uppercase PCR0 and key name in another case", allowed: true,
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{"KMS:recipientattestation:imagesha384": strings.ToUpper(guidePCR0)})}},
		{name: "role ARN itself", allowed: true,
			req: Request{Principal: enclaveRole, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: guidePCR0})}},
		{name: "other PCR0 denied", reason: `condition is not met: StringEqualsIgnoreCase kms:RecipientAttestation:ImageSha384: the request has "` + other,
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: other})}},
		{name: "debug PCR0 denied without the debug statement",
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: ZeroPCR})}},
		{name: "no attestation denied", reason: "no valid attestation document",
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt"}},
		{name: "attestation keys with no values are absent", reason: "no valid attestation document",
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: map[string][]string{KeyImageSha384: {}}}},
		{name: "PCR0 under the PCR0 key is not ImageSha384",
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyPCR(0): guidePCR0})}},
		{name: "session of another role", reason: "no statement allows kms:Decrypt",
			req: Request{Principal: "arn:aws:sts::123456789012:assumed-role/OtherRole/i-1", Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: guidePCR0})}},
		{name: "session of a role with a longer name",
			req: Request{Principal: "arn:aws:sts::123456789012:assumed-role/NitroEnclaveInstanceRoleX/i-1", Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: guidePCR0})}},
		{name: "same role name in another account",
			req: Request{Principal: "arn:aws:sts::999999999999:assumed-role/NitroEnclaveInstanceRole/i-1", Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: guidePCR0})}},
		{name: "session ARN without a session name",
			req: Request{Principal: "arn:aws:sts::123456789012:assumed-role/NitroEnclaveInstanceRole", Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: guidePCR0})}},
		{name: "session ARN with an empty session name",
			req: Request{Principal: "arn:aws:sts::123456789012:assumed-role/NitroEnclaveInstanceRole/", Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: guidePCR0})}},
		{name: "enclave role may not encrypt", reason: "statement AllowEnclaveDecrypt does not cover action kms:Encrypt",
			req: Request{Principal: enclaveSession, Action: "kms:Encrypt"}},
		{name: "KeyManagementRole encrypts", allowed: true, statement: SidEncrypt,
			req: Request{Principal: "arn:aws:sts::123456789012:assumed-role/KeyManagementRole/ops", Action: "kms:Encrypt"}},
		{name: "KeyManagementRole may not decrypt",
			req: Request{Principal: "arn:aws:sts::123456789012:assumed-role/KeyManagementRole/ops", Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: guidePCR0})}},
		{name: "admin puts a key policy through kms:Put*", allowed: true, statement: SidKeyAdministration,
			req: Request{Principal: adminRole, Action: "kms:PutKeyPolicy"}},
		{name: "action names are case-insensitive", allowed: true,
			req: Request{Principal: adminRole, Action: "KMS:putkeypolicy"}},
		{name: "admin may not decrypt",
			req: Request{Principal: adminRole, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: guidePCR0})}},
		{name: "admin grant for an AWS resource", allowed: true, statement: SidKeyAdministration,
			req: Request{Principal: adminRole, Action: "kms:CreateGrant", Context: map[string][]string{"kms:GrantIsForAWSResource": {"true"}}}},
		{name: "admin lists grants only through the grant statement", allowed: true, statement: SidKeyAdministration,
			req: Request{Principal: adminRole, Action: "kms:ListGrants"}},
		{name: "admin does not sign",
			req: Request{Principal: adminRole, Action: "kms:Sign"}},
	})
}

func TestEvaluateGrantCondition(t *testing.T) {
	// Only the grant statement, to see its Bool condition alone.
	p := mustParse(t, `{"Statement":`+string(statementJSON(t, withStatements(t), SidKeyUsageViaGrant))+`}`)
	runEval(t, p, []evalCase{
		{name: "for an AWS resource", allowed: true, req: Request{Principal: adminRole, Action: "kms:CreateGrant", Context: map[string][]string{"kms:grantisforawsresource": {"TRUE"}}}},
		{name: "not for an AWS resource", req: Request{Principal: adminRole, Action: "kms:CreateGrant", Context: map[string][]string{"kms:GrantIsForAWSResource": {"false"}}}},
		{name: "key missing", reason: "the request has no kms:GrantIsForAWSResource", req: Request{Principal: adminRole, Action: "kms:CreateGrant"}},
	})
}

func TestEvaluateGuideStatements(t *testing.T) {
	v1 := guidePCR0
	pcr3 := hex.EncodeToString(pcr.RoleARN(enclaveRole))
	t.Run("debug", func(t *testing.T) {
		p := withStatements(t, guide(t, "debug-statement.json"))
		runEval(t, p, []evalCase{
			{name: "all-zero PCR0", allowed: true, statement: SidDebugEnclaveDecrypt,
				req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: ZeroPCR})}},
			{name: "release PCR0 still", allowed: true, statement: SidEnclaveDecrypt,
				req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: v1})}},
			{name: "48 zeros is not the debug value",
				req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: ZeroPCR[:48]})}},
		})
	})
	t.Run("multi-version", func(t *testing.T) {
		p := mustParse(t, `{"Statement":`+string(guide(t, "multi-version-statement.json"))+`}`)
		runEval(t, p, []evalCase{
			{name: "version 1", allowed: true, req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: v1})}},
			{name: "version 2", allowed: true, req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: v2PCR0})}},
			{name: "version 3", req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: ZeroPCR})},
				reason: `the policy wants ["` + v1},
		})
	})
	t.Run("PCR0 and PCR3", func(t *testing.T) {
		p := mustParse(t, `{"Statement":`+string(guide(t, "pcr3-statement.json"))+`}`)
		wrong3 := hex.EncodeToString(pcr.RoleARN("arn:aws:iam::123456789012:role/Other"))
		runEval(t, p, []evalCase{
			{name: "both", allowed: true, req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: v1, KeyPCR(3): pcr3})}},
			{name: "PCR0 only", reason: "the request has no kms:RecipientAttestation:PCR3", req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: v1})}},
			{name: "wrong PCR3", req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: v1, KeyPCR(3): wrong3})}},
			{name: "wrong PCR0", req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: v2PCR0, KeyPCR(3): pcr3})}},
		})
	})
}

func TestEvaluateExplicitDeny(t *testing.T) {
	p := withStatements(t,
		[]byte(`{"Sid":"DenyInsecure","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}`),
		[]byte(`{"Sid":"DenyOtherImages","Effect":"Deny","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*","Condition":{"StringNotEqualsIgnoreCase":{"kms:RecipientAttestation:ImageSha384":"`+guidePCR0+`"}}}`),
	)
	good := attested(map[string]string{KeyImageSha384: guidePCR0})
	insecure := attested(map[string]string{KeyImageSha384: guidePCR0, "aws:SecureTransport": "false"})
	runEval(t, p, []evalCase{
		{name: "deny beats allow", deny: true, statement: "DenyInsecure", reason: "explicitly denied by statement DenyInsecure",
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: insecure}},
		{name: "deny does not apply", allowed: true, statement: SidEnclaveDecrypt,
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: good}},
		{name: "negated condition applies when the key is missing", deny: true, statement: "DenyOtherImages",
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt"}},
		{name: "negated condition applies to another image", deny: true, statement: "DenyOtherImages",
			req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: attested(map[string]string{KeyImageSha384: v2PCR0})}},
	})
}

func TestEvaluateAccountRoot(t *testing.T) {
	// AWS's default key policy.
	p := mustParse(t, `{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}`)
	bare := mustParse(t, `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"kms:*","Resource":"*"}]}`)
	for _, pol := range []*Policy{p, bare} {
		runEval(t, pol, []evalCase{
			{name: "role of the account", allowed: true, req: Request{Principal: enclaveRole, Action: "kms:Decrypt"}},
			{name: "session of the account", allowed: true, req: Request{Principal: enclaveSession, Action: "kms:Decrypt"}},
			{name: "user of the account", allowed: true, req: Request{Principal: "arn:aws:iam::123456789012:user/alice", Action: "kms:ScheduleKeyDeletion"}},
			{name: "root itself", allowed: true, req: Request{Principal: "arn:aws:iam::123456789012:root", Action: "kms:Decrypt"}},
			{name: "another account", req: Request{Principal: "arn:aws:sts::999999999999:assumed-role/NitroEnclaveInstanceRole/i-1", Action: "kms:Decrypt"}},
			{name: "another partition", req: Request{Principal: "arn:aws-cn:iam::123456789012:role/x", Action: "kms:Decrypt"}, allowed: pol == bare},
			{name: "not an ARN", req: Request{Principal: "alice", Action: "kms:Decrypt"}},
		})
	}
	if d := p.Evaluate(Request{Principal: enclaveRole, Action: "kms:Decrypt", Resource: keyARN}); d.Statement != "Enable IAM User Permissions" {
		t.Errorf("decided by %q", d.Statement)
	}
}

func TestEvaluateElements(t *testing.T) {
	p := mustParse(t, `{"Statement":[
		{"Effect":"Allow","Principal":"*","Action":"kms:Describe*","Resource":"arn:aws:kms:*:123456789012:key/*"},
		{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Get?eyPolicy","Resource":"*"},
		{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/path/to/Pathed"},"NotAction":["kms:Decrypt","kms:Schedule*"],"NotResource":"arn:aws:kms:*:*:key/secret"},
		{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:role/Excluded"},"Action":"kms:ListGrants","Resource":"*"},
		{"Effect":"Allow","Principal":{"Service":"logs.amazonaws.com"},"Action":"kms:Encrypt","Resource":"*"}
	]}`)
	runEval(t, p, []evalCase{
		{name: "resource wildcard", allowed: true, statement: "Statement[0]", req: Request{Principal: "arn:aws:iam::1:user/u", Action: "kms:DescribeKey"}},
		{name: "resource of another account", req: Request{Principal: "arn:aws:iam::1:user/u", Action: "kms:DescribeKey", Resource: "arn:aws:kms:us-east-1:999999999999:key/x"}},
		{name: "question mark", allowed: true, req: Request{Principal: "arn:aws:iam::1:user/u", Action: "kms:GetKeyPolicy"}},
		{name: "resource is case-sensitive", req: Request{Principal: "arn:aws:iam::1:user/u", Action: "kms:DescribeKey", Resource: strings.ToUpper(keyARN)}},
		{name: "NotAction admits other actions", allowed: true, statement: "Statement[2]", req: Request{Principal: "arn:aws:sts::123456789012:assumed-role/Pathed/s", Action: "kms:Encrypt"}},
		{name: "NotAction excludes", req: Request{Principal: "arn:aws:sts::123456789012:assumed-role/Pathed/s", Action: "kms:ScheduleKeyDeletion"}},
		{name: "NotResource excludes", req: Request{Principal: "arn:aws:sts::123456789012:assumed-role/Pathed/s", Action: "kms:Encrypt", Resource: "arn:aws:kms:us-east-1:123456789012:key/secret"}},
		{name: "NotPrincipal admits others", allowed: true, req: Request{Principal: "arn:aws:iam::123456789012:role/Other", Action: "kms:ListGrants"}},
		{name: "NotPrincipal excludes the role's sessions", req: Request{Principal: "arn:aws:sts::123456789012:assumed-role/Excluded/s", Action: "kms:ListGrants"}},
		{name: "service principal", allowed: true, req: Request{Principal: "logs.amazonaws.com", Action: "kms:Encrypt"}},
		{name: "service principal is not an ARN match", req: Request{Principal: "arn:aws:iam::1:role/logs.amazonaws.com", Action: "kms:Encrypt"}},
	})
}

func TestEvaluateUnknownOperator(t *testing.T) {
	p := mustParse(t, `{"Statement":[
		{"Sid":"A","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEqualz":{"aws:username":"x"}}},
		{"Sid":"B","Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*"},
		{"Sid":"D","Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{"NullIfExists":{"aws:username":"true"}}}
	]}`)
	runEval(t, p, []evalCase{
		{name: "an unknown operator never allows", reason: `unknown condition operator "StringEqualz"`, req: Request{Principal: "arn:aws:iam::1:user/x", Action: "kms:Decrypt", Context: map[string][]string{"aws:username": {"x"}}}},
		{name: "an invalid operator in a Deny always denies", deny: true, statement: "D", reason: "Null takes neither IfExists", req: Request{Principal: "arn:aws:iam::1:user/x", Action: "kms:Encrypt"}},
	})
}

func TestEvaluateDerivedContext(t *testing.T) {
	p := mustParse(t, `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{
		"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:role/NitroEnclaveInstanceRole"},
		"StringEquals":{"kms:CallerAccount":"123456789012","aws:PrincipalAccount":"123456789012"}}}]}`)
	runEval(t, p, []evalCase{
		{name: "session's principal ARN is its role", allowed: true, req: Request{Principal: enclaveSession, Action: "kms:Decrypt"}},
		{name: "another role", req: Request{Principal: "arn:aws:iam::123456789012:role/Other", Action: "kms:Decrypt"}},
		{name: "caller-supplied keys win", req: Request{Principal: enclaveSession, Action: "kms:Decrypt", Context: map[string][]string{"kms:calleraccount": {"1"}}}},
	})
}

func TestEvalKey(t *testing.T) {
	type kc struct {
		op      string
		want    []string
		have    []string // nil: key absent
		matches bool
	}
	tests := []kc{
		{"StringEquals", []string{"a", "b"}, []string{"b"}, true},
		{"StringEquals", []string{"a"}, []string{"A"}, false},
		{"StringEquals", []string{"a"}, nil, false},
		{"StringNotEquals", []string{"a"}, nil, true},
		{"StringNotEquals", []string{"a", "b"}, []string{"b"}, false},
		{"StringNotEquals", []string{"a"}, []string{"c"}, true},
		{"StringEqualsIfExists", []string{"a"}, nil, true},
		{"StringEqualsIfExists", []string{"a"}, []string{"c"}, false},
		{"StringEqualsIgnoreCase", []string{"AbC"}, []string{"aBc"}, true},
		{"StringNotEqualsIgnoreCase", []string{"AbC"}, []string{"aBc"}, false},
		{"StringNotEqualsIgnoreCase", []string{"AbC"}, nil, true},
		{"StringLike", []string{"ab*"}, []string{"abc"}, true},
		{"StringLike", []string{"ab*"}, []string{"Abc"}, false},
		{"StringNotLike", []string{"ab*"}, []string{"xbc"}, true},
		{"StringNotLike", []string{"ab*"}, []string{"abc"}, false},
		{"ForAnyValue:StringEquals", []string{"a"}, []string{"x", "a"}, true},
		{"ForAnyValue:StringEquals", []string{"a"}, []string{"x", "y"}, false},
		{"ForAnyValue:StringEquals", []string{"a"}, nil, false},
		{"ForAnyValue:StringNotEquals", []string{"a"}, []string{"a", "y"}, true},
		{"ForAnyValue:StringNotEquals", []string{"a"}, []string{"a"}, false},
		{"ForAllValues:StringEquals", []string{"a", "b"}, []string{"a", "b"}, true},
		{"ForAllValues:StringEquals", []string{"a"}, []string{"a", "b"}, false},
		{"ForAllValues:StringEquals", []string{"a"}, nil, true},
		{"ForAllValues:StringNotEquals", []string{"a"}, []string{"b", "c"}, true},
		{"ForAllValues:StringNotEquals", []string{"a"}, []string{"b", "a"}, false},
		{"Null", []string{"true"}, nil, true},
		{"Null", []string{"true"}, []string{"x"}, false},
		{"Null", []string{"false"}, []string{"x"}, true},
		{"Null", []string{"false"}, nil, false},
		{"Bool", []string{"true"}, []string{"True"}, true},
		{"Bool", []string{"true"}, []string{"false"}, false},
		{"Bool", []string{"true"}, nil, false},
		{"BoolIfExists", []string{"true"}, nil, true},
		{"NumericLessThan", []string{"10"}, []string{"9.5"}, true},
		{"NumericLessThan", []string{"10"}, []string{"10"}, false},
		{"NumericLessThanEquals", []string{"10"}, []string{"10"}, true},
		{"NumericGreaterThan", []string{"10"}, []string{"11"}, true},
		{"NumericGreaterThanEquals", []string{"10"}, []string{"9"}, false},
		{"NumericEquals", []string{"10"}, []string{"1e1"}, true},
		{"NumericNotEquals", []string{"10"}, []string{"11"}, true},
		{"NumericEquals", []string{"10"}, []string{"ten"}, false},
		{"DateLessThan", []string{"2025-01-01T00:00:00Z"}, []string{"2024-12-31T23:59:59Z"}, true},
		{"DateGreaterThan", []string{"2025-01-01"}, []string{"1735689601"}, true},
		{"DateEquals", []string{"2025-01-01T00:00:00Z"}, []string{"2025-01-01T01:00:00+01:00"}, true},
		{"DateNotEquals", []string{"2025-01-01T00:00:00Z"}, []string{"2025-01-02T00:00:00Z"}, true},
		{"DateLessThanEquals", []string{"x"}, []string{"2025-01-01"}, false},
		{"IpAddress", []string{"10.0.0.0/8"}, []string{"10.1.2.3"}, true},
		{"IpAddress", []string{"10.0.0.0/8", "192.0.2.1"}, []string{"192.0.2.1"}, true},
		{"IpAddress", []string{"10.0.0.0/8"}, []string{"11.1.2.3"}, false},
		{"NotIpAddress", []string{"10.0.0.0/8"}, []string{"11.1.2.3"}, true},
		{"IpAddress", []string{"10.0.0.0/8"}, []string{"nope"}, false},
		{"ArnLike", []string{"arn:aws:iam::*:role/Nitro*"}, []string{"arn:aws:iam::123456789012:role/NitroEnclaveInstanceRole"}, true},
		{"ArnEquals", []string{"arn:aws:iam::*:role/x"}, []string{"arn:aws:iam::1:role/y"}, false},
		{"ArnNotLike", []string{"arn:aws:iam::*:role/x"}, []string{"arn:aws:iam::1:role/y"}, true},
		{"ArnLike", []string{"arn:aws:iam::*:role/x"}, []string{"not-an-arn"}, false},
		{"BinaryEquals", []string{"QUJD"}, []string{"QUJD"}, true},
	}
	for _, tt := range tests {
		op, err := parseOperator(tt.op)
		if err != nil {
			t.Fatalf("parseOperator(%q): %v", tt.op, err)
		}
		if got := evalKey(op, tt.want, tt.have, tt.have != nil); got != tt.matches {
			t.Errorf("%s %q against request %q: got %v, want %v", tt.op, tt.want, tt.have, got, tt.matches)
		}
	}
	for _, bad := range []string{"StringEqualz", "ForSomeValues:StringEquals", "NullIfExists", "ForAnyValue:Null", "IfExists", ""} {
		if _, err := parseOperator(bad); err == nil {
			t.Errorf("parseOperator(%q) accepted", bad)
		}
	}
	if op, err := parseOperator("forallvalues:stringequalsignorecaseifexists"); err != nil || op.exact || op.name != "ForAllValues:StringEqualsIgnoreCaseIfExists" {
		t.Errorf("lowercase operator: %+v, %v", op, err)
	}
}

// TestPrincipalMatching: which callers each kind of Principal element
// admits. A caller is an IAM identity, named by its ARN (a user, a role,
// an assumed-role session, an account root), or an AWS service acting in
// its own name, named by its service principal. AWS matches by type: a
// Service, Federated or CanonicalUser entry never admits an IAM identity,
// whatever its text, nor an AWS entry a service.
func TestPrincipalMatching(t *testing.T) {
	const (
		acct    = "123456789012"
		role    = "arn:aws:iam::" + acct + ":role/NitroEnclaveInstanceRole"
		session = "arn:aws:sts::" + acct + ":assumed-role/NitroEnclaveInstanceRole/i-1234567890abcdef0"
		user    = "arn:aws:iam::" + acct + ":user/alice"
		root    = "arn:aws:iam::" + acct + ":root"
		service = "logs.amazonaws.com"
	)
	tests := []struct {
		name      string
		principal string // the statement's Principal element, JSON
		not       bool   // NotPrincipal instead
		caller    string
		want      bool
	}{
		{"Service naming the caller's ARN", `{"Service":"` + session + `"}`, false, session, false},
		{"Federated naming the caller's ARN", `{"Federated":"` + session + `"}`, false, session, false},
		{"CanonicalUser naming the caller's ARN", `{"CanonicalUser":"` + role + `"}`, false, role, false},
		{"Service admits that service", `{"Service":"` + service + `"}`, false, service, true},
		{"Service in a list", `{"Service":["ec2.amazonaws.com","` + service + `"]}`, false, service, true},
		{"Service does not admit another service", `{"Service":"` + service + `"}`, false, "ec2.amazonaws.com", false},
		{"Service does not admit an IAM role", `{"Service":"` + service + `"}`, false, role, false},
		{"AWS naming a service does not admit it", `{"AWS":"` + service + `"}`, false, service, false},
		{"AWS wildcard admits a session", `{"AWS":"*"}`, false, session, true},
		{"AWS wildcard admits a user", `{"AWS":"*"}`, false, user, true},
		{"AWS wildcard does not admit a service", `{"AWS":"*"}`, false, service, false},
		{"bare wildcard admits a service", `"*"`, false, service, true},
		{"bare wildcard admits a session", `"*"`, false, session, true},
		{"bare account id admits its session", `{"AWS":"` + acct + `"}`, false, session, true},
		{"bare account id refuses another account", `{"AWS":"` + acct + `"}`, false, "arn:aws:sts::999999999999:assumed-role/NitroEnclaveInstanceRole/i-1", false},
		{"account root admits its session", `{"AWS":"` + root + `"}`, false, session, true},
		{"account root admits its user", `{"AWS":"` + root + `"}`, false, user, true},
		{"account root admits its role", `{"AWS":"` + root + `"}`, false, role, true},
		{"account root refuses another account", `{"AWS":"` + root + `"}`, false, "arn:aws:iam::999999999999:user/alice", false},
		{"account root refuses a service", `{"AWS":"` + root + `"}`, false, service, false},
		{"role admits its assumed-role session", `{"AWS":"` + role + `"}`, false, session, true},
		{"role admits itself", `{"AWS":"` + role + `"}`, false, role, true},
		{"role with a path admits its session", `{"AWS":"arn:aws:iam::` + acct + `:role/ops/NitroEnclaveInstanceRole"}`, false, session, true},
		{"role refuses another role's session", `{"AWS":"` + role + `"}`, false, "arn:aws:sts::" + acct + ":assumed-role/Other/i-1", false},
		{"role refuses a longer role name's session", `{"AWS":"` + role + `"}`, false, "arn:aws:sts::" + acct + ":assumed-role/NitroEnclaveInstanceRoleX/i-1", false},
		{"role refuses the same name in another account", `{"AWS":"` + role + `"}`, false, "arn:aws:sts::999999999999:assumed-role/NitroEnclaveInstanceRole/i-1", false},
		{"role refuses a user of the same name", `{"AWS":"` + role + `"}`, false, "arn:aws:iam::" + acct + ":user/NitroEnclaveInstanceRole", false},
		{"role refuses a session ARN without a session name", `{"AWS":"` + role + `"}`, false, "arn:aws:sts::" + acct + ":assumed-role/NitroEnclaveInstanceRole", false},
		{"session principal admits that session", `{"AWS":"` + session + `"}`, false, session, true},
		{"session principal refuses another session of the role", `{"AWS":"` + session + `"}`, false, "arn:aws:sts::" + acct + ":assumed-role/NitroEnclaveInstanceRole/i-0000000000000000f", false},
		{"session principal refuses the role itself", `{"AWS":"` + session + `"}`, false, role, false},
		{"wildcard inside an ARN is literal", `{"AWS":"arn:aws:iam::` + acct + `:role/*"}`, false, session, false},
		{"user admits itself", `{"AWS":"` + user + `"}`, false, user, true},
		{"user refuses a session", `{"AWS":"` + user + `"}`, false, session, false},
		{"another partition", `{"AWS":"arn:aws-cn:iam::` + acct + `:root"}`, false, session, false},
		{"NotPrincipal Service does not exclude an IAM caller", `{"Service":"` + session + `"}`, true, session, true},
		{"NotPrincipal role excludes its session", `{"AWS":"` + role + `"}`, true, session, false},
		{"NotPrincipal AWS does not exclude a service", `{"AWS":"` + service + `"}`, true, service, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			elem := "Principal"
			if tt.not {
				elem = "NotPrincipal"
			}
			p := mustParse(t, `{"Statement":[{"Effect":"Allow","`+elem+`":`+tt.principal+`,"Action":"kms:Decrypt","Resource":"*"}]}`)
			d := p.Evaluate(Request{Principal: tt.caller, Action: "kms:Decrypt", Resource: keyARN})
			if d.Allowed != tt.want {
				t.Fatalf("%s %s, caller %s:\n got  allowed=%v (%s)\n want allowed=%v", elem, tt.principal, tt.caller, d.Allowed, d.Reason, tt.want)
			}
		})
	}
}

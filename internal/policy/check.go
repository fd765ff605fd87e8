package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Severity of a Finding.
type Severity string

const (
	// SeverityError marks a policy that defeats attestation, or one KMS
	// would evaluate differently from what it says.
	SeverityError Severity = "error"
	// SeverityWarning marks a risk an operator should know about.
	SeverityWarning Severity = "warning"
)

// Rule names, stable identifiers of Check's rules.
const (
	RuleUnknownOperator       = "unknown-operator"
	RuleOperatorCase          = "operator-case"
	RuleUnknownConditionKey   = "unknown-condition-key"
	RulePCRValue              = "pcr-value"
	RuleCaseSensitiveOperator = "case-sensitive-operator"
	RuleZeroPCR               = "zero-pcr"
	RuleDecryptNoAttestation  = "decrypt-without-attestation"
	RuleAttestationNotImage   = "attestation-not-image-pinned"
	RuleWildcardPrincipal     = "wildcard-principal"
	RuleIndirectDecrypt       = "indirect-decrypt"
	RuleLockout               = "lockout"
	RuleUnknownAction         = "unknown-action"
	RuleDuplicateSid          = "duplicate-sid"
	RuleEncryptByEnclave      = "encrypt-by-enclave-role"
)

// Finding is one lint result.
type Finding struct {
	Severity Severity `json:"severity"`
	Rule     string   `json:"rule"`
	// Sid labels the statement (its Sid, or "Statement[i]"); empty for a
	// finding about the whole policy.
	Sid  string `json:"sid,omitempty"`
	What string `json:"what"`
	Why  string `json:"why"`
}

// String formats f on one line: "error   Sid: what (why)".
func (f Finding) String() string {
	where := ""
	if f.Sid != "" {
		where = f.Sid + ": "
	}
	return fmt.Sprintf("%-7s %s%s (%s)", f.Severity, where, f.What, f.Why)
}

// HasErrors reports whether any finding is an error.
func HasErrors(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Severity == SeverityError })
}

// kmsActions are the KMS API actions, to expand wildcards such as kms:Re*
// and to spot misspelt action names.
var kmsActions = []string{
	"CancelKeyDeletion", "ConnectCustomKeyStore", "CreateAlias", "CreateCustomKeyStore",
	"CreateGrant", "CreateKey", "Decrypt", "DeleteAlias", "DeleteCustomKeyStore",
	"DeleteImportedKeyMaterial", "DeriveSharedSecret", "DescribeCustomKeyStores",
	"DescribeKey", "DisableKey", "DisableKeyRotation", "DisconnectCustomKeyStore",
	"EnableKey", "EnableKeyRotation", "Encrypt", "GenerateDataKey", "GenerateDataKeyPair",
	"GenerateDataKeyPairWithoutPlaintext", "GenerateDataKeyWithoutPlaintext", "GenerateMac",
	"GenerateRandom", "GetKeyPolicy", "GetKeyRotationStatus", "GetParametersForImport",
	"GetPublicKey", "ImportKeyMaterial", "ListAliases", "ListGrants", "ListKeyPolicies",
	"ListKeyRotations", "ListKeys", "ListResourceTags", "ListRetirableGrants", "PutKeyPolicy",
	"ReEncryptFrom", "ReEncryptTo", "ReplicateKey", "RetireGrant", "RevokeGrant",
	"RotateKeyOnDemand", "ScheduleKeyDeletion", "Sign", "SynchronizeMultiRegionKey",
	"TagResource", "UntagResource", "UpdateAlias", "UpdateCustomKeyStore",
	"UpdateKeyDescription", "UpdatePrimaryRegion", "Verify", "VerifyMac",
}

// decryptActions return plaintext of (or derived from) the key, the
// actions that accept a Recipient attestation document. ReEncryptFrom
// moves ciphertext under a key its caller may control.
var decryptActions = []string{
	"kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair",
	"kms:GenerateRandom", "kms:DeriveSharedSecret", "kms:ReEncryptFrom",
}

// encryptActions make a ciphertext under the key from a plaintext the
// caller chooses: a sealed identity that a signerd pinned to this key
// accepts. (GenerateDataKey's plaintext is random, not an identity.)
var encryptActions = []string{"kms:Encrypt", "kms:ReEncryptTo"}

// indirectActions let a principal obtain decryption another way: a grant
// (which key-policy conditions do not constrain) or a new key policy.
var indirectActions = []string{"kms:CreateGrant", "kms:PutKeyPolicy"}

// grantedActions returns which of actions statement s covers.
func grantedActions(s *Statement, actions []string) []string {
	var out []string
	for _, a := range actions {
		if actionMatches(s, a) {
			out = append(out, a)
		}
	}
	return out
}

// describeGrants lists actions, grouped by the pattern of s that grants
// them when it is not the action itself: "kms:Decrypt, kms:GenerateDataKey
// (through kms:*)".
func describeGrants(s *Statement, actions []string) string {
	var order []string
	groups := map[string][]string{}
	for _, a := range actions {
		via := ""
		if s.NotAction.Set() {
			via = "NotAction"
		} else {
			for _, pat := range s.Action.List {
				if glob(pat, a, true) {
					if !strings.EqualFold(pat, a) {
						via = pat
					}
					break
				}
			}
		}
		if _, ok := groups[via]; !ok {
			order = append(order, via)
		}
		groups[via] = append(groups[via], a)
	}
	parts := make([]string, len(order))
	for i, via := range order {
		parts[i] = strings.Join(groups[via], ", ")
		if via != "" {
			parts[i] += " (through " + via + ")"
		}
	}
	return strings.Join(parts, "; ")
}

// Check lints a key policy for enclave-signer's key. production makes an
// all-zero PCR (a debug-mode enclave) an error instead of a warning. The
// findings are in statement order, policy-wide ones last.
func Check(p *Policy, production bool) []Finding {
	var out []Finding
	add := func(sev Severity, rule, sid, what, why string) {
		out = append(out, Finding{Severity: sev, Rule: rule, Sid: sid, What: what, Why: why})
	}
	sids := map[string]int{}
	adminExists := false
	enclaves := enclaveCallers(p)
	for i, s := range p.Statements {
		label := p.Label(i)
		if s.Sid != "" {
			sids[s.Sid]++
			if sids[s.Sid] == 2 {
				add(SeverityWarning, RuleDuplicateSid, label, fmt.Sprintf("Sid %q is used by more than one statement", s.Sid),
					"tools that update the policy find statements by Sid, and KMS may reject duplicate Sids")
			}
		}
		checkActions(s, label, add)
		checkConditions(s, label, production, add)
		if s.Effect != Allow {
			continue
		}
		if len(grantedActions(s, []string{"kms:PutKeyPolicy"})) > 0 {
			adminExists = true
		}
		decrypt := grantedActions(s, decryptActions)
		wildcard := s.NotPrincipal != nil || s.Principal.Any || slices.ContainsFunc(s.Principal.Entries, func(e PrincipalEntry) bool {
			return slices.Contains(e.Values.List, "*")
		})
		switch {
		case wildcard && len(decrypt) > 0:
			add(SeverityError, RuleWildcardPrincipal, label, fmt.Sprintf("allows %s to every principal (\"*\" or NotPrincipal)", describeGrants(s, decrypt)),
				"anyone in any AWS account who can reach KMS is a candidate caller; name the enclave's role instead")
		case wildcard:
			add(SeverityWarning, RuleWildcardPrincipal, label, "allows every principal (\"*\" or NotPrincipal)",
				"anyone in any AWS account who can reach KMS is a candidate caller; name the roles that need the key")
		}
		if len(decrypt) > 0 && !guardedByDeny(p, decrypt) {
			switch attested, image := attestationStrength(s); {
			case !attested:
				add(SeverityError, RuleDecryptNoAttestation, label,
					fmt.Sprintf("allows %s without requiring a kms:RecipientAttestation condition", describeGrants(s, decrypt)),
					"KMS grants the union of all Allow statements, so the parent instance (or anyone with these credentials) can decrypt without an attestation document and read the plaintext the enclave exists to protect; AWS's default key policy (account root, kms:*) is such a statement")
			case !image:
				add(SeverityWarning, RuleAttestationNotImage, label,
					fmt.Sprintf("requires an attestation document for %s but does not pin the enclave image (ImageSha384, PCR0 or PCR8)", describeGrants(s, decrypt)),
					"any enclave image, including one the parent's administrator builds, can present such a document")
			}
		}
		if enc := grantedActions(s, encryptActions); len(enc) > 0 {
			if attested, _ := attestationStrength(s); !attested {
				for _, ec := range enclaves {
					if !principalMatches(s, ec.caller) && !namesSessionOf(s, ec.caller) {
						continue
					}
					sev, why := SeverityWarning, "whoever may encrypt under this key can seal an identity that a signerd pinned to it accepts; the enclave's role has its credentials on the parent instance, so root there could seal an identity of its own and provision it"
					if production {
						sev = SeverityError
					}
					add(sev, RuleEncryptByEnclave, label, fmt.Sprintf("allows %s to %s, the role that decrypts with an attestation document (the enclave's, in %s)", describeGrants(s, enc), ec.role, ec.sid),
						why+"; fix: grant kms:Encrypt only to a separate sealing role (signer policy render --encrypt-role ARN) that the parent instance cannot assume")
					break
				}
			}
		}
		if ind := grantedActions(s, indirectActions); len(ind) > 0 {
			var why []string
			if slices.Contains(ind, "kms:PutKeyPolicy") {
				why = append(why, "kms:PutKeyPolicy can rewrite this policy to drop the attestation condition")
			}
			if slices.Contains(ind, "kms:CreateGrant") {
				g := "kms:CreateGrant can give kms:Decrypt through a grant, which key-policy conditions do not constrain"
				for _, c := range s.Condition {
					for _, k := range c.Keys {
						if strings.EqualFold(k.Key, "kms:GrantIsForAWSResource") {
							g += " (kms:GrantIsForAWSResource limits this to grants that AWS services create for this principal)"
						}
					}
				}
				why = append(why, g)
			}
			add(SeverityWarning, RuleIndirectDecrypt, label, fmt.Sprintf("allows %s", describeGrants(s, ind)),
				strings.Join(why, "; ")+"; keep this to an administrator whose use is audited")
		}
	}
	if !adminExists {
		add(SeverityWarning, RuleLockout, "", "no statement allows kms:PutKeyPolicy to anyone",
			"nobody can change this policy once it is in force (a new PCR0 after a rebuild needs a policy update); only AWS Support can recover an unmanageable key")
	}
	return out
}

// enclaveCaller is a session of a role that an Allow statement lets
// decrypt with an attestation document: the enclave's role.
type enclaveCaller struct {
	role   string // as the policy names it
	caller string // a session ARN of it, to match other statements against
	sid    string // the statement's label
}

// enclaveCallers finds the roles the policy lets decrypt with an
// attestation document (the enclave's instance role), each with a
// session ARN of it: a role admits its sessions, so a statement whose
// principal admits that session (the role, the session itself, the
// account, "*") covers the enclave.
func enclaveCallers(p *Policy) []enclaveCaller {
	var out []enclaveCaller
	for i, s := range p.Statements {
		if s.Effect != Allow || s.Principal == nil || len(grantedActions(s, decryptActions)) == 0 {
			continue
		}
		if attested, _ := attestationStrength(s); !attested {
			continue
		}
		for _, e := range s.Principal.Entries {
			if e.Type != "AWS" {
				continue
			}
			for _, v := range e.Values.List {
				a, ok := splitARN(v)
				if !ok {
					continue
				}
				caller := v
				if rolePath, isRole := strings.CutPrefix(a.resource, "role/"); isRole && a.service == "iam" {
					caller = "arn:" + a.partition + ":sts::" + a.account + ":assumed-role/" + rolePath[strings.LastIndex(rolePath, "/")+1:] + "/enclave-session"
				} else if a.service != "sts" {
					continue // an account or user: not a role the instance runs with
				}
				out = append(out, enclaveCaller{role: v, caller: caller, sid: p.Label(i)})
			}
		}
	}
	return out
}

// namesSessionOf reports whether an Allow statement's principal names a
// session of the role whose session caller is (any session name: the
// instance role's sessions are named after the instance).
func namesSessionOf(s *Statement, caller string) bool {
	c, ok := splitARN(caller)
	if !ok || s.NotPrincipal != nil || s.Principal == nil {
		return false
	}
	role, _, _ := strings.Cut(strings.TrimPrefix(c.resource, "assumed-role/"), "/")
	for _, e := range s.Principal.Entries {
		for _, v := range e.Values.List {
			a, ok := splitARN(v)
			if !ok || e.Type != "AWS" || a.service != "sts" || a.partition != c.partition || a.account != c.account {
				continue
			}
			if r, _, _ := strings.Cut(strings.TrimPrefix(a.resource, "assumed-role/"), "/"); strings.HasPrefix(a.resource, "assumed-role/") && r == role {
				return true
			}
		}
	}
	return false
}

func checkActions(s *Statement, label string, add func(Severity, string, string, string, string)) {
	list := s.Action.List
	if s.NotAction.Set() {
		list = s.NotAction.List
	}
	for _, a := range list {
		if a == "*" {
			continue
		}
		svc, name, ok := strings.Cut(a, ":")
		if !ok || !strings.EqualFold(svc, "kms") {
			add(SeverityWarning, RuleUnknownAction, label, fmt.Sprintf("action %q is not a KMS action", a),
				"a key policy only governs KMS actions on this key; other services' actions never apply")
			continue
		}
		if !slices.ContainsFunc(kmsActions, func(k string) bool { return glob(name, k, true) }) {
			add(SeverityWarning, RuleUnknownAction, label, fmt.Sprintf("action %q matches no KMS action", a),
				"a misspelt action grants nothing; see the KMS API reference for the action names")
		}
	}
}

func checkConditions(s *Statement, label string, production bool, add func(Severity, string, string, string, string)) {
	for _, c := range s.Condition {
		op, err := parseOperator(c.Operator)
		if err != nil {
			add(SeverityError, RuleUnknownOperator, label, err.Error(),
				"KMS rejects the policy (MalformedPolicyDocumentException); known operators are StringEquals, StringEqualsIgnoreCase, StringLike, Bool, Null, Numeric…, Date…, Arn…, IpAddress and their Not/IfExists/ForAnyValue:/ForAllValues: forms")
			continue
		}
		if !op.exact {
			add(SeverityWarning, RuleOperatorCase, label, fmt.Sprintf("condition operator %q is written %q in AWS's documentation", c.Operator, op.name),
				"write operators as AWS documents them so every tool reads them the same way")
		}
		for _, k := range c.Keys {
			switch class, hint := classifyKey(k.Key); class {
			case keyUnknownKMS, keyOtherService:
				what := fmt.Sprintf("condition key %q is not a key KMS sets", k.Key)
				if hint != "" {
					what += fmt.Sprintf(" (did you mean %q?)", hint)
				}
				add(SeverityError, RuleUnknownConditionKey, label, what,
					"a key absent from every request makes a positive condition never match and a negated one always match, so the statement does not do what it says")
			case keyUnknownGlobal:
				what := fmt.Sprintf("condition key %q is not a known AWS global key", k.Key)
				if hint != "" {
					what += fmt.Sprintf(" (did you mean %q?)", hint)
				}
				add(SeverityWarning, RuleUnknownConditionKey, label, what,
					"a key absent from the request changes what the condition means; check the spelling against the IAM global condition keys")
			}
			if !isAttestationKey(k.Key) || op.info.kind == opNull {
				continue
			}
			if op.info.kind == opString || op.info.kind == opStringLike {
				add(SeverityWarning, RuleCaseSensitiveOperator, label, fmt.Sprintf("%s compares %s case-sensitively", c.Operator, k.Key),
					"KMS documents StringEqualsIgnoreCase for PCR values; with a case-sensitive operator an uppercase value in the policy never matches the lowercase hex KMS compares")
			}
			for _, v := range k.Values.List {
				if strings.ContainsAny(v, "*?") && op.info.kind == opStringLike {
					continue
				}
				if !isHexPCR(v) {
					add(SeverityError, RulePCRValue, label, fmt.Sprintf("%s value %q is not a PCR value", k.Key, truncate(v)),
						fmt.Sprintf("Nitro PCRs are SHA-384: 96 hex characters with no 0x prefix; this value has %d characters and can never match", len(v)))
				}
			}
			if s.Effect == Allow && !op.info.negated && isZeroableKey(k.Key) {
				for _, v := range k.Values.List {
					if matchOne(op.info, v, ZeroPCR) {
						sev, why := SeverityWarning, "every debug-mode enclave presents all-zero PCR0, 1, 2 and 8, whatever its image; debug enclaves are for development only"
						if production {
							sev = SeverityError
							why = "every debug-mode enclave presents all-zero PCR0, 1, 2 and 8, whatever its image, and the parent can read a debug enclave's memory and console: a production key must not admit them"
						}
						add(sev, RuleZeroPCR, label, fmt.Sprintf("allows the all-zero %s (a debug-mode enclave)", k.Key), why)
						break
					}
				}
			}
		}
	}
}

// isZeroableKey reports whether debug mode zeroes the register key pins.
func isZeroableKey(key string) bool {
	if strings.EqualFold(key, KeyImageSha384) {
		return true
	}
	n, ok := attestationPCR(key)
	return ok && (n == 0 || n == 1 || n == 2 || n == 8)
}

func isHexPCR(v string) bool {
	_, err := normalizeHex(v)
	return err == nil
}

func truncate(v string) string {
	if len(v) > 120 {
		return v[:120] + "…"
	}
	return v
}

// attestationStrength says whether Allow statement s requires an
// attestation document (a positive condition on a RecipientAttestation key
// that a request without one cannot meet), and whether it pins the image.
func attestationStrength(s *Statement) (attested, image bool) {
	for _, c := range s.Condition {
		op, err := parseOperator(c.Operator)
		if err != nil || op.ifExists || op.set == "ForAllValues" || op.info.negated {
			continue
		}
		for _, k := range c.Keys {
			if !isAttestationKey(k.Key) {
				continue
			}
			switch op.info.kind {
			case opNull:
				if slices.ContainsFunc(k.Values.List, func(v string) bool { return strings.EqualFold(v, "false") }) &&
					!slices.ContainsFunc(k.Values.List, func(v string) bool { return strings.EqualFold(v, "true") }) {
					attested = true
				}
			case opString, opStringFold, opStringLike:
				attested = true
				exact := !slices.ContainsFunc(k.Values.List, func(v string) bool { return strings.ContainsAny(v, "*?") })
				if isImageKey(k.Key) && (op.info.kind != opStringLike || exact) {
					image = true
				}
			}
		}
	}
	return attested, image
}

// guardedByDeny reports whether, for each of actions, a Deny statement
// for every principal refuses requests whose attestation document is
// missing or shows another image: its only condition is one negated string
// comparison of an image key (e.g. StringNotEqualsIgnoreCase on
// ImageSha384), which holds both when the key is absent and when it
// differs. Anything more (a second key, a Null block) is ANDed and lets
// some such requests through, so it does not count.
func guardedByDeny(p *Policy, actions []string) bool {
	for _, a := range actions {
		guarded := false
		for _, s := range p.Statements {
			if s.Effect != Deny || !principalCoversEveryIAMIdentity(s.Principal) {
				continue
			}
			if !actionMatches(s, a) || !resourceMatches(s, "arn:aws:kms:region:000000000000:key/any") {
				continue
			}
			if len(s.Condition) != 1 || len(s.Condition[0].Keys) != 1 {
				continue
			}
			op, err := parseOperator(s.Condition[0].Operator)
			if err != nil || op.set != "" || !op.info.negated || op.info.kind != opString && op.info.kind != opStringFold {
				continue
			}
			if isImageKey(s.Condition[0].Keys[0].Key) {
				guarded = true
				break
			}
		}
		if !guarded {
			return false
		}
	}
	return true
}

// Validate reports what KMS itself refuses in a key policy that Parse
// accepts: an unknown condition operator (MalformedPolicyDocumentException
// in KMS). It is what the KMS emulator checks on CreateKey and
// PutKeyPolicy; Check reports the same problems among its findings.
func (p *Policy) Validate() error {
	for i, s := range p.Statements {
		for _, c := range s.Condition {
			if _, err := parseOperator(c.Operator); err != nil {
				return fmt.Errorf("policy: %s: Condition: %w", statementLabel(i, s), err)
			}
		}
	}
	return nil
}

// principalCoversEveryIAMIdentity reports whether a Principal element names
// every IAM identity of every account ("*", or an "AWS" entry "*"), as a
// guard must to cover whichever role the instance runs with. A "Service"
// entry "*" names AWS services, not the instance role.
func principalCoversEveryIAMIdentity(pr *Principal) bool {
	if pr == nil {
		return false
	}
	if pr.Any {
		return true
	}
	for _, e := range pr.Entries {
		if e.Type == "AWS" && slices.Contains(e.Values.List, "*") {
			return true
		}
	}
	return false
}

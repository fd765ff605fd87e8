package policy

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Request is one KMS API call to authorize against a key policy.
type Request struct {
	// Principal is the caller's ARN: an IAM role or user
	// (arn:aws:iam::000000000000:role/dev), an assumed-role session
	// (arn:aws:sts::000000000000:assumed-role/dev/i-123), or an account root
	// (arn:aws:iam::000000000000:root). A call an AWS service makes in its
	// own name carries the service principal instead (logs.amazonaws.com):
	// anything that is not an ARN is taken as one, and only a "Service"
	// principal entry matches it.
	Principal string
	// Action is the API action with its service prefix, e.g. "kms:Decrypt".
	Action string
	// Resource is the key ARN. Empty matches only a "*" resource pattern.
	Resource string
	// Context holds the request's condition keys (names in any case) and
	// their values, e.g. "kms:RecipientAttestation:ImageSha384": {"ab…"}
	// (present only when the request carried a valid attestation document),
	// "kms:EncryptionContext:purpose": {"x"}, "kms:GrantIsForAWSResource":
	// {"false"}. A key with no values is absent. When the caller leaves them
	// out, aws:PrincipalArn, aws:PrincipalAccount and kms:CallerAccount are
	// derived from Principal, as KMS always sets them.
	Context map[string][]string
}

// Decision is the outcome of evaluating a Request.
type Decision struct {
	// Allowed is true when an Allow statement matched and no Deny did.
	Allowed bool
	// ExplicitDeny is true when a Deny statement matched.
	ExplicitDeny bool
	// Statement is the label (Sid, or "Statement[i]" when it has none) of
	// the statement that decided: the matching Deny, or the first matching
	// Allow. Empty for an implicit deny.
	Statement string
	// Reason says why, in words for an operator; for an implicit deny it
	// names the nearest statement and the condition it failed. It holds
	// condition values from the request (PCRs, encryption context) but
	// never anything secret.
	Reason string
}

// Evaluate decides r as KMS evaluates a key policy on its own (there is no
// IAM here: an account-root principal admits every principal of that
// account): an explicit Deny wins; otherwise a matching Allow is needed;
// otherwise the request is implicitly denied.
//
// A statement matches when its Principal (or NotPrincipal), Action (or
// NotAction), Resource (or NotResource) and every condition match. Actions
// compare case-insensitively with * and ? wildcards, resources
// case-sensitively. Conditions: all operators and all keys must hold, one
// value of a key suffices; key names are case-insensitive; a missing key
// fails a positive operator and satisfies a negated one (StringNotEquals…),
// IfExists operators hold when the key is missing, ForAnyValue: and
// ForAllValues: compare sets as IAM documents. Policy variables (${…}) are
// compared literally. A statement with an operator this package does not
// know never allows, and a Deny with one always applies: an unknown
// operator can only deny.
func (p *Policy) Evaluate(r Request) Decision {
	ctx := normalizeContext(r)
	var allow *Decision
	var nearest string
	nearestScore := -1
	for i, s := range p.Statements {
		label := p.Label(i)
		score, why := 0, ""
		if !principalMatches(s, r.Principal) {
			why = fmt.Sprintf("statement %s does not name principal %s", label, r.Principal)
		} else if score++; !actionMatches(s, r.Action) {
			why = fmt.Sprintf("statement %s does not cover action %s", label, r.Action)
		} else if score++; !resourceMatches(s, r.Resource) {
			why = fmt.Sprintf("statement %s does not cover resource %s", label, r.Resource)
		} else {
			score++
			met, unmet, invalid := evalConditions(s.Condition, ctx)
			switch {
			case invalid != "" && s.Effect == Deny:
				met = true
				unmet = invalid
			case invalid != "":
				met = false
				unmet = invalid
			}
			if met && s.Effect == Deny {
				reason := fmt.Sprintf("explicitly denied by statement %s", label)
				if invalid != "" {
					reason += " (" + invalid + ")"
				}
				return Decision{ExplicitDeny: true, Statement: label, Reason: reason}
			}
			if met && allow == nil {
				allow = &Decision{Allowed: true, Statement: label, Reason: fmt.Sprintf("allowed by statement %s", label)}
			}
			why = fmt.Sprintf("statement %s would allow %s but its condition is not met: %s", label, r.Action, unmet)
		}
		if s.Effect == Allow && score > nearestScore {
			nearest, nearestScore = why, score
		}
	}
	if allow != nil {
		return *allow
	}
	reason := fmt.Sprintf("no statement allows %s to %s", r.Action, r.Principal)
	if nearestScore > 0 {
		reason += ": " + nearest
	}
	return Decision{Reason: reason}
}

func normalizeContext(r Request) map[string][]string {
	ctx := make(map[string][]string, len(r.Context)+3)
	for k, v := range r.Context {
		if len(v) > 0 {
			lk := strings.ToLower(k)
			ctx[lk] = append(ctx[lk], v...)
		}
	}
	if a, ok := splitARN(r.Principal); ok {
		derived := map[string]string{
			"aws:principalaccount": a.account,
			"kms:calleraccount":    a.account,
			"aws:principalarn":     r.Principal,
		}
		if a.service == "sts" {
			if rest, ok := strings.CutPrefix(a.resource, "assumed-role/"); ok {
				role, _, _ := strings.Cut(rest, "/")
				derived["aws:principalarn"] = fmt.Sprintf("arn:%s:iam::%s:role/%s", a.partition, a.account, role)
			}
		}
		for k, v := range derived {
			if _, ok := ctx[k]; !ok {
				ctx[k] = []string{v}
			}
		}
	}
	return ctx
}

type arn struct {
	partition, service, region, account, resource string
}

func splitARN(s string) (arn, bool) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[2] == "" {
		return arn{}, false
	}
	return arn{parts[1], parts[2], parts[3], parts[4], parts[5]}, true
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func principalMatches(s *Statement, caller string) bool {
	if s.NotPrincipal != nil {
		return !principalListMatches(s.NotPrincipal, caller)
	}
	return principalListMatches(s.Principal, caller)
}

// principalListMatches reports whether a Principal (or NotPrincipal)
// element names the caller. AWS matches a caller only against entries of
// its own type: an IAM identity (the caller's ARN) against "AWS" entries,
// an AWS service acting in its own name (its service principal, such as
// logs.amazonaws.com) against "Service" entries. A "Service",
// "Federated" or "CanonicalUser" entry whose text happens to be an IAM
// ARN names no IAM identity, and an "AWS" entry never names a service.
// Federated and CanonicalUser callers (web identities, S3 canonical ids)
// do not call KMS, so those entries match nothing here.
func principalListMatches(pr *Principal, caller string) bool {
	if pr == nil {
		return false
	}
	if pr.Any {
		return true // "Principal": "*" is everyone, services included
	}
	_, callerIsIAM := splitARN(caller)
	for _, e := range pr.Entries {
		for _, v := range e.Values.List {
			switch {
			case e.Type == "AWS" && callerIsIAM && awsPrincipalMatches(v, caller):
				return true
			case e.Type == "Service" && !callerIsIAM && v == caller:
				return true
			}
		}
	}
	return false
}

// awsPrincipalMatches reports whether the key-policy principal p, from an
// "AWS" entry, admits the IAM identity caller: "*" (every IAM identity of
// every account); the same ARN; an account (bare id or the :root ARN)
// admits all its principals; a role admits its assumed-role sessions. An
// assumed-role session ARN admits only that session. Wildcards inside an
// ARN are not patterns (AWS refuses them in a Principal).
func awsPrincipalMatches(p, caller string) bool {
	if p == "*" || p == caller {
		return true
	}
	c, ok := splitARN(caller)
	if !ok {
		return false
	}
	if isAccountID(p) {
		return c.account == p
	}
	pa, ok := splitARN(p)
	if !ok || pa.service != "iam" || pa.partition != c.partition || pa.account != c.account {
		return false
	}
	if pa.resource == "root" {
		return true
	}
	if rolePath, ok := strings.CutPrefix(pa.resource, "role/"); ok && c.service == "sts" {
		// A role ARN may carry a path (role/path/Name); its sessions'
		// ARNs carry only the name.
		name := rolePath[strings.LastIndex(rolePath, "/")+1:]
		if rest, ok := strings.CutPrefix(c.resource, "assumed-role/"); ok {
			sessRole, session, found := strings.Cut(rest, "/")
			return found && session != "" && sessRole == name
		}
	}
	return false
}

func actionMatches(s *Statement, action string) bool {
	if s.NotAction.Set() {
		return !anyGlob(s.NotAction.List, action, true)
	}
	return anyGlob(s.Action.List, action, true)
}

func resourceMatches(s *Statement, resource string) bool {
	if s.NotResource.Set() {
		return !anyGlob(s.NotResource.List, resource, false)
	}
	return anyGlob(s.Resource.List, resource, false)
}

func anyGlob(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if glob(p, s, fold) {
			return true
		}
	}
	return false
}

// evalConditions returns whether all conditions hold; when not, unmet
// says which failed. invalid is set when an operator is unknown.
func evalConditions(conds []Condition, ctx map[string][]string) (met bool, unmet, invalid string) {
	for _, c := range conds {
		op, err := parseOperator(c.Operator)
		if err != nil {
			return false, "", err.Error()
		}
		for _, k := range c.Keys {
			vals, present := ctx[strings.ToLower(k.Key)]
			if !evalKey(op, k.Values.List, vals, present) {
				if !present {
					why := fmt.Sprintf("%s %s: the request has no %s", op.name, k.Key, k.Key)
					if isAttestationKey(k.Key) {
						why += " (no valid attestation document in the request's Recipient)"
					}
					return false, why, ""
				}
				return false, fmt.Sprintf("%s %s: the request has %s, the policy wants %s", op.name, k.Key, quoteList(vals), quoteList(k.Values.List)), ""
			}
		}
	}
	return true, "", ""
}

func quoteList(v []string) string {
	if len(v) == 1 {
		return strconv.Quote(v[0])
	}
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func evalKey(op operator, want, have []string, present bool) bool {
	if op.info.kind == opNull {
		for _, w := range want {
			if strings.EqualFold(w, "true") && !present || strings.EqualFold(w, "false") && present {
				return true
			}
		}
		return false
	}
	if !present {
		switch {
		case op.ifExists:
			return true
		case op.set == "ForAllValues":
			return true
		case op.set == "ForAnyValue":
			return false
		}
		return op.info.negated
	}
	// matchesAny reports whether the request value h equals (in the
	// operator's positive sense) one of the policy's values.
	matchesAny := func(h string) bool {
		for _, w := range want {
			if matchOne(op.info, w, h) {
				return true
			}
		}
		return false
	}
	switch op.set {
	case "ForAllValues":
		for _, h := range have {
			if matchesAny(h) == op.info.negated {
				return false
			}
		}
		return true
	case "ForAnyValue":
		for _, h := range have {
			if matchesAny(h) != op.info.negated {
				return true
			}
		}
		return false
	}
	if op.info.negated {
		for _, h := range have {
			if matchesAny(h) {
				return false
			}
		}
		return true
	}
	for _, h := range have {
		if matchesAny(h) {
			return true
		}
	}
	return false
}

// matchOne compares one policy value w with one request value h in the
// positive sense of the operator (StringNotEquals compares as StringEquals;
// the caller negates).
func matchOne(info opInfo, w, h string) bool {
	switch info.kind {
	case opString, opBinary:
		return w == h
	case opStringFold:
		return strings.EqualFold(w, h)
	case opStringLike:
		return glob(w, h, false)
	case opBool:
		return strings.EqualFold(w, h)
	case opNumeric:
		a, err1 := strconv.ParseFloat(h, 64)
		b, err2 := strconv.ParseFloat(w, 64)
		if err1 != nil || err2 != nil || math.IsNaN(a) || math.IsNaN(b) {
			return false
		}
		return compare(info.cmp, a, b)
	case opDate:
		a, ok1 := parseDate(h)
		b, ok2 := parseDate(w)
		if !ok1 || !ok2 {
			return false
		}
		return compare(info.cmp, float64(a.UnixNano())/1e9, float64(b.UnixNano())/1e9)
	case opIP:
		ip, err := netip.ParseAddr(h)
		if err != nil {
			return false
		}
		if pfx, err := netip.ParsePrefix(w); err == nil {
			return pfx.Contains(ip)
		}
		a, err := netip.ParseAddr(w)
		return err == nil && a == ip
	case opArn:
		wp, hp := strings.SplitN(w, ":", 6), strings.SplitN(h, ":", 6)
		if len(wp) != 6 || len(hp) != 6 {
			return false
		}
		for i := range wp {
			if !glob(wp[i], hp[i], false) {
				return false
			}
		}
		return true
	}
	return false
}

func compare(cmp string, a, b float64) bool {
	switch cmp {
	case "=":
		return a == b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	case ">=":
		return a >= b
	}
	return false
}

// parseDate reads the forms IAM accepts for dates: ISO 8601 date-times, a
// plain date, or epoch seconds.
func parseDate(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), true
	}
	return time.Time{}, false
}

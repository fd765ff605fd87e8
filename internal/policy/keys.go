package policy

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Condition keys for Nitro Enclaves attestation (KMS Developer Guide,
// "Condition keys for AWS Nitro Enclaves"; Service Authorization Reference
// lists PCR0 to PCR31).
const (
	KeyImageSha384          = "kms:RecipientAttestation:ImageSha384"
	KeyPCRPrefix            = "kms:RecipientAttestation:PCR"
	keyAttestationPrefix    = "kms:RecipientAttestation:"
	keyEncryptionContextPfx = "kms:EncryptionContext:"
)

// KeyPCR returns the condition key for PCR n.
func KeyPCR(n int) string { return KeyPCRPrefix + strconv.Itoa(n) }

// kmsKeys are the condition keys KMS defines, besides the RecipientAttestation
// and EncryptionContext:* families (Service Authorization Reference, AWS Key
// Management Service, "Condition keys").
var kmsKeys = []string{
	"kms:BypassPolicyLockoutSafetyCheck",
	"kms:CallerAccount",
	"kms:CustomerMasterKeySpec",
	"kms:CustomerMasterKeyUsage",
	"kms:DataKeyPairSpec",
	"kms:EncryptionAlgorithm",
	"kms:EncryptionContextKeys",
	"kms:ExpirationModel",
	"kms:GrantConstraintType",
	"kms:GrantIsForAWSResource",
	"kms:GrantOperations",
	"kms:GranteePrincipal",
	"kms:KeyAgreementAlgorithm",
	"kms:KeyOrigin",
	"kms:KeySpec",
	"kms:KeyUsage",
	"kms:MacAlgorithm",
	"kms:MessageType",
	"kms:MultiRegion",
	"kms:MultiRegionKeyType",
	"kms:PrimaryRegion",
	"kms:ReEncryptOnSameKey",
	"kms:ReplicaRegion",
	"kms:RequestAlias",
	"kms:ResourceAliases",
	"kms:RetiringPrincipal",
	"kms:RotationPeriodInDays",
	"kms:ScheduleKeyDeletionPendingWindowInDays",
	"kms:SigningAlgorithm",
	"kms:ValidTo",
	"kms:ViaService",
	"kms:WrappingAlgorithm",
	"kms:WrappingKeySpec",
}

// globalKeys are AWS global condition keys (IAM User Guide, "AWS global
// condition context keys"); entries ending in "/" take a tag key suffix.
var globalKeys = []string{
	"aws:CalledVia", "aws:CalledViaFirst", "aws:CalledViaLast", "aws:CurrentTime",
	"aws:EpochTime", "aws:FederatedProvider", "aws:MultiFactorAuthAge",
	"aws:MultiFactorAuthPresent", "aws:PrincipalAccount", "aws:PrincipalArn",
	"aws:PrincipalIsAWSService", "aws:PrincipalOrgID", "aws:PrincipalOrgPaths",
	"aws:PrincipalServiceName", "aws:PrincipalServiceNamesList", "aws:PrincipalTag/",
	"aws:PrincipalType", "aws:Referer", "aws:RequestedRegion", "aws:RequestTag/",
	"aws:ResourceAccount", "aws:ResourceOrgID", "aws:ResourceOrgPaths", "aws:ResourceTag/",
	"aws:SecureTransport", "aws:SourceAccount", "aws:SourceArn", "aws:SourceIdentity",
	"aws:SourceIp", "aws:SourceOrgID", "aws:SourceOrgPaths", "aws:SourceVpc",
	"aws:SourceVpcArn", "aws:SourceVpce", "aws:TagKeys", "aws:TokenIssueTime",
	"aws:UserAgent", "aws:userid", "aws:username", "aws:ViaAWSService", "aws:VpcSourceIp",
	"aws:Ec2InstanceSourceVpc", "aws:Ec2InstanceSourcePrivateIPv4",
}

type keyClass int

const (
	keyKnown keyClass = iota
	keyUnknownKMS
	keyUnknownGlobal
	keyOtherService
)

// classifyKey says whether key (any case) is a key KMS evaluates, and
// suggests the nearest known key for a typo.
func classifyKey(key string) (keyClass, string) {
	lk := strings.ToLower(key)
	if n, ok := attestationPCR(key); ok {
		if n >= 0 && n <= 31 {
			return keyKnown, ""
		}
		return keyUnknownKMS, "kms:RecipientAttestation:PCR0 … PCR31"
	}
	if strings.EqualFold(key, KeyImageSha384) {
		return keyKnown, ""
	}
	if rest, ok := cutPrefixFold(key, "kms:RecipientAttestation:NitroTPMPCR"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && n <= 23 && rest == strconv.Itoa(n) {
			return keyKnown, ""
		}
	}
	if rest, ok := cutPrefixFold(key, keyEncryptionContextPfx); ok && rest != "" {
		return keyKnown, ""
	}
	for _, k := range kmsKeys {
		if strings.EqualFold(k, key) {
			return keyKnown, ""
		}
	}
	for _, k := range globalKeys {
		if strings.HasSuffix(k, "/") {
			if rest, ok := cutPrefixFold(key, k); ok && rest != "" {
				return keyKnown, ""
			}
		} else if strings.EqualFold(k, key) {
			return keyKnown, ""
		}
	}
	suggestion := nearestKey(key)
	switch {
	case strings.HasPrefix(lk, "kms:"):
		return keyUnknownKMS, suggestion
	case strings.HasPrefix(lk, "aws:"):
		return keyUnknownGlobal, suggestion
	}
	return keyOtherService, suggestion
}

// attestationPCR parses kms:RecipientAttestation:PCRn (any case) and
// returns n; ok is false for other keys and for malformed numbers.
func attestationPCR(key string) (int, bool) {
	rest, ok := cutPrefixFold(key, KeyPCRPrefix)
	if !ok || rest == "" || len(rest) > 2 {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || rest != strconv.Itoa(n) {
		return 0, false
	}
	return n, true
}

// isAttestationKey reports whether key (any case) is one of the Nitro
// Enclaves keys, kms:RecipientAttestation:ImageSha384 or PCR0 … PCR31.
func isAttestationKey(key string) bool {
	if strings.EqualFold(key, KeyImageSha384) {
		return true
	}
	n, ok := attestationPCR(key)
	return ok && n <= 31
}

// isImageKey reports whether key pins the enclave image: ImageSha384,
// PCR0 (the same value), or PCR8 (the certificate that signed the image).
func isImageKey(key string) bool {
	if strings.EqualFold(key, KeyImageSha384) {
		return true
	}
	n, ok := attestationPCR(key)
	return ok && (n == 0 || n == 8)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

func nearestKey(key string) string {
	if len(key) > 128 {
		return "" // no key is that long; spare the edit distances
	}
	cands := []string{KeyImageSha384, keyEncryptionContextPfx}
	cands = append(cands, kmsKeys...)
	for _, k := range globalKeys {
		cands = append(cands, strings.TrimSuffix(k, "/"))
	}
	// A misspelt PCR key is compared with the PCR key of the same number.
	if i := strings.LastIndex(key, ":"); i >= 0 {
		if n, err := strconv.Atoi(strings.TrimPrefix(strings.ToUpper(key[i+1:]), "PCR")); err == nil && n >= 0 && n <= 31 {
			cands = append(cands, KeyPCR(n))
		}
	}
	best, bestD := "", 1<<30
	lk := strings.ToLower(key)
	for _, c := range cands {
		if d := editDistance(lk, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= 2+len(key)/10 {
		return best
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Condition operators (IAM User Guide, "IAM JSON policy elements: Condition
// operators").
type opKind int

const (
	opString opKind = iota
	opStringFold
	opStringLike
	opNumeric
	opDate
	opBool
	opBinary
	opIP
	opArn
	opNull
)

type opInfo struct {
	kind    opKind
	negated bool
	cmp     string // numeric and date: "=", "<", "<=", ">", ">="
}

var operators = map[string]opInfo{
	"StringEquals":              {opString, false, ""},
	"StringNotEquals":           {opString, true, ""},
	"StringEqualsIgnoreCase":    {opStringFold, false, ""},
	"StringNotEqualsIgnoreCase": {opStringFold, true, ""},
	"StringLike":                {opStringLike, false, ""},
	"StringNotLike":             {opStringLike, true, ""},
	"NumericEquals":             {opNumeric, false, "="},
	"NumericNotEquals":          {opNumeric, true, "="},
	"NumericLessThan":           {opNumeric, false, "<"},
	"NumericLessThanEquals":     {opNumeric, false, "<="},
	"NumericGreaterThan":        {opNumeric, false, ">"},
	"NumericGreaterThanEquals":  {opNumeric, false, ">="},
	"DateEquals":                {opDate, false, "="},
	"DateNotEquals":             {opDate, true, "="},
	"DateLessThan":              {opDate, false, "<"},
	"DateLessThanEquals":        {opDate, false, "<="},
	"DateGreaterThan":           {opDate, false, ">"},
	"DateGreaterThanEquals":     {opDate, false, ">="},
	"Bool":                      {opBool, false, ""},
	"BinaryEquals":              {opBinary, false, ""},
	"IpAddress":                 {opIP, false, ""},
	"NotIpAddress":              {opIP, true, ""},
	"ArnEquals":                 {opArn, false, ""},
	"ArnNotEquals":              {opArn, true, ""},
	"ArnLike":                   {opArn, false, ""},
	"ArnNotLike":                {opArn, true, ""},
	"Null":                      {opNull, false, ""},
}

// operator is a parsed condition operator name such as
// ForAnyValue:StringEqualsIgnoreCaseIfExists.
type operator struct {
	name     string // canonical spelling
	base     string
	info     opInfo
	set      string // "", "ForAnyValue" or "ForAllValues"
	ifExists bool
	exact    bool // written in AWS's documented case
}

func parseOperator(name string) (operator, error) {
	op := operator{exact: true}
	rest := name
	for _, set := range []string{"ForAnyValue:", "ForAllValues:"} {
		if r, ok := cutPrefixFold(rest, set); ok {
			op.set = strings.TrimSuffix(set, ":")
			if !strings.HasPrefix(rest, set) {
				op.exact = false
			}
			rest = r
			break
		}
	}
	if len(rest) > len("IfExists") && strings.EqualFold(rest[len(rest)-len("IfExists"):], "IfExists") {
		if !strings.HasSuffix(rest, "IfExists") {
			op.exact = false
		}
		op.ifExists = true
		rest = rest[:len(rest)-len("IfExists")]
	}
	for base, info := range operators {
		if strings.EqualFold(base, rest) {
			if base != rest {
				op.exact = false
			}
			op.base, op.info = base, info
			break
		}
	}
	if op.base == "" {
		return operator{}, fmt.Errorf("unknown condition operator %q", name)
	}
	if op.info.kind == opNull && (op.ifExists || op.set != "") {
		return operator{}, fmt.Errorf("condition operator %q: Null takes neither IfExists nor a ForAnyValue/ForAllValues prefix", name)
	}
	op.name = op.base
	if op.set != "" {
		op.name = op.set + ":" + op.name
	}
	if op.ifExists {
		op.name += "IfExists"
	}
	return op, nil
}

// glob matches s against pattern with IAM's wildcards: * any run of
// characters, ? one character. fold compares case-insensitively.
func glob(pattern, s string, fold bool) bool {
	// Byte offsets into pattern and s; runes are decoded in place so that
	// matching allocates nothing (Check matches every pattern against every
	// KMS action).
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		if px < len(pattern) {
			pc, pw := utf8.DecodeRuneInString(pattern[px:])
			sc, sw := utf8.DecodeRuneInString(s[sx:])
			switch {
			case pc == '*':
				starP, starS = px, sx
				px++
				continue
			case pc == '?' || pc == sc || fold && unicode.ToLower(pc) == unicode.ToLower(sc):
				px += pw
				sx += sw
				continue
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last * absorb one more rune of s and retry.
		px = starP + 1
		_, sw := utf8.DecodeRuneInString(s[starS:])
		starS += sw
		sx = starS
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

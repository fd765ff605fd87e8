package kms

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// KeyARN is a KMS key ARN, arn:PARTITION:kms:REGION:ACCOUNT:key/ID, as KMS
// names the key in every Decrypt answer (its KeyId member).
type KeyARN struct {
	Partition string // aws, aws-cn or aws-us-gov
	Region    string // e.g. us-east-1
	Account   string // 12 digits
	KeyID     string // a key id (UUID) or a multi-Region key id (mrk-…)
}

// String returns the ARN.
func (a KeyARN) String() string {
	return "arn:" + a.Partition + ":kms:" + a.Region + ":" + a.Account + ":key/" + a.KeyID
}

// ErrNotKeyARN is matched by ParseKeyARN's errors.
var ErrNotKeyARN = errors.New("not a KMS key ARN")

var (
	arnRegionRE  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
	arnAccountRE = regexp.MustCompile(`^[0-9]{12}$`)
	// KMS writes key ids in lowercase: a UUID, or mrk- and 32 hex digits
	// for a multi-Region key (whose replicas share the id, not the ARN).
	arnKeyIDRE = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$`)
)

// partitions maps each partition to the prefix of its regions' names ("" for
// the commercial one, whose regions have none of the others' prefixes).
var partitions = map[string]string{"aws": "", "aws-cn": "cn-", "aws-us-gov": "us-gov-"}

// ParseKeyARN parses a KMS key ARN. Only a key ARN compares with the KeyId
// of KMS's answers, so an alias, an alias ARN or a bare key id is refused
// with an error saying how to find the key's ARN. Every error matches
// ErrNotKeyARN.
func ParseKeyARN(s string) (KeyARN, error) {
	fail := func(format string, a ...any) (KeyARN, error) {
		return KeyARN{}, fmt.Errorf("%w: %q: %s", ErrNotKeyARN, s, fmt.Sprintf(format, a...))
	}
	describe := "aws kms describe-key --key-id " + s + " --query KeyMetadata.Arn --output text"
	if strings.HasPrefix(s, "alias/") || strings.HasPrefix(s, "arn:") && strings.Contains(s, ":alias/") {
		return fail("an alias cannot be pinned: KMS's Decrypt answer always names the key by its ARN, never by an alias, so only a key ARN can be compared with it (and an alias can be pointed at another key); find the key's ARN with: %s", describe)
	}
	if arnKeyIDRE.MatchString(strings.ToLower(s)) {
		return fail("a key id: want the key's ARN, arn:PARTITION:kms:REGION:ACCOUNT:key/ID, which KMS's answers carry; find it with: %s", describe)
	}
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "kms" || !strings.HasPrefix(parts[5], "key/") {
		return fail("want a KMS key ARN, arn:PARTITION:kms:REGION:ACCOUNT:key/ID")
	}
	a := KeyARN{Partition: parts[1], Region: parts[3], Account: parts[4], KeyID: strings.TrimPrefix(parts[5], "key/")}
	prefix, ok := partitions[a.Partition]
	switch {
	case !ok:
		return fail("partition %q: want aws, aws-cn or aws-us-gov", a.Partition)
	case !arnRegionRE.MatchString(a.Region):
		return fail("region %q: want an AWS region such as us-east-1", a.Region)
	case prefix != "" && !strings.HasPrefix(a.Region, prefix) || prefix == "" && (strings.HasPrefix(a.Region, "cn-") || strings.HasPrefix(a.Region, "us-gov-")):
		return fail("region %s is not in partition %s", a.Region, a.Partition)
	case !arnAccountRE.MatchString(a.Account):
		return fail("account %q: want 12 digits", a.Account)
	case !arnKeyIDRE.MatchString(a.KeyID):
		if arnKeyIDRE.MatchString(strings.ToLower(a.KeyID)) {
			return fail("key id %q: want it in lowercase, as KMS writes it in its answers", a.KeyID)
		}
		return fail("key id %q: want a key id (8-4-4-4-12 hex digits) or a multi-Region key id (mrk- and 32 hex digits)", a.KeyID)
	}
	return a, nil
}

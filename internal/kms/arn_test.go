package kms

import (
	"errors"
	"strings"
	"testing"
)

func TestParseKeyARN(t *testing.T) {
	const id = "1234abcd-12ab-34cd-56ef-1234567890ab"
	for _, tc := range []struct {
		in   string
		want KeyARN
		err  []string // substrings of the error; nil: valid
	}{
		{in: "arn:aws:kms:us-east-1:111122223333:key/" + id, want: KeyARN{"aws", "us-east-1", "111122223333", id}},
		{in: "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab", want: KeyARN{"aws", "eu-west-1", "111122223333", "mrk-1234abcd12ab34cd56ef1234567890ab"}},
		{in: "arn:aws-cn:kms:cn-north-1:111122223333:key/" + id, want: KeyARN{"aws-cn", "cn-north-1", "111122223333", id}},
		{in: "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/" + id, want: KeyARN{"aws-us-gov", "us-gov-west-1", "111122223333", id}},

		{in: "alias/signer", err: []string{"an alias cannot be pinned", "always names the key by its ARN", "aws kms describe-key --key-id alias/signer --query KeyMetadata.Arn --output text"}},
		{in: "arn:aws:kms:us-east-1:111122223333:alias/signer", err: []string{"an alias cannot be pinned", "--key-id arn:aws:kms:us-east-1:111122223333:alias/signer --query KeyMetadata.Arn"}},
		{in: id, err: []string{"a key id: want the key's ARN", "aws kms describe-key --key-id " + id}},
		{in: "mrk-1234abcd12ab34cd56ef1234567890ab", err: []string{"a key id"}},
		{in: "", err: []string{"want a KMS key ARN"}},
		{in: "arn:aws:s3:::bucket", err: []string{"want a KMS key ARN"}},
		{in: "arn:aws:kms:us-east-1:111122223333:" + id, err: []string{"want a KMS key ARN"}},
		{in: "arn:aws-iso:kms:us-east-1:111122223333:key/" + id, err: []string{`partition "aws-iso"`}},
		{in: "arn:aws:kms:US-EAST-1:111122223333:key/" + id, err: []string{`region "US-EAST-1"`}},
		{in: "arn:aws:kms:cn-north-1:111122223333:key/" + id, err: []string{"region cn-north-1 is not in partition aws"}},
		{in: "arn:aws-cn:kms:us-east-1:111122223333:key/" + id, err: []string{"region us-east-1 is not in partition aws-cn"}},
		{in: "arn:aws:kms:us-east-1:1111:key/" + id, err: []string{`account "1111"`}},
		{in: "arn:aws:kms:us-east-1:111122223333:key/" + strings.ToUpper(id), err: []string{"in lowercase"}},
		{in: "arn:aws:kms:us-east-1:111122223333:key/k", err: []string{`key id "k"`}},
		{in: "arn:aws:kms:us-east-1:111122223333:key/" + id + "/x", err: []string{"key id"}},
	} {
		got, err := ParseKeyARN(tc.in)
		if tc.err == nil {
			if err != nil || got != tc.want || got.String() != tc.in {
				t.Errorf("ParseKeyARN(%q)\n got %+v, %v (String %q)\nwant %+v", tc.in, got, err, got.String(), tc.want)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrNotKeyARN) {
			t.Errorf("ParseKeyARN(%q) = %+v, %v; want an error matching ErrNotKeyARN", tc.in, got, err)
			continue
		}
		for _, want := range tc.err {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseKeyARN(%q) error\n %v\nwant it to contain %q", tc.in, err, want)
			}
		}
	}
}

// FuzzParseKeyARN: what parses prints back as the same string, and a
// failure returns the zero KeyARN.
func FuzzParseKeyARN(f *testing.F) {
	for _, s := range []string{
		"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
		"alias/x", "arn:aws:kms:us-east-1:111122223333:alias/x", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseKeyARN(s)
		if err != nil {
			if a != (KeyARN{}) {
				t.Fatalf("ParseKeyARN(%q) failed but returned %+v", s, a)
			}
			return
		}
		if a.String() != s {
			t.Fatalf("ParseKeyARN(%q).String() = %q", s, a.String())
		}
	})
}

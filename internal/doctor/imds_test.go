package doctor

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/imdsemu"
)

func TestCheckCredentials(t *testing.T) {
	tests := []struct {
		name  string
		imds  fakeIMDS
		now   time.Time
		want  want
		facts instanceFacts // role, account, region, instance, partition expected
	}{
		{name: "role with hours left", now: fixtureExpiry.Add(-6 * time.Hour),
			want:  want{OK, "role NitroEnclaveInstanceRole (account 123456789012, instance i-1234567890abcdef0, us-east-1): credentials expire at 2026-11-20T16:00:00Z (in 6h0m0s)", ""},
			facts: instanceFacts{role: "NitroEnclaveInstanceRole", account: "123456789012", region: "us-east-1", instanceID: "i-1234567890abcdef0", partition: "aws"}},
		{name: "expiring in 4 minutes", now: fixtureExpiry.Add(-4 * time.Minute),
			want: want{Warning, "credentials expire at 2026-11-20T16:00:00Z, in 4m0s", "at least five minutes before expiry"}},
		{name: "expired", now: fixtureExpiry.Add(time.Minute),
			want: want{Error, "credentials expired at 2026-11-20T16:00:00Z, 1m0s ago", "clock"}},
		{name: "no instance profile", imds: fakeIMDS{noRole: true}, now: fixtureExpiry,
			want:  want{Error, "no IAM role attached to the instance", "aws ec2 associate-iam-instance-profile --instance-id i-1234567890abcdef0"},
			facts: instanceFacts{region: "us-east-1", account: "123456789012", instanceID: "i-1234567890abcdef0"}},
		{name: "IMDS disabled", imds: fakeIMDS{tokenStatus: http.StatusForbidden}, now: fixtureExpiry,
			want: want{Error, "refused a session token: HTTP 403", "--http-endpoint enabled"}},
		{name: "credentials code", imds: fakeIMDS{credentials: []byte(`{"Code":"AssumeRoleUnauthorizedAccess","LastUpdated":"2026-11-20T10:00:00Z"}`)}, now: fixtureExpiry,
			want: want{Error, `credentials code "AssumeRoleUnauthorizedAccess", want Success`, "trust policy"}},
		{name: "not JSON", imds: fakeIMDS{credentials: []byte("<html>" + fixtureSecret)}, now: fixtureExpiry,
			want: want{Error, "the credentials document is not JSON", "retry"}},
		{name: "no expiration", imds: fakeIMDS{credentials: []byte(`{"Code":"Success","Type":"AWS-HMAC"}`)}, now: fixtureExpiry,
			want: want{Error, "credentials without an Expiration", "retry"}},
		{name: "no identity document", imds: fakeIMDS{noIdentity: true}, now: fixtureExpiry.Add(-time.Hour),
			want:  want{OK, "role NitroEnclaveInstanceRole (account 123456789012): credentials expire", ""},
			facts: instanceFacts{role: "NitroEnclaveInstanceRole", account: "123456789012", partition: "aws"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.imds.t = t
			url := serve(t, &tt.imds)
			cfg := &Config{HTTP: &http.Client{}, IMDSEndpoint: url + "/", Now: func() time.Time { return tt.now }}
			f := checkCredentials(context.Background(), cfg)
			checkResults(t, f.results, []want{tt.want})
			if tt.facts.role != "" || tt.facts.region != "" {
				got := instanceFacts{role: f.role, account: f.account, region: f.region, instanceID: f.instanceID, partition: f.partition}
				if got.role != tt.facts.role || got.account != tt.facts.account || got.region != tt.facts.region || got.instanceID != tt.facts.instanceID || got.partition != tt.facts.partition {
					t.Errorf("facts %+v\nwant  %+v", got, tt.facts)
				}
			}
			for _, r := range f.results {
				if strings.Contains(r.Message+r.Fix, fixtureSecret) || strings.Contains(r.Message+r.Fix, fixtureToken) || strings.Contains(r.Message+r.Fix, imdsToken) {
					t.Errorf("a secret leaked into the result: %+v", r)
				}
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		// A closed port on loopback (tcpmux, never served here).
		cfg := &Config{HTTP: &http.Client{}, IMDSEndpoint: "http://127.0.0.1:1"}
		f := checkCredentials(context.Background(), cfg)
		checkResults(t, f.results, []want{{Error, "the instance metadata service at http://127.0.0.1:1 is unreachable", "hop-limit 2"}})
	})
	t.Run("no client", func(t *testing.T) {
		checkResults(t, checkCredentials(context.Background(), &Config{}).results, []want{{Skipped, "no HTTP client", ""}})
	})
}

// TestCheckCredentialsEmulatedIMDS: doctor's credentials check reads the
// emulated instance metadata service of signer kms-emulator --imds as it
// reads EC2's.
func TestCheckCredentialsEmulatedIMDS(t *testing.T) {
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	m := &imdsemu.Server{Role: "dev", InstanceID: "i-0123456789abcdef0", Region: "eu-west-1", Lifetime: 6 * time.Hour, Now: func() time.Time { return now }}
	url := serve(t, m)
	cfg := &Config{HTTP: &http.Client{}, IMDSEndpoint: url + "/", Now: func() time.Time { return now }}
	f := checkCredentials(context.Background(), cfg)
	checkResults(t, f.results, []want{{OK, "role dev (account 000000000000, instance i-0123456789abcdef0, eu-west-1): credentials expire at 2026-11-20T16:00:00Z (in 6h0m0s)", ""}})
	if f.role != "dev" || f.account != "000000000000" || f.region != "eu-west-1" || f.instanceID != "i-0123456789abcdef0" || f.partition != "aws" {
		t.Errorf("facts %+v", f)
	}
}

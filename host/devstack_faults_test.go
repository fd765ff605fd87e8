//go:build unix

package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestIMDSEnv: the shim's environment under --imds-credentials holds no
// static keys, does not disable instance metadata, and points it at the
// emulator on loopback; everything else of the stack's environment stays.
func TestIMDSEnv(t *testing.T) {
	env := imdsEnv(append(devEnv(), "AWS_SESSION_TOKEN=stale"), "http://127.0.0.1:4321")
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_EC2_METADATA_DISABLED":
			t.Errorf("the shim's environment keeps %s", kv)
		}
	}
	for _, want := range []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:4321", "AWS_REGION=" + devRegion,
		"AWS_CONFIG_FILE=" + os.DevNull, "AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull} {
		if !slices.Contains(env, want) {
			t.Errorf("the shim's environment lacks %s", want)
		}
	}
}

// TestCredentialRefresh: a third of the lifetime, so the refresh comes
// after the emulator's rotation at half of it, with a third left.
func TestCredentialRefresh(t *testing.T) {
	for _, l := range []time.Duration{minIMDSLifetime, 20 * time.Second, maxIMDSLifetime} {
		r := credentialRefresh(l)
		if r <= 0 || l-r <= l/2 || r < l/4 {
			t.Errorf("lifetime %s: credential_refresh %s, want about a third: after the rotation at half, well before expiry", l, r)
		}
	}
}

// TestSetupRetryer: under throttling F, signer dev's own calls make
// enough attempts to reach the one request in 1/(1-F) the emulator
// serves.
func TestSetupRetryer(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want int
	}{{0, 3}, {0.5, 3}, {0.9, 11}, {0.95, 21}} {
		if got := setupRetryer(tc.f).MaxAttempts(); got != tc.want {
			t.Errorf("throttle %v: %d attempts, want %d", tc.f, got, tc.want)
		}
	}
}

func TestDevFaultFlagsUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--imds-credentials", "5s"}, "--imds-credentials 5s: want a lifetime from 10s to 1h0m0s"},
		{[]string{"--imds-credentials", "2h"}, "--imds-credentials 2h0m0s"},
		{[]string{"--kms-throttle", "1"}, "--kms-throttle 1: want a fraction from 0 to below 1"},
		{[]string{"--kms-throttle", "-0.1"}, "--kms-throttle -0.1"},
		{[]string{"--kms-throttle", "NaN"}, "--kms-throttle NaN"},
	} {
		dir := t.TempDir()
		code, _, stderr := signer(t, "", append([]string{"dev", "--dir", dir}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("signer dev %q: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("signer dev %q wrote into its directory before refusing", tc.args)
		}
	}
}

package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	cfg, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.String() != "vsock://any:5005" || cfg.KMSProxy.String() != "vsock://3:8000" || cfg.Attestation != "nsm" {
		t.Fatalf("defaults: %+v", cfg)
	}
	bad := map[string][]string{
		"--listen":       {"--listen", "3:5000"},
		"--attestation":  {"--attestation", "tpm"},
		"--kms-endpoint": {"--kms-endpoint", "https://evil.example"},
		"--kms-ca":       {"--kms-ca", "x.pem"},
		"--sim-pcr":      {"--sim-pcr", "0=00"},
		"--log-format":   {"--log-format", "xml"},
		"--log-level":    {"--log-level", "trace"},
		"want N=HEX":     {"--attestation", "simulated", "--sim-pcr", "16=" + strings.Repeat("00", 48)},
		"PCR value":      {"--attestation", "simulated", "--sim-pcr", "1=00"},
		"given twice":    {"--attestation", "simulated", "--sim-pcr", "1=" + strings.Repeat("00", 48), "--sim-pcr", "1=" + strings.Repeat("11", 48)},
	}
	for want, args := range bad {
		_, err := parseConfig(args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseConfig(%q) = %v, want an error naming %s", args, err, want)
		}
	}
	if _, err := parseConfig([]string{"--attestation", "simulated", "--kms-endpoint", "https://kms.us-east-1.amazonaws.com", "--kms-ca", "ca.pem", "--listen", "unix:///tmp/s.sock"}, io.Discard); err != nil {
		t.Errorf("simulated with overrides: %v", err)
	}
}

package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	cfg, err := parseConfig(nil, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.String() != "vsock://any:5005" || cfg.KMSProxy.String() != "vsock://3:8000" || cfg.Attestation != "nsm" ||
		cfg.MaxConns != 64 || cfg.FrameMemory != 8<<20 {
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
		"--max-conns":    {"--max-conns", "0"},
		"want 4MiB to":   {"--frame-memory", "1MiB"},
		"--frame-memory": {"--frame-memory", "8MB"},
		"to 4GiB":        {"--frame-memory", "5GiB"},
		"want N=HEX":     {"--attestation", "simulated", "--sim-pcr", "16=" + strings.Repeat("00", 48)},
		"PCR value":      {"--attestation", "simulated", "--sim-pcr", "1=00"},
		"given twice":    {"--attestation", "simulated", "--sim-pcr", "1=" + strings.Repeat("00", 48), "--sim-pcr", "1=" + strings.Repeat("11", 48)},
	}
	for want, args := range bad {
		_, err := parseConfig(args, nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseConfig(%q) = %v, want an error naming %s", args, err, want)
		}
	}
	if _, err := parseConfig([]string{"--attestation", "simulated", "--kms-endpoint", "https://kms.us-east-1.amazonaws.com", "--kms-ca", "ca.pem", "--listen", "unix:///tmp/s.sock"}, nil, io.Discard); err != nil {
		t.Errorf("simulated with overrides: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4194304": 4 << 20, "8MiB": 8 << 20, "4096KiB": 4 << 20, "1GiB": 1 << 30, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "8MB", "-1", "1.5MiB", "MiB", "99999999999GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
	cfg, err := parseConfig([]string{"--max-conns", "5", "--frame-memory", "16MiB"}, nil, io.Discard)
	if err != nil || cfg.MaxConns != 5 || cfg.FrameMemory != 16<<20 {
		t.Errorf("--max-conns 5 --frame-memory 16MiB: %+v, %v", cfg, err)
	}
}

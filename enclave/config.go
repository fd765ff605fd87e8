package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"

	"github.com/enclave-signer/enclave-signer/pkg/transport"
)

// Config is signerd's whole configuration, from its flags. Nothing the host
// sends at run time can change it: in particular the route to KMS is fixed
// here, so a compromised host cannot point the enclave elsewhere.
type Config struct {
	// Listen is where the host connects (--listen, default vsock://any:5005).
	Listen transport.Addr
	// KMSProxy is the vsock-proxy in front of KMS (--kms-proxy, default
	// vsock://3:8000, AWS's convention).
	KMSProxy transport.Addr
	// Attestation is "nsm" (/dev/nsm, the default) or "simulated".
	Attestation string
	// SimCADir, SimPCRs and SimDebugMode configure the simulator; they are
	// accepted only with Attestation "simulated".
	SimCADir     string
	SimPCRs      []string
	SimDebugMode bool
	// KMSEndpoint and KMSCA override the KMS host name and add a TLS root;
	// accepted only with Attestation "simulated", so a production enclave
	// always talks TLS to kms.<region>.amazonaws.com under compiled-in roots.
	KMSEndpoint string
	KMSCA       string
}

type pcrFlags []string

func (p *pcrFlags) String() string     { return fmt.Sprint(*p) }
func (p *pcrFlags) Set(s string) error { *p = append(*p, s); return nil }

func parseConfig(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("signerd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "vsock://any:5005", "where the host connects: vsock://CID:PORT, unix:///PATH or tcp://HOST:PORT")
	proxy := fs.String("kms-proxy", "vsock://3:8000", "the vsock-proxy in front of KMS")
	var cfg Config
	fs.StringVar(&cfg.Attestation, "attestation", "nsm", "nsm (/dev/nsm) or simulated")
	fs.StringVar(&cfg.SimCADir, "sim-ca-dir", "", "the simulator's CA directory (only with --attestation simulated)")
	fs.Var((*pcrFlags)(&cfg.SimPCRs), "sim-pcr", "N=HEX, a simulated PCR value (repeatable; only with --attestation simulated)")
	fs.BoolVar(&cfg.SimDebugMode, "sim-debug-mode", false, "simulate a debug-mode enclave (only with --attestation simulated)")
	fs.StringVar(&cfg.KMSEndpoint, "kms-endpoint", "", "a different KMS URL (only with --attestation simulated)")
	fs.StringVar(&cfg.KMSCA, "kms-ca", "", "PEM file of an extra TLS root for KMS (only with --attestation simulated)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if cfg.Listen, err = transport.ParseAddr(*listen); err != nil {
		return Config{}, fmt.Errorf("--listen: %w", err)
	}
	if cfg.KMSProxy, err = transport.ParseAddr(*proxy); err != nil {
		return Config{}, fmt.Errorf("--kms-proxy: %w", err)
	}
	return cfg, cfg.Validate()
}

// Validate checks the combination of settings.
func (c Config) Validate() error {
	switch c.Attestation {
	case "nsm":
		var errs []error
		for name, set := range map[string]bool{
			"--sim-ca-dir": c.SimCADir != "", "--sim-pcr": len(c.SimPCRs) > 0, "--sim-debug-mode": c.SimDebugMode,
			"--kms-endpoint": c.KMSEndpoint != "", "--kms-ca": c.KMSCA != "",
		} {
			if set {
				errs = append(errs, fmt.Errorf("%s is accepted only with --attestation simulated", name))
			}
		}
		return errors.Join(errs...)
	case "simulated":
		if c.KMSEndpoint != "" {
			u, err := url.Parse(c.KMSEndpoint)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				return fmt.Errorf("--kms-endpoint: want https://HOST[:PORT], got %q", c.KMSEndpoint)
			}
		}
		return nil
	}
	return fmt.Errorf("--attestation: want nsm or simulated, got %q", c.Attestation)
}

package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/pkg/kms/kmsemu"
	"github.com/enclave-signer/enclave-signer/pkg/transport"
)

// runKMSEmulator is `signer kms-emulator --listen ADDR --state FILE
// [--trust-root PEM]... [--credential AKID:SECRET=PRINCIPAL_ARN]...
// [--throttle-fraction F]`: the KMS emulator alone, plain HTTP, until the
// context ends.
func runKMSEmulator(e *env) error {
	fs := newFlagSet(e, "kms-emulator")
	listen := fs.String("listen", "", "where to serve plain HTTP: `HOST:PORT`, tcp://HOST:PORT or unix:///PATH (required)")
	statePath := fs.String("state", "", "JSON `file` keeping keys, key policies and aliases across restarts (required; created if absent, mode 0600)")
	var roots, creds multiFlag
	fs.Var(&roots, "trust-root", "PEM `file` of an attestation root trusted beside the AWS Nitro root (repeatable)")
	fs.Var(&creds, "credential", "accepted access key, `AKID:SECRET=PRINCIPAL_ARN` (repeatable); default test:test="+kmsemu.DefaultCredential.Principal)
	maxAge := fs.Duration("max-attestation-age", 5*time.Minute, "refuse Recipient attestation documents older than this (AWS documents no limit)")
	throttle := fs.Float64("throttle-fraction", 0, "answer this `fraction` (0 to 1) of requests with ThrottlingException, as KMS does when it throttles, spread evenly from the first request on: 0.5 throttles every other request")
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("kms-emulator: unexpected argument %q: all settings are flags", pos[0])
	}
	if *listen == "" {
		return usageErrorf("kms-emulator: --listen is required: want HOST:PORT, tcp://HOST:PORT or unix:///PATH")
	}
	if *statePath == "" {
		return usageErrorf("kms-emulator: --state is required: the JSON file that keeps the emulator's keys")
	}
	if !(*throttle >= 0 && *throttle <= 1) {
		return usageErrorf("kms-emulator: --throttle-fraction %v: want a fraction from 0 to 1 (0.5 throttles every other request)", *throttle)
	}
	addr, err := transport.ParseHTTPAddr(*listen)
	if err != nil {
		return usageErrorf("kms-emulator: --listen: %v", err)
	}
	var credentials []kmsemu.Credential
	for _, c := range creds {
		cred, err := parseCredentialFlag(c)
		if err != nil {
			return usageErrorf("kms-emulator: --credential: %v", err)
		}
		credentials = append(credentials, cred)
	}
	var trustRoots []*x509.Certificate
	for _, path := range roots {
		certs, err := readPEMCertificates(path)
		if err != nil {
			return fmt.Errorf("kms-emulator: --trust-root: %w", err)
		}
		trustRoots = append(trustRoots, certs...)
	}

	log := slog.New(slog.NewTextHandler(e.stderr, nil)).With("component", "kms-emulator")
	srv := &kmsemu.Server{
		Credentials: credentials,
		StatePath:   *statePath,
		Log:         log,
		TrustRoots:  trustRoots,

		ThrottleFraction: *throttle,
	}
	verifier := &kmsemu.AttestationVerifier{Roots: kmsemu.RootsWithAWS(trustRoots...), MaxAge: *maxAge, Log: log}
	srv.OpenRecipient = verifier.Open
	if err := srv.Init(); err != nil {
		return fmt.Errorf("kms-emulator: %w", err)
	}
	ln, err := transport.Listen(e.ctx, addr)
	if err != nil {
		return fmt.Errorf("kms-emulator: listening on %s: %w", addr, err)
	}
	endpoint := "http://" + ln.Addr().String()
	if addr.Scheme == transport.Unix {
		endpoint = "unix://" + addr.Path
	}
	ops := kmsemu.Operations()
	sort.Strings(ops)
	log.Info("listening on "+endpoint, "endpoint", endpoint, "state", *statePath,
		"trust_roots", len(trustRoots), "aws_nitro_root", true, "max_attestation_age", *maxAge, "operations", strings.Join(ops, ","))
	if *throttle > 0 {
		log.Warn("throttling requests on purpose: clients will see ThrottlingException", "throttle_fraction", *throttle)
	}
	if len(credentials) == 0 {
		d := kmsemu.DefaultCredential
		log.Info("no --credential given: accepting the local-emulator default credential",
			"access_key_id", d.AccessKeyID, "secret_access_key", d.SecretAccessKey, "principal", d.Principal)
	} else {
		for _, c := range credentials {
			log.Info("accepting credential", "credential", c)
		}
	}

	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("kms-emulator: serving on %s: %w", endpoint, err)
	case <-e.ctx.Done():
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = hs.Shutdown(ctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("kms-emulator: shutting down: %w", err)
	}
	log.Info("stopped")
	return nil
}

// parseCredentialFlag parses AKID:SECRET=PRINCIPAL_ARN. Secret access keys
// never contain '=', role names may: the secret ends at the first '='.
// Errors name the access key id, never the secret.
func parseCredentialFlag(s string) (kmsemu.Credential, error) {
	akid, rest, ok := strings.Cut(s, ":")
	if !ok || akid == "" {
		return kmsemu.Credential{}, errors.New("want AKID:SECRET=PRINCIPAL_ARN, found no access key id before ':'")
	}
	secret, principal, ok := strings.Cut(rest, "=")
	if !ok || secret == "" {
		return kmsemu.Credential{}, fmt.Errorf("access key %q: want AKID:SECRET=PRINCIPAL_ARN, found no secret before '='", akid)
	}
	if !strings.HasPrefix(principal, "arn:") || strings.Count(principal, ":") < 5 {
		return kmsemu.Credential{}, fmt.Errorf("access key %q: principal %q is not an ARN (e.g. arn:aws:iam::000000000000:role/dev)", akid, principal)
	}
	return kmsemu.Credential{AccessKeyID: akid, SecretAccessKey: secret, Principal: principal}, nil
}

// readPEMCertificates reads every CERTIFICATE block of a PEM file.
func readPEMCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %v", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	return certs, nil
}

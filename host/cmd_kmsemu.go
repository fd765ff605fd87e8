package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/imdsemu"
	"github.com/enclave-signer/enclave-signer/internal/kms/kmsemu"
	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// runKMSEmulator is `signer kms-emulator --listen ADDR --state FILE
// [--trust-root PEM]... [--credential AKID:SECRET=PRINCIPAL_ARN]...
// [--throttle-fraction F] [--imds HOST:PORT [--imds-role NAME]
// [--imds-lifetime D]]`: the KMS emulator, plain HTTP, until the context
// ends; with --imds also an emulated instance metadata service whose
// rotating instance-role credentials the emulator accepts until they
// expire (docs/development.md).
func runKMSEmulator(e *env) error {
	fs := newFlagSet(e, "kms-emulator")
	listen := fs.String("listen", "", "where to serve plain HTTP: `HOST:PORT`, tcp://HOST:PORT or unix:///PATH (required)")
	statePath := fs.String("state", "", "JSON `file` keeping keys, key policies and aliases across restarts (required; created if absent, mode 0600)")
	var roots, creds multiFlag
	fs.Var(&roots, "trust-root", "PEM `file` of an attestation root trusted beside the AWS Nitro root (repeatable)")
	fs.Var(&creds, "credential", "accepted access key, `AKID:SECRET=PRINCIPAL_ARN` (repeatable); default test:test="+kmsemu.DefaultCredential.Principal)
	maxAge := fs.Duration("max-attestation-age", 5*time.Minute, "refuse Recipient attestation documents older than this (AWS documents no limit)")
	throttle := fs.Float64("throttle-fraction", 0, "answer this `fraction` (0 to 1) of requests with ThrottlingException, as KMS does when it throttles, spread evenly from the first request on: 0.5 throttles every other request")
	imdsAddr := fs.String("imds", "", "also serve an emulated EC2 instance metadata service (IMDSv2) on this loopback `HOST:PORT` (127.0.0.1:0 picks a port), handing out instance-role credentials this emulator accepts until they expire; point the AWS SDKs at it with AWS_EC2_METADATA_SERVICE_ENDPOINT=http://HOST:PORT")
	imdsRole := fs.String("imds-role", "dev", "with --imds: the instance role's `name`; its credentials act as arn:aws:sts::000000000000:assumed-role/NAME/INSTANCE_ID")
	imdsLifetime := fs.Duration("imds-lifetime", imdsemu.DefaultLifetime, "with --imds: how long each set of credentials is valid; new ones are available once the current ones are past half of it (EC2: at least 5 minutes before expiry)")
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return unexpectedArg("kms-emulator", pos[0], "")
	}
	var imds *imdsemu.Server
	if *imdsAddr != "" {
		if err := checkLoopbackHostPort(*imdsAddr); err != nil {
			return usageErrorf("kms-emulator: --imds %q: %v", *imdsAddr, err)
		}
		if *imdsLifetime < imdsemu.MinLifetime {
			return usageErrorf("kms-emulator: --imds-lifetime %s: want at least %s (e.g. 30s to watch rotations; EC2's credentials last hours)", *imdsLifetime, imdsemu.MinLifetime)
		}
		imds = &imdsemu.Server{Role: *imdsRole, Lifetime: *imdsLifetime}
		if err := imds.Init(); err != nil {
			return usageErrorf("kms-emulator: --imds-role %q: %v", *imdsRole, strings.TrimPrefix(err.Error(), "imdsemu: "))
		}
	} else if flagGiven(fs, "imds-role") || flagGiven(fs, "imds-lifetime") {
		return usageErrorf("kms-emulator: --imds-role and --imds-lifetime configure --imds HOST:PORT, which is not given")
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
	if err := checkStateFile(*statePath); err != nil {
		return err
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
		certs, err := readPEMCertificates(e, inputFile{cmd: "kms-emulator", arg: "--trust-root", path: path, want: rootWant})
		if err != nil {
			return err
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
	if imds != nil {
		imds.Log = log.With("component", "imds")
		srv.LookupCredential = imdsCredential(imds)
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

	// The KMS listener can go away and come back on the same address
	// (SIGUSR1, SIGUSR2): a KMS that refuses connections, as when it is
	// unreachable, while the process and its state live on.
	kmsAddr := addr
	if addr.Scheme == transport.TCP {
		kmsAddr.HostPort = ln.Addr().String()
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}
	serve := func(hs *http.Server, l net.Listener) chan error {
		done := make(chan error, 1)
		go func() { done <- hs.Serve(l) }()
		return done
	}
	var imdsServer *http.Server
	var imdsDone chan error
	if imds != nil {
		iln, err := transport.Listen(e.ctx, transport.Addr{Scheme: transport.TCP, HostPort: *imdsAddr})
		if err != nil {
			ln.Close()
			return fmt.Errorf("kms-emulator: --imds: listening on %s: %w", *imdsAddr, err)
		}
		imdsServer = newServer(imds)
		imdsDone = serve(imdsServer, iln)
		// Logged after the KMS line, and without "endpoint=": signer dev
		// and scripts take the first endpoint= as the KMS's.
		imdsURL := "http://" + iln.Addr().String()
		log.Info("serving an emulated instance metadata service (IMDSv2) on "+imdsURL, "imds", imdsURL,
			"role", *imdsRole, "principal", imds.Principal(), "lifetime", imds.Lifetime, "rotation", "new credentials once the current ones are past half their lifetime")
	}
	kmsServer := newServer(srv)
	kmsDone := serve(kmsServer, ln)
	down, up, stopSignals := outageSignals()
	defer stopSignals()
serving:
	for {
		select {
		case <-down:
			if kmsServer == nil {
				continue
			}
			kmsServer.Close() // the listener and every connection
			<-kmsDone
			kmsServer, kmsDone = nil, nil
			log.Warn("KMS down on purpose (SIGUSR1): connections to "+endpoint+" are refused until SIGUSR2", "kms_down", true)
		case <-up:
			if kmsServer != nil {
				continue
			}
			l, err := transport.Listen(e.ctx, kmsAddr)
			if err != nil {
				err = fmt.Errorf("kms-emulator: back up after SIGUSR2: listening on %s again: %w", kmsAddr, err)
				if imdsServer != nil {
					imdsServer.Close()
				}
				return err
			}
			kmsServer = newServer(srv)
			kmsDone = serve(kmsServer, l)
			log.Info("KMS back (SIGUSR2): listening on "+endpoint+" again", "kms_down", false)
		case err := <-kmsDone:
			if imdsServer != nil {
				imdsServer.Close()
			}
			return fmt.Errorf("kms-emulator: serving on %s: %w", endpoint, err)
		case err := <-imdsDone:
			if kmsServer != nil {
				kmsServer.Close()
			}
			return fmt.Errorf("kms-emulator: serving the IMDS: %w", err)
		case <-e.ctx.Done():
			break serving
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = nil
	for _, s := range []struct {
		hs   *http.Server
		done chan error
	}{{kmsServer, kmsDone}, {imdsServer, imdsDone}} {
		if s.hs == nil {
			continue
		}
		if serr := s.hs.Shutdown(ctx); serr != nil && err == nil {
			err = serr
		}
		if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}
	if err != nil {
		return fmt.Errorf("kms-emulator: shutting down: %w", err)
	}
	log.Info("stopped")
	return nil
}

// imdsCredential makes the credentials the emulated instance issued
// acceptable to the KMS emulator, each until its expiration.
func imdsCredential(m *imdsemu.Server) func(string) (kmsemu.Credential, bool) {
	return func(id string) (kmsemu.Credential, bool) {
		c, ok := m.Lookup(id)
		if !ok {
			return kmsemu.Credential{}, false
		}
		return kmsemu.Credential{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey,
			SessionToken: c.SessionToken, Expires: c.Expiration, Principal: c.Principal}, true
	}
}

// checkLoopbackHostPort accepts HOST:PORT on a loopback address only: the
// emulated IMDS hands out credentials, and nothing beyond this machine
// should fetch them.
func checkLoopbackHostPort(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || port == "" {
		return fmt.Errorf("want HOST:PORT on loopback, e.g. 127.0.0.1:0")
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("the emulated IMDS hands out credentials: listen on a loopback address (127.0.0.1:PORT or [::1]:PORT), not %q", host)
	}
	return nil
}

// flagGiven reports whether the flag was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			given = true
		}
	})
	return given
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

// checkStateFile checks --state before the emulator starts. The file is
// created (atomically, beside itself) if absent: its directory must
// exist, and it must not be a directory itself.
func checkStateFile(path string) error {
	if err := checkOutput("kms-emulator", "--state", path); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return inputFile{cmd: "kms-emulator", arg: "--state", path: path,
			want: "the emulator's JSON state file (created if absent, mode 0600)"}.explain(errIsDir)
	}
	return nil
}

// readPEMCertificates reads every CERTIFICATE block of a PEM file.
func readPEMCertificates(e *env, in inputFile) ([]*x509.Certificate, error) {
	b, err := in.read(e, 1<<20)
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
			return nil, in.explain(fmt.Errorf("certificate %d: %v", len(certs)+1, err))
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, in.explain(errors.New("no PEM CERTIFICATE block"))
	}
	return certs, nil
}

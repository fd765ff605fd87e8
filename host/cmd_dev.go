//go:build unix

package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// runDev is `signer dev`: the whole stack on one machine, no AWS, no Nitro.
func runDev(e *env) error {
	fs := newFlagSet(e, "dev")
	dir := fs.String("dir", ".signer-dev", "the stack's directory (created; reused by later starts)")
	httpAddr := fs.String("http", "127.0.0.1:8080", "the host shim's HTTP address: HOST:PORT (PORT 0: any free port, printed in the summary), tcp://HOST:PORT or unix:///PATH")
	debug := fs.Bool("debug-mode", false, "simulate a debug-mode enclave (all-zero PCR0) and a policy that admits only that")
	var keyrings multiFlag
	fs.Var(&keyrings, "keyring", "an extra age-encrypted keyring, encrypted to DIR/recipient.txt and signed by the dev keyring signer (FILE.sig next to it; the summary says how); repeatable")
	policyFile := fs.String("policy", "", "a key policy to use instead of the generated one")
	signerd := fs.String("signerd", "", "the signerd binary (default: beside signer, else on PATH)")
	signerdListen := fs.String("signerd-listen", "", "where signerd listens: tcp://127.0.0.1:PORT, to exercise vsock's source-port rules on loopback (default: unix://DIR/signerd.sock)")
	imdsCreds := fs.Duration("imds-credentials", 0, "the shim takes rotating instance-role credentials, each valid this `lifetime` (10s to 1h), from the emulator's instance metadata service instead of the static test/test, and refreshes them a third of the lifetime before expiry")
	auth := fs.Bool("auth", false, "authenticated requests: signerd runs with --require-auth and loads keyring-auth.age, whose keys only its clients app1 and app2 may use (secrets in DIR/clients/ID.secret), instead of keyring.age")
	auditBuffer := fs.Int("audit-buffer", 0, "signerd's audit buffer, in `records` (16 to 4194304; default signerd's 65536): small, to watch signing stop when the audit trail is not drained (docs/audit.md)")
	throttle := fs.Float64("kms-throttle", 0, "the KMS emulator answers this `fraction` of requests (0 to below 1) with ThrottlingException, spread evenly: 0.5 every other one")
	args, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return unexpectedArg("dev", args[0], "")
	}
	if _, err := httpURL(*httpAddr); err != nil {
		return usageErrorf("dev: %v", err)
	}
	if *signerdListen != "" {
		a, err := transport.ParseAddr(*signerdListen)
		if err != nil || a.Scheme != transport.TCP {
			return usageErrorf("dev: --signerd-listen: want tcp://127.0.0.1:PORT, got %q", *signerdListen)
		}
		if host, _, _ := net.SplitHostPort(a.HostPort); !net.ParseIP(host).IsLoopback() {
			return usageErrorf("dev: --signerd-listen %s: want a loopback address (signerd's API is unauthenticated)", *signerdListen)
		}
	}
	if *imdsCreds != 0 && (*imdsCreds < minIMDSLifetime || *imdsCreds > maxIMDSLifetime) {
		return usageErrorf("dev: --imds-credentials %s: want a lifetime from %s to %s (a provisioning must fit in a third of it; the AWS SDK reports instance-role credentials as expiring at most an hour ahead)", *imdsCreds, minIMDSLifetime, maxIMDSLifetime)
	}
	if *auditBuffer != 0 && (*auditBuffer < 16 || *auditBuffer > 1<<22) {
		return usageErrorf("dev: --audit-buffer %d: want 16 to 4194304 records", *auditBuffer)
	}
	if !(*throttle >= 0 && *throttle < 1) {
		return usageErrorf("dev: --kms-throttle %v: want a fraction from 0 to below 1 (1 would throttle every call, signer dev's own setup included)", *throttle)
	}
	fmt.Fprintf(e.stderr, "signer dev: starting the stack in %s\n", *dir)
	s, err := startDevStack(e.ctx, devOptions{
		Dir: *dir, HTTP: *httpAddr, DebugMode: *debug, Keyrings: keyrings,
		PolicyFile: *policyFile, SignerdPath: *signerd, SignerdListen: *signerdListen, Events: e.stderr,
		IMDSCredentials: *imdsCreds, KMSThrottle: *throttle, Auth: *auth, AuditBuffer: *auditBuffer,
	})
	if err != nil {
		return err // the dispatcher puts "dev: " before it
	}
	defer s.stop()
	s.printSummary(e)

	// SIGINT, SIGTERM and SIGHUP (a closed terminal) end e.ctx: every
	// child is stopped before signer dev exits. signerd is restarted when
	// it exits; any other child's exit ends the stack.
	select {
	case <-e.ctx.Done():
		fmt.Fprintln(e.stderr, "signer dev: stopping")
		return nil
	case <-s.failed():
		return s.err()
	}
}

func (s *devStack) printSummary(e *env) {
	w := e.stdout
	if len(s.created) > 0 {
		fmt.Fprintf(w, "Created in %s:\n", s.dir)
		for _, c := range s.created {
			fmt.Fprintf(w, "  %s\n", c)
		}
	} else {
		fmt.Fprintf(w, "Reusing %s.\n", s.dir)
	}
	mode := "production-mode"
	if s.opts.DebugMode {
		mode = "debug-mode"
	}
	fmt.Fprintf(w, "Simulated %s enclave, PCR0 %s\n", mode, hex.EncodeToString(s.pcr0))
	fmt.Fprintf(w, "KMS emulator:   %s (aws --endpoint-url $(cat %s) kms …, credentials test/test)\n", s.kmsEndpoint, filepath.Join(s.dir, "kms-endpoint"))
	if s.opts.KMSThrottle > 0 {
		fmt.Fprintf(w, "KMS throttling: %g of requests answered ThrottlingException (--kms-throttle)\n", s.opts.KMSThrottle)
	}
	if s.imdsURL != "" {
		fmt.Fprintf(w, "Credentials:    the shim's come from the emulator's IMDS %s (%s), valid %s each, new ones at half that, refreshed %s before expiry\n",
			s.imdsURL, filepath.Join(s.dir, "imds-endpoint"), s.opts.IMDSCredentials, credentialRefresh(s.opts.IMDSCredentials))
	}
	fmt.Fprintf(w, "Key policy:     %s (key %s)\n", filepath.Join(s.dir, "policy.json"), s.keyID)
	fmt.Fprintf(w, "Pinned key:     %s (signerd --kms-key: it accepts only an identity sealed under it)\n", s.keyARN)
	signerFile := filepath.Join(s.dir, "keyring-signer")
	fmt.Fprintf(w, "Keyring signer: kms:%s (%s); signerd pins %s\n", s.keyringSigner.KeyARN(), signerFile, s.signerPin)
	fmt.Fprintf(w, "  sign a keyring made by hand for --keyring (writes FILE.sig):\n    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=%s signer keyring sign --endpoint-url $(cat %s) --sign-with $(cat %s) --id ID --version N --recipient-file %s FILE\n",
		devRegion, filepath.Join(s.dir, "kms-endpoint"), signerFile, filepath.Join(s.dir, "recipient.txt"))
	fmt.Fprintf(w, "Logs:           %s\n", filepath.Join(s.dir, "logs"))
	fmt.Fprintf(w, "Audit log:      %s (every decision; check it: signer audit verify %s --expect-pcr 0=%x --root %s)\n",
		filepath.Join(s.dir, "audit.jsonl"), filepath.Join(s.dir, "audit.jsonl"), s.pcr0, filepath.Join(s.dir, "ca", nsmsim.RootCertFile))
	fmt.Fprintf(w, "Host shim:      %s (instance %s)\n", s.httpURL, s.instance)
	fmt.Fprintf(w, "Processes:      %s (signerd is restarted when it exits)\n", s.processes())
	st, err := s.status(httpClientFor(s.opts.HTTP))
	if err == nil && st.State != "ready" && st.Shim.LastError != "" {
		fmt.Fprintf(w, "Provisioning:   the shim's last attempt failed: %s\n", st.Shim.LastError)
	}
	if err == nil && st.State == "ready" {
		fmt.Fprintf(w, "Ready: the host shim serves %s\n", s.httpURL)
	} else {
		detail := "unknown"
		if st != nil {
			detail = st.State + " " + strings.TrimSpace(string(st.Error))
		}
		fmt.Fprintf(w, "NOT READY: the enclave is %s\n  to fix: %s\n  (see %s/v1/status; POST %s/v1/provision tries again)\n", detail, notReadyHint(st), s.httpURL, s.httpURL)
	}
	curl := "curl -s"
	if p, ok := strings.CutPrefix(s.opts.HTTP, "unix://"); ok {
		curl += " --unix-socket " + p
	}
	if s.opts.Auth {
		s.printAuthSummary(e, s.opts.HTTP)
	} else {
		fmt.Fprintf(w, "Sign:\n  %s -X POST %s/v1/keys/dev-ed25519/sign -H 'Content-Type: application/json' -d '{\"message\":\"'$(printf hello | base64)'\"}'\n", curl, s.httpURL)
	}
	fmt.Fprintf(w, "Keys:\n  %s %s/v1/keys\nCtrl-C stops everything.\n", curl, s.httpURL)
}

// notReadyHint is what to fix, as the shim's status error says it
// (error.hint, per failed step).
func notReadyHint(st *devStatus) string {
	var e struct{ Hint string }
	if st != nil && json.Unmarshal(st.Error, &e) == nil && e.Hint != "" {
		return e.Hint
	}
	return "read the error in the status"
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/policy"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

func runPolicy(e *env) error {
	return subcommand(e, "policy", map[string]func(*env) error{
		"render": runPolicyRender,
		"check":  runPolicyCheck,
		"update": runPolicyUpdate,
	})
}

// runPolicyRender prints the operator guide's key policy for the given
// measurements and roles: signer policy render --measurements FILE...
// --enclave-role ARN --encrypt-role ARN --admin-role ARN [--pcr N=HEX]...
// [--pcr3-role-arn ARN] [--pcr4-instance-id ID] [--debug].
func runPolicyRender(e *env) error {
	fs := newFlagSet(e, "policy render")
	var measurements, pins multiFlag
	fs.Var(&measurements, "measurements", "`FILE` with nitro-cli build-enclave or describe-eif JSON; repeat (or list several files) to allow each image's PCR0")
	enclaveRole := fs.String("enclave-role", "", "`ARN` of the parent instance's IAM role, allowed kms:Decrypt from the attested enclave")
	encryptRole := fs.String("encrypt-role", "", "`ARN` of the IAM role allowed kms:Encrypt (sealing)")
	adminRole := fs.String("admin-role", "", "`ARN` of the IAM role that administers the key")
	fs.Var(&pins, "pcr", "pin another register, `N=HEX` (N 1-31, 96 hex digits); repeatable")
	pcr3 := fs.String("pcr3-role-arn", "", "pin PCR3 to this IAM role `ARN` (the parent instance's role)")
	pcr4 := fs.String("pcr4-instance-id", "", "pin PCR4 to this EC2 instance `ID`")
	debug := fs.Bool("debug", false, "also allow debug-mode enclaves (all-zero PCR0): development only")
	args, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	// "--measurements a.json b.json": files after the flag are measurements too.
	if len(args) > 0 && len(measurements) == 0 {
		return unexpectedArg("policy render", args[0], "measurement files follow --measurements")
	}
	measurements = append(measurements, args...)
	if len(measurements) == 0 {
		return usageErrorf("policy render: --measurements FILE is required (the JSON nitro-cli build-enclave or describe-eif prints)")
	}
	opts := policy.RenderOptions{
		EnclaveRole:    *enclaveRole,
		EncryptRole:    *encryptRole,
		AdminRole:      *adminRole,
		PCR3RoleARN:    *pcr3,
		PCR4InstanceID: *pcr4,
		Debug:          *debug,
		PCRs:           map[int]string{},
	}
	for _, r := range []struct{ flag, v string }{
		{"--enclave-role", *enclaveRole}, {"--encrypt-role", *encryptRole}, {"--admin-role", *adminRole}, {"--pcr3-role-arn", *pcr3},
	} {
		if r.v == "" && r.flag == "--pcr3-role-arn" {
			continue
		}
		if r.v == "" {
			return usageErrorf("policy render: %s ARN is required", r.flag)
		}
		if err := pcr.ValidateRoleARN(r.v); err != nil {
			return usageErrorf("policy render: %s: %v", r.flag, err)
		}
	}
	if !*debug && strings.EqualFold(*encryptRole, *enclaveRole) {
		return usageErrorf("policy render: --encrypt-role is the enclave role %s: whoever may kms:Encrypt under the key can seal an identity that a signerd pinned to it accepts, and the enclave role's credentials are on the parent instance; name a separate sealing role the parent cannot assume (the check would report this as %s)", *enclaveRole, policy.RuleEncryptByEnclave)
	}
	if *pcr4 != "" {
		if err := pcr.ValidateInstanceID(*pcr4); err != nil {
			return usageErrorf("policy render: --pcr4-instance-id: %v", err)
		}
	}
	for _, p := range pins {
		n, v, err := parsePin(p)
		if err != nil {
			return usageErrorf("policy render: --pcr %q: %v", p, err)
		}
		if _, dup := opts.PCRs[n]; dup {
			return usageErrorf("policy render: --pcr %d given twice", n)
		}
		opts.PCRs[n] = v
	}
	for _, f := range measurements {
		b, err := measurementsFile("policy render", f).read(e, 1<<20)
		if err != nil {
			return err
		}
		m, err := policy.ParseMeasurements(f, b)
		if err != nil {
			return err
		}
		opts.ImageSha384 = append(opts.ImageSha384, m.PCRs[0])
	}
	p, warnings, err := policy.Render(opts)
	if err != nil {
		return err
	}
	// A rendered policy must pass its own lint; anything else is a bug here.
	if fs := policy.Check(p, !*debug); policy.HasErrors(fs) {
		for _, f := range fs {
			fmt.Fprintf(e.stderr, "signer: %s\n", f)
		}
		return errors.New("policy render: the rendered policy fails its own check (a bug in signer)")
	}
	for _, w := range warnings {
		if strings.HasPrefix(w, "DEVELOPMENT ONLY") {
			banner := strings.Repeat("!", 78)
			fmt.Fprintf(e.stderr, "signer: %s\nsigner: WARNING: %s\nsigner: %s\n", banner, w, banner)
			continue
		}
		fmt.Fprintf(e.stderr, "signer: warning: %s\n", w)
	}
	_, err = e.stdout.Write(p.Marshal())
	return err
}

// parsePin reads N=HEX for --pcr.
func parsePin(s string) (int, string, error) {
	ns, v, ok := strings.Cut(s, "=")
	if !ok {
		return 0, "", errors.New("want N=HEX")
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 0 || n > 31 {
		return 0, "", fmt.Errorf("PCR index %q: want a number from 1 to 31", ns)
	}
	if n == 0 {
		return 0, "", errors.New("PCR0 comes from --measurements (kms:RecipientAttestation:ImageSha384)")
	}
	if _, err := pcr.ParseHex(v); err != nil {
		return 0, "", err
	}
	return n, strings.ToLower(v), nil
}

// measurementsFile is cmd's --measurements FILE ("-" for stdin).
func measurementsFile(cmd, path string) inputFile {
	return inputFile{cmd: cmd, arg: "--measurements", path: path, stdin: true,
		want: "the JSON nitro-cli build-enclave or describe-eif prints (make eif writes it to measurements.json)"}
}

// runPolicyCheck lints a key policy: signer policy check [--production]
// [--json] FILE. Findings go to stdout, one per line; exit 1 if any is an
// error.
func runPolicyCheck(e *env) error {
	fs := newFlagSet(e, "policy check")
	production := fs.Bool("production", false, "treat an all-zero PCR0 (debug-mode enclaves) as an error")
	asJSON := fs.Bool("json", false, `print {"findings": [...], "errors": N, "warnings": N}`)
	args, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return usageErrorf("policy check: want exactly one policy FILE (or - for stdin), got %s", plural(len(args), "argument"))
	}
	b, err := inputFile{cmd: "policy check", arg: "policy FILE", path: args[0], stdin: true,
		want: "a key policy's JSON: signer policy render writes one, aws kms get-key-policy --key-id KEY --policy-name default --query Policy --output text prints a key's; - reads stdin"}.read(e, policy.MaxSize)
	if err != nil {
		return err
	}
	p, err := policy.Parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	findings := policy.Check(p, *production)
	nerr, nwarn := 0, 0
	for _, f := range findings {
		if f.Severity == policy.SeverityError {
			nerr++
		} else {
			nwarn++
		}
	}
	if *asJSON {
		if findings == nil {
			findings = []policy.Finding{}
		}
		out, err := json.MarshalIndent(struct {
			Findings []policy.Finding `json:"findings"`
			Errors   int              `json:"errors"`
			Warnings int              `json:"warnings"`
		}{findings, nerr, nwarn}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s\n", out)
	} else {
		for _, f := range findings {
			fmt.Fprintln(e.stdout, f)
		}
		fmt.Fprintf(e.stderr, "signer: policy check %s: %s, %s\n", args[0], plural(nerr, "error"), plural(nwarn, "warning"))
	}
	if nerr > 0 {
		return errFailed
	}
	return nil
}

package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/audit"
)

// The audit trail's commands (docs/audit.md): verify a log the shim
// wrote, and fetch a head to verify it against.
func runAudit(e *env) error {
	return subcommand(e, "audit", map[string]func(*env) error{
		"verify": runAuditVerify,
		"head":   runAuditHead,
	})
}

// auditVerifyOutput is what signer audit verify prints: the report, and
// whether the log passed.
type auditVerifyOutput struct {
	Valid bool         `json:"valid"`
	Error *audit.Error `json:"error,omitempty"`
	*audit.Report
}

// runAuditVerify is `signer audit verify FILE --expect-pcr 0=HEX [--root
// PEM] [--head HEAD.json] [--allow-debug]`.
func runAuditVerify(e *env) error {
	fs := newFlagSet(e, "audit verify")
	var expect multiFlag
	fs.Var(&expect, "expect-pcr", "0=`HEX`: the PCR0 of the image every boot must have run (required)")
	rootPath := fs.String("root", "", "PEM `FILE` of the root the attestation documents must chain to (default: the embedded AWS Nitro Enclaves root; signer dev's is DIR/ca/root.pem)")
	headPath := fs.String("head", "", "a head `FILE` (signer audit head --out) the log must reach: catches a log cut at a checkpoint")
	allowDebug := fs.Bool("allow-debug", false, "accept boots of debug-mode enclaves (development only: any image can make their documents)")
	args, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return usageErrorf("audit verify: want one log FILE (- for stdin), got %s", plural(len(args), "argument"))
	}
	pcrs, err := parsePCRFlags("audit verify", expect, "--expect-pcr", 0, 0)
	if err != nil {
		return err
	}
	if _, ok := pcrs[0]; !ok {
		return usageErrorf("audit verify: --expect-pcr 0=HEX is required: an audit key attested by any image proves nothing (take PCR0 from your own build of the image, or signer dev's summary)")
	}
	opts := audit.Options{PCR0: pcrs[0], AllowDebug: *allowDebug}
	if *rootPath != "" {
		if opts.Roots, err = loadRoots(e, inputFile{cmd: "audit verify", arg: "--root", path: *rootPath, want: rootWant}); err != nil {
			return err
		}
	}
	if *headPath != "" {
		b, err := inputFile{cmd: "audit verify", arg: "--head", path: *headPath,
			want: "a head signer audit head --out wrote (JSON)"}.read(e, 1<<20)
		if err != nil {
			return err
		}
		if opts.Head, err = audit.ParseHead(b); err != nil {
			return usageErrorf("audit verify: --head %s: %v (want the JSON signer audit head writes)", *headPath, err)
		}
	}
	var r io.Reader = e.stdin
	if args[0] != "-" {
		f, err := inputFile{cmd: "audit verify", arg: "log FILE", path: args[0],
			want: "the audit log the shim writes (its audit_log setting; docs/audit.md), or - for stdin"}.open()
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	rep, verr := audit.Verify(r, opts)
	if rep == nil {
		return verr
	}
	out := auditVerifyOutput{Valid: verr == nil, Report: rep}
	errors.As(verr, &out.Error)
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if verr != nil {
		fmt.Fprintf(e.stderr, "signer: audit log %s: %v\n", args[0], verr)
		if n := len(rep.Problems); n > 1 {
			fmt.Fprintf(e.stderr, "signer: and %s (\"problems\" in the output)\n", plural(n-1, "more problem"))
		}
		return errFailed
	}
	return nil
}

// runAuditHead is `signer audit head [--nonce HEX] [--out HEAD.json]`:
// GET /v1/audit/head with a nonce (random unless given), checked against
// it and verified under its own key, printed and saved.
func runAuditHead(e *env) error {
	fs, cf := clientFlagSet(e, "audit head")
	nonceHex := fs.String("nonce", "", "the nonce, `HEX` (16 to 256 bytes; default 32 random bytes)")
	outPath := fs.String("out", "", "also write the head to `FILE`, for signer audit verify --head")
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if err := noArgs("audit head", pos); err != nil {
		return err
	}
	if *outPath != "" {
		if err := checkOutput("audit head", "--out", *outPath); err != nil {
			return err
		}
	}
	nonce := make([]byte, 32)
	if *nonceHex != "" {
		if nonce, err = hex.DecodeString(strings.TrimPrefix(*nonceHex, "0x")); err != nil {
			return usageErrorf("audit head: --nonce: want hex bytes, got %q", *nonceHex)
		}
	} else {
		rand.Read(nonce)
	}
	if err := audit.CheckNonce(nonce); err != nil {
		return usageErrorf("audit head: --nonce: %v", err)
	}
	body, err := shimCall(e, cf, "audit head", "GET", "/v1/audit/head?nonce="+url.QueryEscape(hex.EncodeToString(nonce)), nil, 10*time.Second)
	if err != nil {
		return err
	}
	head, err := audit.ParseHead(body)
	if err != nil {
		return fmt.Errorf("the shim's head: %w", err)
	}
	if !bytes.Equal(head.Nonce, nonce) {
		return fmt.Errorf("the shim's head carries nonce %x, not the one sent (%x): not an answer to this request", head.Nonce, nonce)
	}
	if err := head.Verify(); err != nil {
		return fmt.Errorf("the shim's head: %w", err)
	}
	if *outPath != "" {
		if err := os.WriteFile(*outPath, append(head.AppendJSON(nil), '\n'), 0o644); err != nil {
			return fmt.Errorf("audit head: --out: %w", err)
		}
	}
	return nil
}

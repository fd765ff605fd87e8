// Command signer is enclave-signer's program on the parent instance: the
// host shim that provisions the enclave and forwards requests to it, and the
// operator's tool (attestation documents, PCR values, key policies, sealing,
// the local development stack).
//
// Exit codes: 0 success, 1 the operation failed, 2 usage error.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

func main() {
	// SIGHUP (a closed terminal) stops a command like SIGINT and SIGTERM:
	// signer dev then stops its children instead of leaving them running.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is what every command gets: its arguments and the process's streams.
// Commands never touch os.Stdout, os.Args or os.Exit themselves, so tests
// drive them in-process.
type env struct {
	ctx    context.Context
	args   []string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

type command struct {
	summary string
	run     func(e *env) error
}

// commands is the whole command tree. A command with subcommands dispatches
// through subcommand().
var commands = map[string]command{
	"dev":          {"run the whole stack on one machine: KMS emulator, simulated signerd, host shim", runDev},
	"bench":        {"benchmark signing end to end (wire or HTTP) against in-process signing on the enclave's CPUs", runBench},
	"doctor":       {"diagnose this parent instance: nitro-cli, vsock-proxy, credentials, shim, key policy", runDoctor},
	"attestation":  {"verify or simulate Nitro attestation documents", runAttestation},
	"audit":        {"verify the audit log the shim writes, or fetch a signed head of it (audit verify FILE, audit head)", runAudit},
	"kms-emulator": {"serve the KMS emulator (plain HTTP, SigV4, key policies) for tests and aws --endpoint-url", runKMSEmulator},
	"keyring":      {"make, sign and verify age-encrypted keyrings (keyring new, sign, verify, signer-key)", runKeyring},
	"image":        {"read the pins (KMS keys the enclave accepts) out of an enclave image (image pins ARCHIVE)", runImage},
	"pcr":          {"compute PCR3 from a role ARN or PCR4 from an instance id", runPCR},
	"seal":         {"create an age identity in memory and seal it with KMS Encrypt", runSeal},
	"tls-front":    {"TLS for kms.<region>.amazonaws.com in front of the KMS emulator (signer dev)", runTLSFront},
	"policy":       {"render, check or update the key policy that lets only the attested enclave decrypt", runPolicy},
	"serve":        {"run the host shim: provision the enclave and serve the HTTP API (--config FILE)", runServe},
	"sign":         {"sign a message or digest through the shim (--key ID, --message-file F | --digest HEX)", runSign},
	"keys":         {"list the enclave's keys through the shim", runKeys},
	"status":       {"show the enclave's status through the shim", runStatus},
	"attest":       {"get a fresh attestation document from the enclave through the shim", runAttest},
	"provision":    {"ask the shim to provision the enclave again now", runProvision},
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	if isHelp(args[0]) {
		// `signer help CMD [SUB]` is `signer CMD [SUB] --help`.
		if len(args) == 1 {
			printUsage(stderr)
			return 0
		}
		args = append(args[1:], "--help")
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "signer: unknown command %q\n", args[0])
		printUsage(stderr)
		return 2
	}
	e.args = args[1:]
	return exitCode(stderr, inCommand(args[0], cmd.run(e)))
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: signer COMMAND [flags]    (signer COMMAND --help for its flags)\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
}

// isHelp reports whether arg asks for usage where a command or subcommand
// name is expected.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// subcommand dispatches e.args[0] among subs; -h, --help or help prints the
// subcommands (exit 0).
func subcommand(e *env, parent string, subs map[string]func(*env) error) error {
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(e.args) > 0 && isHelp(e.args[0]) {
		fmt.Fprintf(e.stderr, "usage: signer %s SUBCOMMAND [flags]    (signer %s SUBCOMMAND --help for its flags)\n\nsubcommands:\n", parent, parent)
		for _, n := range names {
			fmt.Fprintf(e.stderr, "  %s\n", n)
		}
		return nil
	}
	if len(e.args) == 0 {
		return usageErrorf("%s: want a subcommand: %s (see signer %s --help)", parent, orList(names), parent)
	}
	name := e.args[0]
	f, ok := subs[name]
	if !ok {
		return usageErrorf("%s: unknown subcommand %q: want %s (see signer %s --help)", parent, name, orList(names), parent)
	}
	e.args = e.args[1:]
	return inCommand(parent+" "+name, f(e))
}

// orList joins names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

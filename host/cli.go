package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// usageError marks a mistake in how a command was called (exit 2). Its
// message starts with the command ("keyring new: --out FILE is
// required"); exitCode adds the one "signer: " prefix.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Sprintf(format, a...)}
}

// failed reports that a command has already printed its result and only the
// exit code 1 remains (e.g. an invalid document whose JSON went to stdout).
var errFailed = errors.New("failed")

// hintError carries operator hints printed after the error.
type hintError struct {
	err   error
	hints []string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// unexpectedArg is the usage error for a positional argument where cmd
// takes none (or no more): why says what to do instead; empty, that cmd
// takes flags only.
func unexpectedArg(cmd, arg, why string) error {
	if why == "" {
		why = "it takes flags only"
	}
	return usageErrorf("%s: unexpected argument %q: %s (see signer %s --help)", cmd, arg, why, cmd)
}

// inCommand makes err's message start with cmd ("keyring new"), the
// command it came from, unless it already names it or a command below it:
// messages made by helpers shared between commands (flag values, PCR
// lists, file reads) then still say which command they are about, and
// every error reads "signer: [error: ]COMMAND: …". The dispatcher applies
// it at each level, so a command's own messages need only name themselves.
func inCommand(cmd string, err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) || errors.Is(err, errFailed) {
		return err
	}
	msg := err.Error()
	if strings.HasPrefix(msg, cmd+":") || strings.HasPrefix(msg, cmd+" ") {
		return err
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return &usageError{cmd + ": " + msg}
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

func exitCode(stderr io.Writer, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		// -h or --help: the flag set has printed the usage asked for.
		return 0
	}
	if errors.Is(err, errFailed) {
		return 1
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "signer: %v\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "signer: error: %v\n", err)
	var he *hintError
	if errors.As(err, &he) {
		for _, h := range he.hints {
			fmt.Fprintf(stderr, "signer: hint: %s\n", h)
		}
	}
	return 1
}

// newFlagSet returns a flag set that reports to stderr and never exits.
func newFlagSet(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("signer "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parseFlags parses e.args with fs, letting flags stand before or after
// positional arguments, and returns the positional arguments. "--" ends
// flag parsing.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			// The flag package has printed the flags above; this line
			// says which command they belong to.
			return nil, usageErrorf("%s: %v (see %s --help)", strings.TrimPrefix(fs.Name(), "signer "), err, fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse stops at the first non-flag, or after "--".
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

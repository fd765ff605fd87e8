package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
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

// plural is n and noun, with an s unless n is 1: "1 new key", "3 new
// keys", "0 errors". Every count signer prints goes through it.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// inputFile is a file a command reads, named by a flag ("--config") or an
// argument ("policy FILE"). An error reading it says what an operator
// needs to fix it: the command, the flag or argument and the path as
// given, what is wrong with the file, and in a hint what it should be.
type inputFile struct {
	cmd  string // "serve"
	arg  string // "--config", or an argument's name: "policy FILE"
	path string
	// shown is how the command line gave path, when not as itself
	// ("file:key.pem" for --sign-with).
	shown string
	// want is what the file should hold and where one comes from, for the
	// hint "ARG wants WANT".
	want string
	// stdin lets "-" name the standard input.
	stdin bool
}

// errIsDir is the problem with a directory given for a file.
var errIsDir = errors.New("is a directory, want a file")

// read reads the whole file, at most max bytes (e.stdin for "-", when in
// allows it; e may be nil otherwise).
func (in inputFile) read(e *env, max int64) ([]byte, error) {
	var r io.Reader
	if in.stdin && in.path == "-" {
		r = e.stdin
	} else {
		f, err := in.open()
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		clear(b) // it may be a secret
		return nil, in.explain(err)
	}
	if int64(len(b)) > max {
		clear(b)
		return nil, in.explain(fmt.Errorf("larger than %d bytes", max))
	}
	return b, nil
}

// open opens the file (never stdin) for reading; a directory is refused
// here, as reading it would fail with a less clear error.
func (in inputFile) open() (*os.File, error) {
	f, err := os.Open(in.path)
	if err != nil {
		return nil, in.explain(err)
	}
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		f.Close()
		return nil, in.explain(errIsDir)
	}
	return f, nil
}

// explain turns err, met opening or reading the file, into the error
// "CMD: ARG PATH: PROBLEM" with hints. It wraps err's cause, so that
// errors.Is(err, fs.ErrNotExist) still holds.
func (in inputFile) explain(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is said once, by the message
	}
	var hints []string
	if errors.Is(err, fs.ErrPermission) {
		hints = append(hints, "this user may not read "+in.path+": check its mode and owner, or run signer as a user who may")
	}
	hints = append(hints, in.arg+" wants "+in.want)
	return &hintError{err: fmt.Errorf("%s: %s %s: %w", in.cmd, in.arg, in.name(), err), hints: hints}
}

func (in inputFile) name() string {
	switch {
	case in.shown != "":
		return in.shown
	case in.stdin && in.path == "-":
		return "- (stdin)"
	}
	return in.path
}

// checkOutput fails unless path can be created: its directory exists. It
// runs before any work whose result would otherwise be lost (a KMS call,
// keys generated), so that a mistyped --out changes nothing.
func checkOutput(cmd, arg, path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		err = fmt.Errorf("%s is not a directory", dir)
	case errors.Is(err, fs.ErrNotExist):
		err = fmt.Errorf("directory %s does not exist", dir)
	default:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("directory %s: %w", dir, pe.Err)
		}
	}
	return &hintError{err: fmt.Errorf("%s: %s %s: %w", cmd, arg, path, err), hints: []string{
		fmt.Sprintf("create the directory first (mkdir -p %s), or give %s a path in an existing one; nothing was done", dir, arg)}}
}

// unwrapExecError drops what exec.LookPath's error repeats of the name
// the caller already gives: `exec: "x": executable file not found in
// $PATH` becomes "executable file not found in $PATH", and `exec:
// "./x": stat ./x: no such file or directory` "no such file or directory".
func unwrapExecError(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return err
}

//go:build unix

package main

import (
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScripts runs the transcripts in testdata/script: signer's usage,
// errors and hints, and the operator flows that need no network, written
// as terminal sessions (the testscript format: commands, then what stdout
// and stderr must match). `signer` in them is this test binary run as
// signer's main (TestMain), so they exercise exactly the code under test.
//
// Each script runs in a directory of its own, with an environment of
// testscript's (HOME=/no-home, nothing of the caller's AWS settings) plus:
//
//	REPO                       the repository root, for its test data
//	AWS_EC2_METADATA_DISABLED  true: no command may reach for IMDS
//
// and three commands besides testscript's own:
//
//	exits N PROG ARGS...  run PROG as exec does; its exit status must be N
//	perm MODE FILE...     each FILE has permission bits MODE (octal)
//	unhex HEX OUT         write the bytes the hex digits in file HEX spell
//	                      (# comments to the end of a line) to OUT
func TestScripts(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                "testdata/script",
		RequireUniqueNames: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("REPO", root)
			e.Setenv("AWS_EC2_METADATA_DISABLED", "true")
			// Under -race (make test) a program sleeps a second before it
			// exits, for reports from goroutines still running; for the
			// many short signer runs here that would be minutes.
			// A GORACE setting of the caller's, given after, still wins.
			e.Setenv("GORACE", strings.TrimSpace("atexit_sleep_ms=0 "+e.Getenv("GORACE")))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": scriptExits,
			"perm":  scriptPerm,
			"unhex": scriptUnhex,
		},
	})
}

// scriptExits is `exits N PROG ARGS...`: testscript's `! exec` accepts any
// failure, but signer's exit statuses differ in meaning (1: the operation
// failed or the verdict is negative; 2: a usage error, nothing done).
func scriptExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: N %q: want an exit status", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// scriptPerm is `perm MODE FILE...`: testscript's exists says nothing of
// a file's mode, and a secret file's 0600 is part of the contract.
func scriptPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: perm MODE FILE...")
	}
	want, err := strconv.ParseUint(args[0], 8, 32)
	if err != nil {
		ts.Fatalf("perm: MODE %q: want octal permission bits such as 0600", args[0])
	}
	for _, name := range args[1:] {
		fi, err := os.Stat(ts.MkAbs(name))
		if err != nil {
			ts.Fatalf("perm: %v", err)
		}
		got := fi.Mode().Perm()
		if (uint64(got) == want) == neg {
			if neg {
				ts.Fatalf("%s has mode %04o, want anything else", name, got)
			}
			ts.Fatalf("%s has mode %04o, want %04o", name, got, want)
		}
	}
}

// scriptUnhex is `unhex HEX OUT`: binary inputs (a CBOR user_data) are
// kept in the scripts, which are text, as hex with comments saying what
// each part is.
func scriptUnhex(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: unhex HEX OUT")
	}
	var digits strings.Builder
	for line := range strings.Lines(ts.ReadFile(args[0])) {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		ts.Fatalf("unhex %s: %v", args[0], err)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), b, 0o644))
}

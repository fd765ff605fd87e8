package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// signer runs the CLI in-process and returns its exit code and outputs.
func signer(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"attestation"}, {"attestation", "nope"}, {"pcr", "role-arn"}, {"attestation", "verify"}} {
		if code, _, _ := signer(t, "", args...); code != 2 {
			t.Errorf("signer %q: exit %d, want 2", args, code)
		}
	}
	if code, _, _ := signer(t, "", "--help"); code != 0 {
		t.Errorf("signer --help: exit %d, want 0", code)
	}
}

func TestParseFlagsInterspersed(t *testing.T) {
	e := &env{stderr: &bytes.Buffer{}}
	fs := newFlagSet(e, "x")
	v := fs.String("a", "", "")
	b := fs.Bool("b", false, "")
	pos, err := parseFlags(fs, []string{"one", "--a", "x", "two", "-b", "--", "--three"})
	if err != nil || *v != "x" || !*b || strings.Join(pos, ",") != "one,two,--three" {
		t.Fatalf("got %q a=%q b=%v err=%v", pos, *v, *b, err)
	}
}

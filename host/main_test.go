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

// TestHelpEverywhere: -h, --help (and help where a command name is
// expected) print usage and exit 0 at every level: the top, each command,
// each command group and each of its subcommands.
func TestHelpEverywhere(t *testing.T) {
	groups := map[string]bool{"attestation": true, "audit": true, "keyring": true, "pcr": true, "policy": true}
	helped := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := signer(t, "", args...)
		if code != 0 {
			t.Errorf("signer %s: exit %d, want 0; stderr:\n%s", strings.Join(args, " "), code, stderr)
		}
		if !strings.Contains(stdout+stderr, "usage") && !strings.Contains(stdout+stderr, "Usage") {
			t.Errorf("signer %s printed no usage:\n%s%s", strings.Join(args, " "), stdout, stderr)
		}
		return stderr
	}
	for _, flag := range []string{"--help", "-h", "help"} {
		helped(flag)
	}
	for name := range commands {
		for _, flag := range []string{"--help", "-h"} {
			usage := helped(name, flag)
			if !strings.Contains(usage, "signer "+name) {
				t.Errorf("signer %s %s does not name the command:\n%s", name, flag, usage)
			}
		}
		helped("help", name)
		if !groups[name] {
			continue
		}
		helped(name, "help")
		_, subs, ok := strings.Cut(helped(name, "--help"), "subcommands:\n")
		if !ok || len(strings.Fields(subs)) == 0 {
			t.Errorf("signer %s --help lists no subcommands", name)
			continue
		}
		for _, sub := range strings.Fields(subs) {
			for _, flag := range []string{"--help", "-h"} {
				if usage := helped(name, sub, flag); !strings.Contains(usage, "signer "+name+" "+sub) {
					t.Errorf("signer %s %s %s does not name the subcommand:\n%s", name, sub, flag, usage)
				}
			}
			helped("help", name, sub)
		}
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

// TestPlural: counts read as English whatever the number ("1 new key",
// not "1 new keys").
func TestPlural(t *testing.T) {
	for _, tc := range []struct {
		n    int
		noun string
		want string
	}{
		{0, "error", "0 errors"},
		{1, "new key", "1 new key"},
		{3, "new key", "3 new keys"},
		{1, "more problem", "1 more problem"},
		{2, "signature", "2 signatures"},
	} {
		if got := plural(tc.n, tc.noun); got != tc.want {
			t.Errorf("plural(%d, %q) = %q, want %q", tc.n, tc.noun, got, tc.want)
		}
	}
}

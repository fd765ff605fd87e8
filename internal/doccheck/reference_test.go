package doccheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

func readReference(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "reference.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReferenceListsEveryCommand: docs/reference.md's command table names
// every command and subcommand host/ registers, so the one list of
// commands is complete.
func TestReferenceListsEveryCommand(t *testing.T) {
	ref := readReference(t)
	_, table, ok := strings.Cut(ref, "\n## `signer` commands\n")
	if !ok {
		t.Fatal("docs/reference.md has no \"## `signer` commands\" section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	known, parents := knownCommands(t)
	var names []string
	for n := range known {
		if strings.Contains(n, " ") || len(parents[n]) == 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		re := regexp.MustCompile("`signer " + regexp.QuoteMeta(n) + "[ `]")
		if !re.MatchString(table) {
			t.Errorf("docs/reference.md's command table does not list `signer %s`", n)
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d commands in host/; the command reader is broken", len(names))
	}
}

// TestReferenceListsEveryPolicyRule: every rule policy.Check can report
// (the Rule* constants of internal/policy/check.go) has a row in
// docs/reference.md's table of findings.
func TestReferenceListsEveryPolicyRule(t *testing.T) {
	ref := readReference(t)
	_, table, ok := strings.Cut(ref, "\n## `signer policy check` findings\n")
	if !ok {
		t.Fatal("docs/reference.md has no \"## `signer policy check` findings\" section")
	}
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "internal", "policy", "check.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Rule") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					if err == nil {
						rules = append(rules, v)
					}
				}
			}
		}
	}
	if len(rules) < 10 {
		t.Fatalf("found %d Rule constants in internal/policy/check.go; has the rule list moved?", len(rules))
	}
	for _, r := range rules {
		if !strings.Contains(table, "\n| `"+r+"` |") {
			t.Errorf("docs/reference.md's findings table has no row for rule %q", r)
		}
	}
}

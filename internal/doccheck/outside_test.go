package doccheck

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The project's documents are its contract: nothing in the repository may
// send a reader (or a test) to a file the repository does not hold. These
// patterns name the material the project started from, which lived beside
// the repository and is not distributed with it: the shared folder and its
// documents. (Written with character classes so that this file does not
// match itself.)
var outsideNames = []*regexp.Regexp{
	regexp.MustCompile(`(?:^|[^A-Za-z0-9_.-])shared/(?:docs|vectors|hooks)(?:/|\b)`),
	regexp.MustCompile(`(?:^|[^A-Za-z0-9_.-])shared/STYLE[.]md`),
	regexp.MustCompile(`(?:[.][.]/)+shared(?:/|\b)`),
	regexp.MustCompile(`\binterfaces[.]md\b`),
	regexp.MustCompile(`nitro-kms-fact[s]`),
	regexp.MustCompile(`kms-attestation-policy[.]zh`),
	regexp.MustCompile(`vectors-seale[d]`),
	regexp.MustCompile(`\bHELPERS[.]md\b|\bISSUE[0-9]+[.]md\b`),
	// "facts §N": a numbered section of the outside facts document.
	regexp.MustCompile(`\bfacts §[0-9]`),
}

// relPathRE finds relative paths that start by going up: "../x" after a
// quote, a parenthesis, a space or the start of a line, as links,
// string literals and prose write them. (A path inside a URL, such as
// /v1/keys/../x, starts with something else and is not a file path.)
var relPathRE = regexp.MustCompile("(?:^|[\\s\"'`(\\[<=,:])((?:[.]/)?(?:[.][.]/)+[^\\s\"'`)\\]>,;#]*)")

// trackedFiles lists the repository's files, relative to root with
// slashes: the tracked ones and the new ones git does not ignore, so that
// a file is checked before it is committed. Without git (a source archive)
// it walks the tree, leaving out what .gitignore leaves out.
func trackedFiles(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err == nil {
		var files []string
		for _, f := range strings.Split(string(out), "\x00") {
			if f == "" {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(f))); err != nil {
				continue // deleted in the work tree, not yet in the index
			}
			files = append(files, f)
		}
		slices.Sort(files)
		files = slices.Compact(files)
		if len(files) < 100 {
			t.Fatalf("git ls-files listed %d files; expected the whole repository", len(files))
		}
		return files
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("git ls-files: %v: CI must check the tracked files", err)
	}
	t.Logf("git ls-files: %v; walking the tree instead", err)
	var files []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" || rel == "bin" || rel == ".signer-dev" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(rel, ".test") || strings.HasSuffix(rel, ".out") {
			return nil
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// outsideRefs returns what in the file (its path relative to the
// repository root, with slashes) points outside the repository.
func outsideRefs(file string, text []byte) []string {
	var found []string
	dir := path.Dir(file)
	for i, line := range strings.Split(string(text), "\n") {
		names, up := mayNameOutside(line), strings.Contains(line, "../")
		if !names && !up {
			continue // the regular expressions below are slow under -race
		}
		where := fmt.Sprintf("%s:%d", file, i+1)
		for _, re := range outsideNames {
			if !names {
				break
			}
			if m := re.FindString(line); m != "" {
				found = append(found, fmt.Sprintf("%s: %q names a file outside the repository; point at the project's own docs instead", where, strings.TrimSpace(m)))
			}
		}
		for _, m := range relPathRE.FindAllStringSubmatch(line, -1) {
			if dest := path.Join(dir, m[1]); dest == ".." || strings.HasPrefix(dest, "../") {
				found = append(found, fmt.Sprintf("%s: %q leads out of the repository (from %s/ it is %s)", where, m[1], dir, dest))
			}
		}
	}
	if strings.HasSuffix(file, ".go") && bytes.Contains(text, []byte(`".."`)) {
		found = append(found, goJoinsOutside(file, text)...)
	}
	return found
}

// mayNameOutside reports whether line holds a word one of outsideNames
// needs, so that only those lines are matched against them.
func mayNameOutside(line string) bool {
	for _, w := range []string{"shared", "interfaces", "nitro-kms", "kms-attestation", "vectors-seale", "HELPERS", "ISSUE", "facts §"} {
		if strings.Contains(line, w) {
			return true
		}
	}
	return false
}

// goJoinsOutside finds filepath.Join and path.Join calls whose leading
// literal arguments climb out of the repository from the file's package
// directory, where go test runs.
func goJoinsOutside(file string, text []byte) []string {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, text, 0)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", file, err)}
	}
	var found []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Join" {
			return true
		}
		if pkg, ok := sel.X.(*ast.Ident); !ok || (pkg.Name != "filepath" && pkg.Name != "path") {
			return true
		}
		var parts []string
		for _, a := range call.Args {
			lit, ok := a.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				break
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				break
			}
			parts = append(parts, filepath.ToSlash(s))
		}
		if len(parts) == 0 || path.IsAbs(parts[0]) {
			return true
		}
		if dest := path.Join(append([]string{path.Dir(file)}, parts...)...); dest == ".." || strings.HasPrefix(dest, "../") {
			found = append(found, fmt.Sprintf("%s: %s.Join(%q…) leads out of the repository (%s)", fset.Position(call.Pos()), sel.X, parts, dest))
		}
		return true
	})
	return found
}

// TestNothingPointsOutsideTheRepository: no tracked file (code, docs,
// Makefile, deploy files, testdata READMEs) names the material the project
// started from or a path that climbs out of the repository.
func TestNothingPointsOutsideTheRepository(t *testing.T) {
	checked := 0
	for _, file := range trackedFiles(t) {
		if file == "go.sum" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b) {
			continue // binary test data
		}
		checked++
		for _, f := range outsideRefs(file, b) {
			t.Error(f)
		}
	}
	if checked < 200 {
		t.Errorf("checked only %d text files; the file list is broken", checked)
	}
}

// TestMarkdownLinksStayInside: every relative link in every Markdown file
// of the repository (testdata READMEs and deploy/ included) names a file
// that exists in the repository, and a heading of it for an #anchor.
func TestMarkdownLinksStayInside(t *testing.T) {
	checked := 0
	for _, file := range trackedFiles(t) {
		if !strings.HasSuffix(file, ".md") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
					continue
				}
				p, anchor, _ := strings.Cut(target, "#")
				dest := path.Join(path.Dir(file), p)
				checked++
				if dest == ".." || strings.HasPrefix(dest, "../") || path.IsAbs(p) {
					t.Errorf("%s:%d: link to %s leads out of the repository", file, i+1, target)
					continue
				}
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(dest))); err != nil {
					t.Errorf("%s:%d: link to %s: %s is not in the repository", file, i+1, target, dest)
					continue
				}
				if anchor != "" && strings.HasSuffix(dest, ".md") && !anchors(readDoc(t, dest))[anchor] {
					t.Errorf("%s:%d: link to %s: %s has no heading with anchor #%s", file, i+1, target, dest, anchor)
				}
			}
		}
	}
	if checked < 30 {
		t.Errorf("checked only %d links; the link extractor is broken", checked)
	}
}

// TestOutsideRefsCatches: the detector flags each kind of reference, and
// leaves alone paths that stay inside and test data that merely contains
// "shared/".
func TestOutsideRefsCatches(t *testing.T) {
	sh, up := "shared/", "../"
	for _, c := range []struct {
		file, text string
		want       bool
	}{
		{"docs/x.md", "see `" + sh + "docs/interfaces" + ".md`", true},
		{"internal/cms/testdata/README.md", "copied from `" + sh + "vectors/`", true},
		{"pkg/a/a.go", `// the style guide (` + sh + "STYLE" + `.md)`, true},
		{"docs/x.md", "[facts](../../" + sh + "docs/x.md)", true},
		{"docs/x.md", "[up](../../outside.md)", true},
		{"pkg/a/a_test.go", `package a; var _ = "` + up + `../../x"`, true},
		{"pkg/a/a_test.go", "package a\nimport \"path/filepath\"\nvar _ = filepath.Join(\"..\", \"..\", \"..\", \"x\")", true},
		{"pkg/a/a.go", "// see nitro-kms-" + "facts", true},
		{"internal/cms/cms_test.go", "// facts " + "§2.1: the SKI", true},
		{"docs/x.md", "the operator guide (kms-attestation-policy" + ".zh.md)", true},
		{"docs/x.md", "[deploy](../deploy/README.md)", false},
		{"pkg/a/a_test.go", `package a; var _ = os.ReadFile("../../docs/protocol.md")`, false},
		{"pkg/a/a_test.go", "package a\nimport \"path/filepath\"\nvar root = filepath.Join(\"..\", \"..\")", false},
		{"enclave/x_test.go", `package main; var ids = "new/ed25519,` + sh + `ecdsa-secp256k1"`, false},
		{"docs/shim.md", "a path such as `/v1/keys/../x` is 404", false},
	} {
		got := outsideRefs(c.file, []byte(c.text))
		if (len(got) > 0) != c.want {
			t.Errorf("%s %q: flagged %q, want flagged %v", c.file, c.text, got, c.want)
		}
	}
}

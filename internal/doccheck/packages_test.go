package doccheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// goPackages returns the directories of the module that hold Go files,
// slash-separated from the root ("pkg/client", "internal/wire"), the
// commands as "enclave/" and "host/".
func goPackages(t *testing.T) []string {
	t.Helper()
	var pkgs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(name, ".go") {
			return nil
		}
		dir, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		dir = filepath.ToSlash(dir)
		if dir == "enclave" || dir == "host" {
			dir += "/"
		}
		if !slices.Contains(pkgs, dir) {
			pkgs = append(pkgs, dir)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// TestMapsListEveryPackage: the README's map and docs/architecture.md's
// table of packages name every package of the module, and pkg/ holds only
// the public packages the architecture says are public.
func TestMapsListEveryPackage(t *testing.T) {
	pkgs := goPackages(t)
	if !slices.Contains(pkgs, "pkg/client") || !slices.Contains(pkgs, "internal/wire") || !slices.Contains(pkgs, "host/") {
		t.Fatalf("found packages %v, want pkg/client, internal/wire and host/ among them: has the layout moved?", pkgs)
	}
	for _, doc := range []string{"README.md", "docs/architecture.md"} {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, p := range pkgs {
			if !strings.Contains(text, "`"+p+"`") {
				t.Errorf("%s does not list package `%s`: add a row saying its job (and, in docs/architecture.md, why it is public or internal)", doc, p)
			}
		}
	}
	arch, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		if strings.HasPrefix(p, "pkg/") && !strings.Contains(string(arch), "| `"+p+"` | public |") {
			t.Errorf("%s is under pkg/ but docs/architecture.md does not list it as public: move it under internal/, or say why it is public", p)
		}
	}
}

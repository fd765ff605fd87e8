package repro

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMakeTestRunsGates checks that make test runs the gofmt and go mod
// tidy gates before the tests, so that .ci/run (which runs make test)
// enforces them.
func TestMakeTestRunsGates(t *testing.T) {
	lines := dryRun(t, "test")
	index := func(substr string) int {
		return slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, substr) })
	}
	fmtAt, tidyAt, testAt := index("/bin/gofmt\" -l ."), index("go mod tidy -diff"), index("go test -race")
	if fmtAt < 0 || tidyAt < 0 || testAt < 0 || fmtAt > testAt || tidyAt > testAt {
		t.Fatalf("make -n test: want the gofmt -l and go mod tidy -diff gates before go test:\n%s", strings.Join(lines, "\n"))
	}
}

// TestGatesFail runs the Makefile's gates on a small module of their own:
// each fails on what it guards against, names it, and passes once fixed.
func TestGatesFail(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		unavailable(t, "make is not installed")
	}
	dir := t.TempDir()
	write := func(rel, data string) {
		t.Helper()
		path := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Makefile", string(readFile(t, "Makefile")))
	write("go.mod", "module example.com/gate\n\ngo 1.26.0\n")
	write("a.go", "package gate\nfunc  F( ) {}\n")
	write("sub/b.go", "package sub\n\nfunc G() {}\n")
	// A go.sum line for a module nothing needs: go mod tidy removes it,
	// offline.
	write("go.sum", "example.com/unused v1.0.0/go.mod h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
	// Offline, with the local go: the module needs nothing else.
	env := makeEnv("GOPROXY=off", "GOTOOLCHAIN=local", "GOFLAGS=", "GOWORK=off")

	_, stderr, err := runMake(t, dir, env, "check-fmt")
	if err == nil || !strings.Contains(stderr, "not gofmt-formatted") || !strings.Contains(stderr, "  a.go\n") || strings.Contains(stderr, "b.go") {
		t.Errorf("make check-fmt with a.go unformatted: %v\n%s\nwant a failure naming a.go alone", err, stderr)
	}
	stdout, stderr, err := runMake(t, dir, env, "check-tidy")
	if err == nil || !strings.Contains(stdout, "-example.com/unused v1.0.0/go.mod") || !strings.Contains(stderr, "run go mod tidy") {
		t.Errorf("make check-tidy with a stray go.sum line: %v\nstdout:\n%s\nstderr:\n%s\nwant a failure showing the diff", err, stdout, stderr)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "go.sum")); !strings.Contains(string(data), "example.com/unused") {
		t.Errorf("make check-tidy changed go.sum: %q", data)
	}

	write("a.go", "package gate\n\nfunc F() {}\n")
	if err := os.Remove(filepath.Join(dir, "go.sum")); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runMake(t, dir, env, "check-fmt", "check-tidy"); err != nil {
		t.Errorf("make check-fmt check-tidy on a formatted, tidy module: %v\n%s", err, stderr)
	}
}

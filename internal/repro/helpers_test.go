package repro

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// modulePath is the module whose root the tests look for.
const modulePath = "github.com/enclave-signer/enclave-signer"

// The production command line of signerd in the image, as
// Dockerfile.enclave's CMD and docs/image.md give it.
var productionCmd = []string{"--listen", "vsock://any:5005", "--kms-proxy", "vsock://3:8000", "--attestation", "nsm"}

// repoRoot is the module root: two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatalf("repository root: %v", err)
	}
	if !bytes.HasPrefix(data, []byte("module "+modulePath+"\n")) {
		t.Fatalf("%s/go.mod is not module %s", root, modulePath)
	}
	return root
}

// unavailable ends a test that needs something this machine lacks: a skip
// on a developer's machine, a failure in CI (CI=true), where everything
// the tests need is installed by .ci/run.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, and %s", msg)
	}
	t.Skip(msg)
}

// makeVars are the Makefile's variables (and make's own) that the tests
// must not inherit from the environment: each run states what it sets.
var makeVars = []string{
	"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS",
	"GO", "BIN", "ENCLAVE_GOARCH", "IMAGE", "IMAGE_TAR", "BUILDAH", "BUILDAH_DRIVER", "BUILDAH_FLAGS",
	"NITRO_CLI", "EIF", "MEASUREMENTS", "ENCLAVE_NAME", "ENCLAVE_CPUS", "ENCLAVE_MEMORY", "ENCLAVE_CID",
	"SIGNER", "POLICY", "POLICY_MEASUREMENTS", "ENCLAVE_ROLE", "ENCRYPT_ROLE", "ADMIN_ROLE", "POLICY_FLAGS",
	"KMS_KEYS", "KEYRING_SIGNERS", "KEYRING_THRESHOLD", "REQUIRE_AUTH", "AUDIT_OVERFLOW",
}

// makeEnv is the environment without makeVars, plus extra (KEY=VALUE).
func makeEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(makeVars, k) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runMake runs make in dir with args; it returns stdout, stderr and the
// error (an *exec.ExitError when make failed).
func runMake(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", dir}, args...)...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// dryRun is `make -n TARGETS VARS...` in the repository: the commands make
// would run, one per line, continuation lines joined.
func dryRun(t *testing.T, args ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		unavailable(t, "make is not installed")
	}
	out, stderr, err := runMake(t, repoRoot(t), makeEnv(), append([]string{"-n"}, args...)...)
	if err != nil {
		t.Fatalf("make -n %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	out = strings.ReplaceAll(out, "\\\n", " ")
	var lines []string
	for l := range strings.SplitSeq(out, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// commandWith returns the one line of lines that starts with prefix.
func commandWith(t *testing.T, lines []string, prefix string) string {
	t.Helper()
	var found []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one command starting %q, got %d in:\n%s", prefix, len(found), strings.Join(lines, "\n"))
	}
	return found[0]
}

// unit is a systemd unit file: section → key → values in order.
type unit struct {
	path     string
	sections map[string]map[string][]string
}

// get returns the values of key in section.
func (u *unit) get(section, key string) []string { return u.sections[section][key] }

// one returns the single value of key in section, or fails.
func (u *unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u.get(section, key)
	if len(v) != 1 {
		t.Fatalf("%s: [%s] %s: want one value, got %d %q", u.path, section, key, len(v), v)
	}
	return v[0]
}

// parseUnit reads a systemd unit file as systemd.syntax(7) describes it:
// [Section] headers, Key=Value lines, # and ; comments, a trailing
// backslash continuing a line, and an empty value resetting a list.
func parseUnit(path string, data []byte) (*unit, error) {
	u := &unit{path: path, sections: map[string]map[string][]string{}}
	var section string
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(lines[i])
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return nil, fmt.Errorf("%s:%d: malformed section header %q", path, n, line)
			}
			section = line[1 : len(line)-1]
			if !slices.Contains([]string{"Unit", "Service", "Install"}, section) {
				return nil, fmt.Errorf("%s:%d: section [%s], want [Unit], [Service] or [Install]", path, n, section)
			}
			if u.sections[section] == nil {
				u.sections[section] = map[string][]string{}
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("%s:%d: want Key=Value, got %q", path, n, line)
		}
		if section == "" {
			return nil, fmt.Errorf("%s:%d: %s before any [Section]", path, n, key)
		}
		if value == "" {
			delete(u.sections[section], key)
			continue
		}
		u.sections[section][key] = append(u.sections[section][key], value)
	}
	return u, nil
}

// execArgs splits an Exec*= value into its arguments, after the prefixes
// systemd allows (-, @, :, +, !). Quoting is refused: these units don't need
// it, and a reader that half-handles it would hide mistakes.
func execArgs(value string) ([]string, error) {
	v := strings.TrimLeft(value, "-@:+!")
	if strings.ContainsAny(v, "\"'$%") {
		return nil, fmt.Errorf("%q: quotes, $ and %% specifiers are not read by this test: keep Exec lines plain", value)
	}
	args := strings.Fields(v)
	if len(args) == 0 || !filepath.IsAbs(args[0]) {
		return nil, fmt.Errorf("%q: want an absolute program path", value)
	}
	return args, nil
}

// instruction is one Dockerfile instruction.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

// parseDockerfile reads a Dockerfile's instructions (comments dropped,
// continuation lines joined).
func parseDockerfile(data []byte) ([]instruction, error) {
	var out []instruction
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || line[0] == '#' {
			continue
		}
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				next = ""
			}
			line = strings.TrimSuffix(line, "\\") + " " + next
		}
		cmd, args, _ := strings.Cut(line, " ")
		if cmd == "" || strings.ToUpper(cmd) != cmd {
			return nil, fmt.Errorf("line %d: want an upper-case instruction, got %q", n, cmd)
		}
		out = append(out, instruction{line: n, cmd: cmd, args: strings.TrimSpace(args)})
	}
	return out, nil
}

// jsonArgs reads the exec (JSON array) form of ENTRYPOINT or CMD.
func jsonArgs(in instruction) ([]string, error) {
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		return nil, fmt.Errorf("line %d: %s must be a JSON array (exec form): %v", in.line, in.cmd, err)
	}
	return v, nil
}

// flagValue returns the value after flag in args ("--flag VALUE").
func flagValue(args []string, flag string) (string, error) {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return "", fmt.Errorf("no %s VALUE in %q", flag, args)
	}
	if j := slices.Index(args[i+1:], flag); j >= 0 {
		return "", fmt.Errorf("%s given twice in %q", flag, args)
	}
	return args[i+1], nil
}

// mustFlag is flagValue or a test failure.
func mustFlag(t *testing.T, args []string, flag string) string {
	t.Helper()
	v, err := flagValue(args, flag)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readFile reads a file under the repository root.
func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

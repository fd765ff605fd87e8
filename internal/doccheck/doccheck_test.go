package doccheck

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/enclave-signer/enclave-signer/internal/policy"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

// root is the repository root, relative to this package's directory (where
// go test runs).
var root = filepath.Join("..", "..")

// keyPolicyDocs are the documents whose JSON blocks must all be annotated.
var keyPolicyDocs = []string{"docs/key-policy.md", "docs/key-policy.zh.md"}

// block is one fenced code block of a Markdown document.
type block struct {
	file  string // path relative to the repository root
	line  int    // 1-based line of the opening fence
	lang  string // the info string's first word, lowercase
	note  string // the doccheck annotation before the fence, "" if none
	lines []string
}

func (b block) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }
func (b block) body() string  { return strings.Join(b.lines, "\n") }

// document is a Markdown document split into its code blocks and its other
// lines (numbered, for code spans).
type document struct {
	file   string
	blocks []block
	prose  map[int]string // line number → text outside code blocks
}

var noteRE = regexp.MustCompile(`^<!--\s*doccheck:\s*(.*?)\s*-->$`)

// parseMarkdown splits text into code blocks and prose. A fence is a line
// whose text, indentation aside (blocks nest in list items), starts with
// ``` or ~~~; the block closes at a line of the same character repeated at
// least as often. The annotation of a block is a doccheck comment on the
// last non-blank line before its fence.
func parseMarkdown(file, text string) (*document, error) {
	d := &document{file: file, prose: map[int]string{}}
	lines := strings.Split(text, "\n")
	var cur *block
	var fence string
	lastNonBlank := ""
	for i, l := range lines {
		n := i + 1
		trimmed := strings.TrimSpace(l)
		if cur != nil {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				d.blocks = append(d.blocks, *cur)
				cur = nil
				lastNonBlank = ""
				continue
			}
			cur.lines = append(cur.lines, l)
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			c := trimmed[:1]
			k := len(trimmed) - len(strings.TrimLeft(trimmed, c))
			fence = strings.Repeat(c, k)
			info := strings.Fields(strings.TrimSpace(trimmed[k:]))
			cur = &block{file: file, line: n}
			if len(info) > 0 {
				cur.lang = strings.ToLower(info[0])
			}
			if m := noteRE.FindStringSubmatch(lastNonBlank); m != nil {
				cur.note = m[1]
			}
			continue
		}
		d.prose[n] = l
		if trimmed != "" {
			lastNonBlank = trimmed
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: code block never closed", file, cur.line)
	}
	return d, nil
}

func readDoc(t *testing.T, file string) *document {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	d, err := parseMarkdown(file, string(b))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// allDocs lists README.md and every Markdown file under docs/.
func allDocs(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !de.IsDir() && strings.HasSuffix(p, ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list docs: %v", err)
	}
	sort.Strings(files)
	return files
}

// annotation is a parsed doccheck comment.
type annotation struct {
	kind   string
	expect []string
}

var kinds = []string{"production-policy", "key-policy", "statement", "iam-policy", "measurements", "json"}

func parseAnnotation(s string) (annotation, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return annotation{}, fmt.Errorf("empty doccheck annotation: want one of %s", strings.Join(kinds, ", "))
	}
	a := annotation{kind: f[0]}
	if !slices.Contains(kinds, a.kind) {
		return a, fmt.Errorf("doccheck kind %q: want one of %s", a.kind, strings.Join(kinds, ", "))
	}
	for _, opt := range f[1:] {
		v, ok := strings.CutPrefix(opt, "expect=")
		if !ok || v == "" {
			return a, fmt.Errorf("doccheck option %q: want expect=RULE[,RULE]", opt)
		}
		a.expect = append(a.expect, strings.Split(v, ",")...)
	}
	return a, nil
}

// checkJSONBlock checks one annotated JSON block; it returns what is wrong.
func checkJSONBlock(b block) []string {
	if b.note == "" {
		return []string{"JSON block without a <!-- doccheck: KIND --> annotation: say what it is so it can be checked"}
	}
	a, err := parseAnnotation(b.note)
	if err != nil {
		return []string{err.Error()}
	}
	body := []byte(b.body())
	if !json.Valid(body) {
		var v any
		return []string{fmt.Sprintf("not valid JSON: %v", json.Unmarshal(body, &v))}
	}
	if len(a.expect) > 0 && a.kind != "key-policy" && a.kind != "statement" {
		return []string{fmt.Sprintf("expect= applies to key-policy and statement blocks, not %s", a.kind)}
	}
	var p *policy.Policy
	switch a.kind {
	case "json":
		return nil
	case "measurements":
		if _, err := policy.ParseMeasurements(b.where(), body); err != nil {
			return []string{err.Error()}
		}
		return nil
	case "iam-policy":
		return checkIAMPolicy(body)
	case "statement":
		wrapped := `{"Version": "2012-10-17", "Statement": [` + string(body) + `]}`
		p, err = policy.Parse([]byte(wrapped))
	default:
		p, err = policy.Parse(body)
	}
	if err != nil {
		return []string{fmt.Sprintf("policy.Parse refuses it: %v", err)}
	}
	production := a.kind == "production-policy"
	findings := policy.Check(p, production)
	var problems []string
	for _, rule := range a.expect {
		if !slices.ContainsFunc(findings, func(f policy.Finding) bool { return f.Rule == rule }) {
			problems = append(problems, fmt.Sprintf("expected a %q finding from policy.Check, got none", rule))
		}
	}
	for _, f := range findings {
		if f.Severity == policy.SeverityError && !slices.Contains(a.expect, f.Rule) {
			problems = append(problems, fmt.Sprintf("policy.Check(production=%v) rule %s: %s", production, f.Rule, f))
		}
	}
	return problems
}

// checkIAMPolicy checks the shape of an identity-based policy: Version,
// Statement list, each with Effect and Action and no Principal.
func checkIAMPolicy(body []byte) []string {
	var doc struct {
		Version   string
		Statement []map[string]json.RawMessage
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return []string{fmt.Sprintf("IAM policy: %v (want Version and a Statement list)", err)}
	}
	var problems []string
	if doc.Version != policy.Version2012 {
		problems = append(problems, fmt.Sprintf("IAM policy Version %q, want %q", doc.Version, policy.Version2012))
	}
	if len(doc.Statement) == 0 {
		problems = append(problems, "IAM policy has no statements")
	}
	for i, s := range doc.Statement {
		for _, k := range []string{"Effect", "Action", "Resource"} {
			if _, ok := s[k]; !ok {
				problems = append(problems, fmt.Sprintf("IAM policy Statement[%d] has no %s", i, k))
			}
		}
		if _, ok := s["Principal"]; ok {
			problems = append(problems, fmt.Sprintf("IAM policy Statement[%d] has a Principal: identity-based policies have none (is it a key policy?)", i))
		}
		var cond map[string]map[string]json.RawMessage
		if c, ok := s["Condition"]; ok {
			if err := json.Unmarshal(c, &cond); err != nil {
				problems = append(problems, fmt.Sprintf("IAM policy Statement[%d] Condition: %v", i, err))
			}
		}
		for op, keys := range cond {
			for key, raw := range keys {
				if !strings.HasPrefix(strings.ToLower(key), "kms:recipientattestation:") {
					continue
				}
				var vals []string
				if err := json.Unmarshal(raw, &vals); err != nil {
					var one string
					if err := json.Unmarshal(raw, &one); err != nil {
						problems = append(problems, fmt.Sprintf("IAM policy Statement[%d] %s %s: want a string or a list of strings", i, op, key))
						continue
					}
					vals = []string{one}
				}
				for _, v := range vals {
					if _, err := pcr.ParseHex(v); err != nil {
						problems = append(problems, fmt.Sprintf("IAM policy Statement[%d] %s %s %q: %v", i, op, key, v, err))
					}
				}
			}
		}
	}
	return problems
}

func TestKeyPolicyJSONBlocks(t *testing.T) {
	for _, file := range keyPolicyDocs {
		t.Run(file, func(t *testing.T) {
			d := readDoc(t, file)
			counts := map[string]int{}
			for _, b := range d.blocks {
				if b.lang != "json" {
					if b.note != "" {
						t.Errorf("%s: doccheck annotation on a %q block; only json blocks are annotated", b.where(), b.lang)
					}
					continue
				}
				for _, p := range checkJSONBlock(b) {
					t.Errorf("%s: %s", b.where(), p)
				}
				if a, err := parseAnnotation(b.note); err == nil {
					counts[a.kind]++
				}
			}
			// The document must keep showing what the guide showed.
			for kind, min := range map[string]int{"production-policy": 1, "statement": 4, "iam-policy": 1, "measurements": 1, "key-policy": 1} {
				if counts[kind] < min {
					t.Errorf("%s has %d %s blocks, want at least %d", file, counts[kind], kind, min)
				}
			}
		})
	}
}

// TestCheckJSONBlockCatchesMistakes makes sure the block checker fails for
// the mistakes it exists to catch.
func TestCheckJSONBlockCatchesMistakes(t *testing.T) {
	prod := `{"Version": "2012-10-17", "Statement": [
	  {"Sid": "A", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/r"}, "Action": "kms:Decrypt", "Resource": "*",
	   "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": "` + strings.Repeat("0", 96) + `"}}},
	  {"Sid": "B", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/admin"}, "Action": "kms:PutKeyPolicy", "Resource": "*"}]}`
	stmt := `{"Sid": "S", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/r"}, "Action": "kms:Decrypt", "Resource": "*"}`
	tests := []struct {
		name, note, body, want string
	}{
		{"no annotation", "", `{}`, "without a <!-- doccheck"},
		{"unknown kind", "policy", `{}`, `doccheck kind "policy"`},
		{"bad option", "statement expects=x", stmt, `doccheck option "expects=x"`},
		{"invalid json", "json", `{"a": }`, "not valid JSON"},
		{"debug policy labelled production", "production-policy", prod, "zero-pcr"},
		{"unconditional decrypt", "statement", stmt, "decrypt-without-attestation"},
		{"expected finding missing", "statement expect=pcr-value", stmt, `expected a "pcr-value" finding`},
		{"key policy that does not parse", "key-policy", `{"Statement": [{"Effect": "Allow"}]}`, "policy.Parse refuses it"},
		{"iam policy with principal", "iam-policy", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}]}`, "has a Principal"},
		{"iam policy with a 0x PCR", "iam-policy", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*", "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": "0x1de4"}}}]}`, "hex characters, want 96"},
		{"measurements without PCR0", "measurements", `{"Measurements": {"HashAlgorithm": "Sha384 { ... }"}}`, "PCR0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkJSONBlock(block{file: "x.md", line: 1, lang: "json", note: tt.note, lines: []string{tt.body}})
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("checkJSONBlock = %q, want a problem containing %q", got, tt.want)
			}
		})
	}
	// And the examples that must pass do.
	ok := []struct{ note, body string }{
		{"statement expect=decrypt-without-attestation", stmt},
		{"json", `[1, 2]`},
		{"iam-policy", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}`},
	}
	for _, c := range ok {
		if got := checkJSONBlock(block{file: "x.md", lang: "json", note: c.note, lines: []string{c.body}}); len(got) > 0 {
			t.Errorf("checkJSONBlock(%s) = %q, want no problems", c.note, got)
		}
	}
}

// comparable strips what a translation may change in a code block: shell
// comment lines and trailing "  # …" comments of sh blocks.
func comparable(b block) string {
	if b.lang != "sh" && b.lang != "bash" && b.lang != "console" {
		return b.body()
	}
	var out []string
	for _, l := range b.lines {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if i := strings.Index(l, "  # "); i >= 0 {
			l = strings.TrimRight(l[:i], " ")
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// TestTranslationHasTheSameExamples: the Chinese document carries the same
// code blocks, in the same order, with the same annotations, as the English
// one; only comments in shell blocks may be translated.
func TestTranslationHasTheSameExamples(t *testing.T) {
	en, zh := readDoc(t, keyPolicyDocs[0]), readDoc(t, keyPolicyDocs[1])
	if len(en.blocks) != len(zh.blocks) {
		t.Errorf("%s has %d code blocks, %s has %d: the translation must carry the same examples", en.file, len(en.blocks), zh.file, len(zh.blocks))
	}
	for i := range min(len(en.blocks), len(zh.blocks)) {
		e, z := en.blocks[i], zh.blocks[i]
		if e.lang != z.lang || e.note != z.note {
			t.Errorf("code block %d: %s is %q %q, %s is %q %q", i+1, e.where(), e.lang, e.note, z.where(), z.lang, z.note)
			continue
		}
		if comparable(e) != comparable(z) {
			t.Errorf("code block %d differs: %s and %s (only shell comments may be translated)", i+1, e.where(), z.where())
		}
	}
	// Both must have the same sections, by count (headings are translated).
	if a, b := countHeadings(en), countHeadings(zh); a != b {
		t.Errorf("%s has %v headings (by level), %s has %v", en.file, a, zh.file, b)
	}
}

func countHeadings(d *document) [4]int {
	var c [4]int
	for _, l := range d.prose {
		for lvl := 1; lvl <= 3; lvl++ {
			if strings.HasPrefix(l, strings.Repeat("#", lvl)+" ") {
				c[lvl]++
			}
		}
	}
	return c
}

// pcrExample is one "$ command" line of a shell block and the output shown
// after it.
type pcrExample struct {
	where   string
	kind    string // role-arn, instance-id, one-liner, bare-sha384sum
	command string // without "$ "
	arg     string // the ARN or instance id
	output  string
}

var (
	pcrCmdRE     = regexp.MustCompile(`^signer pcr (role-arn|instance-id) (\S+)$`)
	oneLinerRE   = regexp.MustCompile(`^\{ head -c 48 /dev/zero; printf %s "([^"$\\]+)"; \} \| sha384sum$`)
	bareSHA384RE = regexp.MustCompile(`^echo -n "([^"$\\]+)" \| sha384sum$`)
	sumOutputRE  = regexp.MustCompile(`^([0-9a-f]{96})  -$`)
	hexOutputRE  = regexp.MustCompile(`^[0-9a-f]{96}$`)
)

// pcrExamples finds the PCR examples of a document's shell blocks.
func pcrExamples(d *document) (ex []pcrExample, problems []string) {
	for _, b := range d.blocks {
		if b.lang != "sh" && b.lang != "console" && b.lang != "bash" {
			continue
		}
		for i, l := range b.lines {
			cmd, ok := strings.CutPrefix(strings.TrimSpace(l), "$ ")
			if !ok {
				continue
			}
			where := fmt.Sprintf("%s:%d", b.file, b.line+1+i)
			out := ""
			if i+1 < len(b.lines) {
				out = strings.TrimSpace(b.lines[i+1])
			}
			var e pcrExample
			switch m := pcrCmdRE.FindStringSubmatch(cmd); {
			case m != nil:
				e = pcrExample{kind: m[1], arg: m[2]}
				if !hexOutputRE.MatchString(out) {
					problems = append(problems, fmt.Sprintf("%s: %q is not followed by its output (96 lowercase hex digits), got %q", where, cmd, out))
					continue
				}
				e.output = out
			default:
				if m := oneLinerRE.FindStringSubmatch(cmd); m != nil {
					e = pcrExample{kind: "one-liner", arg: m[1]}
				} else if m := bareSHA384RE.FindStringSubmatch(cmd); m != nil {
					e = pcrExample{kind: "bare-sha384sum", arg: m[1]}
				} else {
					if strings.Contains(cmd, "sha384sum") || strings.HasPrefix(cmd, "signer pcr") {
						problems = append(problems, fmt.Sprintf("%s: %q looks like a PCR example but is not in a form this test checks", where, cmd))
					}
					continue
				}
				sm := sumOutputRE.FindStringSubmatch(out)
				if sm == nil {
					problems = append(problems, fmt.Sprintf("%s: %q is not followed by sha384sum's output (96 hex digits, two spaces, -), got %q", where, cmd, out))
					continue
				}
				e.output = sm[1]
			}
			e.where, e.command = where, cmd
			ex = append(ex, e)
		}
	}
	return ex, problems
}

// want returns the value the example's output must show.
func (e pcrExample) want() string {
	switch e.kind {
	case "role-arn", "one-liner":
		return hex.EncodeToString(pcr.RoleARN(e.arg))
	case "instance-id":
		return hex.EncodeToString(pcr.InstanceID(e.arg))
	default: // bare-sha384sum: what the guide's wrong recipe prints
		s := sha512.Sum384([]byte(e.arg))
		return hex.EncodeToString(s[:])
	}
}

func TestPCRExamples(t *testing.T) {
	_, bashErr := exec.LookPath("bash")
	_, sumErr := exec.LookPath("sha384sum")
	canRun := bashErr == nil && sumErr == nil
	if !canRun {
		t.Log("bash or sha384sum not installed: shell examples are checked by computation only")
	}
	for _, file := range allDocs(t) {
		d := readDoc(t, file)
		ex, problems := pcrExamples(d)
		for _, p := range problems {
			t.Error(p)
		}
		kinds := map[string]int{}
		for _, e := range ex {
			kinds[e.kind]++
			if e.output != e.want() {
				t.Errorf("%s: %q shows %s, but the value is %s", e.where, e.command, e.output, e.want())
			}
			switch e.kind {
			case "role-arn", "one-liner":
				if err := pcr.ValidateRoleARN(e.arg); err != nil {
					t.Errorf("%s: %v", e.where, err)
				}
			case "instance-id":
				if err := pcr.ValidateInstanceID(e.arg); err != nil {
					t.Errorf("%s: %v", e.where, err)
				}
			case "bare-sha384sum":
				if e.output == hex.EncodeToString(pcr.RoleARN(e.arg)) {
					t.Errorf("%s: the bare sha384sum example shows the real PCR3", e.where)
				}
			}
			if canRun && (e.kind == "one-liner" || e.kind == "bare-sha384sum") {
				cmd := exec.Command("bash", "-c", e.command)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
				out, err := cmd.Output()
				if err != nil {
					t.Errorf("%s: running %q: %v", e.where, e.command, err)
				} else if got := strings.TrimSpace(string(out)); got != e.output+"  -" {
					t.Errorf("%s: %q prints %q, the document shows %q", e.where, e.command, got, e.output+"  -")
				}
			}
		}
		if slices.Contains(keyPolicyDocs, file) {
			for _, k := range []string{"role-arn", "instance-id", "one-liner", "bare-sha384sum"} {
				if kinds[k] == 0 {
					t.Errorf("%s has no checked %s example", file, k)
				}
			}
		}
	}
}

func TestPCRExamplesCatchMistakes(t *testing.T) {
	arn := "arn:aws:iam::111122223333:role/R"
	good := hex.EncodeToString(pcr.RoleARN(arn))
	bare := sha512.Sum384([]byte(arn))
	tests := []struct {
		name  string
		lines []string
		bad   bool // the example's output is wrong
		probl string
	}{
		{"right", []string{"$ signer pcr role-arn " + arn, good}, false, ""},
		{"bare sha384sum passed off as PCR3", []string{"$ signer pcr role-arn " + arn, hex.EncodeToString(bare[:])}, true, ""},
		{"one-liner with the wrong value", []string{`$ { head -c 48 /dev/zero; printf %s "` + arn + `"; } | sha384sum`, hex.EncodeToString(bare[:]) + "  -"}, true, ""},
		{"missing output", []string{"$ signer pcr instance-id i-1234567890abcdef0", ""}, false, "not followed by its output"},
		{"unchecked form", []string{`$ echo "` + arn + `" | sha384sum`, good + "  -"}, false, "not in a form this test checks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &document{blocks: []block{{file: "x.md", line: 1, lang: "sh", lines: tt.lines}}}
			ex, problems := pcrExamples(d)
			if tt.probl != "" {
				if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.probl) }) {
					t.Errorf("problems = %q, want one containing %q", problems, tt.probl)
				}
				return
			}
			if len(ex) != 1 {
				t.Fatalf("found %d examples (problems %q), want 1", len(ex), problems)
			}
			if wrong := ex[0].output != ex[0].want(); wrong != tt.bad {
				t.Errorf("output %s, want %s: wrong = %v, want %v", ex[0].output, ex[0].want(), wrong, tt.bad)
			}
		})
	}
}

// knownCommands returns the real commands: "seal", "policy render", …
// parents maps a command that dispatches subcommands to them.
func knownCommands(t *testing.T) (known map[string]bool, parents map[string][]string) {
	t.Helper()
	known, parents = map[string]bool{}, map[string][]string{}
	fset := token.NewFileSet()
	main, err := parser.ParseFile(fset, filepath.Join(root, "host", "main.go"), nil, 0)
	if err != nil {
		t.Fatalf("parse host/main.go: %v", err)
	}
	for _, n := range commandMapKeys(main) {
		known[n] = true
	}
	if len(known) == 0 {
		t.Fatal("host/main.go: found no `var commands = map[string]command{…}` entries; has the command table moved?")
	}
	files, err := filepath.Glob(filepath.Join(root, "host", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		for parent, subs := range subcommandCalls(af) {
			for _, s := range subs {
				known[parent+" "+s] = true
				parents[parent] = append(parents[parent], s)
			}
		}
	}
	return known, parents
}

// commandMapKeys returns the string keys of `var commands = map…{…}`.
func commandMapKeys(f *ast.File) []string {
	var keys []string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if name.Name != "commands" || i >= len(vs.Values) {
					continue
				}
				if cl, ok := vs.Values[i].(*ast.CompositeLit); ok {
					keys = append(keys, stringKeys(cl)...)
				}
			}
		}
	}
	return keys
}

// subcommandCalls finds subcommand(e, "parent", map[string]…{"sub": …})
// calls and returns parent → subs.
func subcommandCalls(f *ast.File) map[string][]string {
	out := map[string][]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 3 {
			return true
		}
		if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "subcommand" {
			return true
		}
		lit, ok := call.Args[1].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		parent, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		if cl, ok := call.Args[2].(*ast.CompositeLit); ok {
			out[parent] = append(out[parent], stringKeys(cl)...)
		}
		return true
	})
	return out
}

func stringKeys(cl *ast.CompositeLit) []string {
	var keys []string
	for _, elt := range cl.Elts {
		kv, ok := elt.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if lit, ok := kv.Key.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				keys = append(keys, s)
			}
		}
	}
	return keys
}

// mention is one `signer COMMAND [WORD]` found in a document.
type mention struct {
	where    string
	text     string
	cmd, sub string
}

var (
	spanRE    = regexp.MustCompile("`([^`\n]+)`")
	spanCmdRE = regexp.MustCompile(`^(?:\$ )?(?:sudo )?(?:\S*/)?signer\s+(\S+)(?:\s+(\S+))?`)
	lineCmdRE = regexp.MustCompile(`(?:^|[\s;|&(=])(?:\$ )?(?:\S*/)?signer[ \t]+(\S+)(?:[ \t]+(\S+))?`)
	wordRE    = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// signerMentions finds `signer …` in code spans of prose lines and in code
// blocks (outside shell comments; json blocks are data).
func signerMentions(d *document) []mention {
	var out []mention
	add := func(where, text, cmd, sub string) {
		out = append(out, mention{where: where, text: strings.TrimSpace(text), cmd: cmd, sub: sub})
	}
	lineNos := make([]int, 0, len(d.prose))
	for n := range d.prose {
		lineNos = append(lineNos, n)
	}
	sort.Ints(lineNos)
	for _, n := range lineNos {
		for _, m := range spanRE.FindAllStringSubmatch(d.prose[n], -1) {
			if c := spanCmdRE.FindStringSubmatch(m[1]); c != nil {
				add(fmt.Sprintf("%s:%d", d.file, n), m[1], c[1], c[2])
			}
		}
	}
	for _, b := range d.blocks {
		if b.lang == "json" {
			continue
		}
		for i, l := range b.lines {
			if strings.HasPrefix(strings.TrimSpace(l), "#") {
				continue
			}
			if j := strings.Index(l, " #"); j >= 0 {
				l = l[:j]
			}
			for _, c := range lineCmdRE.FindAllStringSubmatch(l, -1) {
				add(fmt.Sprintf("%s:%d", b.file, b.line+1+i), c[0], c[1], c[2])
			}
		}
	}
	return out
}

// unknownMention says what is wrong with m, or "" when it names a real
// command. Words that are not lowercase command names (flags, placeholders
// such as COMMAND, "<command>") are not judged.
func unknownMention(m mention, known map[string]bool, parents map[string][]string) string {
	cmd := strings.TrimRight(m.cmd, ".,;:)'\"")
	if !wordRE.MatchString(cmd) {
		return ""
	}
	if !known[cmd] {
		return fmt.Sprintf("%q: signer has no command %q", m.text, cmd)
	}
	subs, ok := parents[cmd]
	if !ok || m.sub == "" {
		return ""
	}
	for _, s := range strings.FieldsFunc(m.sub, func(r rune) bool { return r == '|' || r == ',' || r == '/' }) {
		s = strings.TrimRight(s, ".,;:)'\"")
		if wordRE.MatchString(s) && !known[cmd+" "+s] {
			return fmt.Sprintf("%q: signer %s has no subcommand %q (it has %s)", m.text, cmd, s, strings.Join(subs, ", "))
		}
	}
	return ""
}

func TestSignerCommandsInDocsExist(t *testing.T) {
	known, parents := knownCommands(t)
	total := 0
	for _, file := range allDocs(t) {
		for _, m := range signerMentions(readDoc(t, file)) {
			total++
			if msg := unknownMention(m, known, parents); msg != "" {
				t.Errorf("%s: %s", m.where, msg)
			}
		}
	}
	// The documents mention dozens of commands; finding few means the
	// extractor broke, not that the docs are clean.
	if total < 50 {
		t.Errorf("found only %d signer command mentions in the docs; the extractor is broken", total)
	}
}

func TestSignerMentionsExtractor(t *testing.T) {
	known := map[string]bool{"seal": true, "policy": true, "policy render": true, "policy check": true, "pcr": true, "pcr role-arn": true, "pcr instance-id": true}
	parents := map[string][]string{"policy": {"render", "check"}, "pcr": {"role-arn", "instance-id"}}
	text := strings.Join([]string{
		"Run `signer seal --key-id K` then `signer policy frobnicate`.",
		"`signer` alone, `signer COMMAND`, and `signer pcr role-arn|instance-id` are fine; `signer unseal` is not.",
		"```sh",
		"$ signer policy check --production p.json",
		"ExecStart=/usr/local/bin/signer reseal --config x",
		"# signer nonsense in a comment",
		"signer seal --out x.enc  # then signer bogus",
		"```",
		"```json",
		`{"note": "signer nonsense"}`,
		"```",
	}, "\n")
	d, err := parseMarkdown("x.md", text)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, m := range signerMentions(d) {
		if msg := unknownMention(m, known, parents); msg != "" {
			bad = append(bad, msg)
		}
	}
	want := []string{`signer policy has no subcommand "frobnicate"`, `signer has no command "unseal"`, `signer has no command "reseal"`}
	if len(bad) != len(want) {
		t.Fatalf("flagged %q, want %d problems: %q", bad, len(want), want)
	}
	for i := range want {
		if !strings.Contains(bad[i], want[i]) {
			t.Errorf("problem %d = %q, want it to contain %q", i, bad[i], want[i])
		}
	}
}

func TestParseMarkdown(t *testing.T) {
	text := "intro\n<!-- doccheck: statement expect=zero-pcr -->\n\n```json\n{}\n```\n  ~~~~sh\n  ```not a fence end\n  ~~~~\n"
	d, err := parseMarkdown("x.md", text)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.blocks) != 2 {
		t.Fatalf("got %d blocks, want 2", len(d.blocks))
	}
	if b := d.blocks[0]; b.lang != "json" || b.note != "statement expect=zero-pcr" || b.line != 4 || b.body() != "{}" {
		t.Errorf("block 1 = %+v", b)
	}
	if b := d.blocks[1]; b.lang != "sh" || b.note != "" || len(b.lines) != 1 {
		t.Errorf("block 2 = %+v", b)
	}
	if _, err := parseMarkdown("y.md", "```sh\nunclosed\n"); err == nil || !strings.Contains(err.Error(), "y.md:1") {
		t.Errorf("unclosed block: err = %v, want one naming y.md:1", err)
	}
}

// TestIndexListsEveryDocument: docs/README.md links every document in docs/.
func TestIndexListsEveryDocument(t *testing.T) {
	idx, err := os.ReadFile(filepath.Join(root, "docs", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range allDocs(t) {
		rel, ok := strings.CutPrefix(file, "docs/")
		if !ok || rel == "README.md" {
			continue
		}
		links := []string{"(" + rel + ")", "(" + rel + "#"}
		if dir := path.Dir(rel); dir != "." {
			links = append(links, "("+dir+"/)") // a link to the directory covers its files
		}
		if !slices.ContainsFunc(links, func(l string) bool { return bytes.Contains(idx, []byte(l)) }) {
			t.Errorf("docs/README.md does not link %s", rel)
		}
	}
}

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// slug turns a heading into its anchor as GitHub does: lowercase; letters,
// digits, '-' and '_' kept; spaces become '-'; everything else dropped.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r) || unicode.IsNumber(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// anchors returns the anchors of a document's headings (duplicates get -1,
// -2, … as on GitHub).
func anchors(d *document) map[string]bool {
	out := map[string]bool{}
	nums := make([]int, 0, len(d.prose))
	for n := range d.prose {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	for _, n := range nums {
		l := d.prose[n]
		h := strings.TrimLeft(l, "#")
		if h == l || !strings.HasPrefix(h, " ") || len(l)-len(h) > 6 {
			continue
		}
		a := slug(strings.TrimSpace(h))
		for i := 1; out[a]; i++ {
			a = fmt.Sprintf("%s-%d", slug(strings.TrimSpace(h)), i)
		}
		out[a] = true
	}
	return out
}

// TestLocalLinks: every relative link in docs/ and README.md points to a
// file that exists, and every #anchor to a heading of its document.
func TestLocalLinks(t *testing.T) {
	docs := map[string]*document{}
	load := func(file string) *document {
		if d, ok := docs[file]; ok {
			return d
		}
		d := readDoc(t, file)
		docs[file] = d
		return d
	}
	checked := 0
	for _, file := range allDocs(t) {
		d := load(file)
		for n, l := range d.prose {
			for _, m := range linkRE.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				where := fmt.Sprintf("%s:%d", file, n)
				p, anchor, _ := strings.Cut(target, "#")
				dest := file
				if p != "" {
					dest = path.Clean(path.Join(path.Dir(file), p))
					if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(dest))); err != nil {
						t.Errorf("%s: link to %s: %s does not exist", where, target, dest)
						continue
					}
				}
				checked++
				if anchor == "" || !strings.HasSuffix(dest, ".md") {
					continue
				}
				if !anchors(load(dest))[anchor] {
					t.Errorf("%s: link to %s: %s has no heading with anchor #%s", where, target, dest, anchor)
				}
			}
		}
	}
	if checked < 30 {
		t.Errorf("checked only %d local links; the link extractor is broken", checked)
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Step 5: the instance role's IAM policy":       "step-5-the-instance-roles-iam-policy",
		"Step 4: seal the age identity: `signer seal`": "step-4-seal-the-age-identity-signer-seal",
		"第五步：EC2 实例角色的 IAM Policy":                     "第五步ec2-实例角色的-iam-policy",
		"调试模式 (Debug Mode)":                            "调试模式-debug-mode",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

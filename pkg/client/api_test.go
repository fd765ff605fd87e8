package client_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/enclave-signer/enclave-signer/"

// TestDocMentionsNoOtherPackage: go doc -all of this package names no
// other package of the module, so an application needs only this one.
func TestDocMentionsNoOtherPackage(t *testing.T) {
	out, err := exec.Command("go", "doc", "-all", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go doc -all: %v\n%s", err, out)
	}
	doc := strings.Replace(string(out), `// import "`+module+`pkg/client"`, "", 1)
	if strings.Contains(doc, module) {
		t.Errorf("go doc -all names a package of this module:\n%s", doc)
	}
	// The names the package's own files import the module's packages as.
	for _, name := range moduleImports(t) {
		if m := regexp.MustCompile(`\b` + name + `\.[A-Z]`).FindString(doc); m != "" {
			t.Errorf("go doc -all mentions %q (package %s of this module)", m, name)
		}
	}
}

// TestExportedAPIIsSelfContained: no exported declaration (type, field,
// function, method, constant, variable) uses a type or value of another
// package of this module, which go doc would show or an application
// would have to import.
func TestExportedAPIIsSelfContained(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		internal := map[string]string{}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if strings.HasPrefix(p, module) {
				n := p[strings.LastIndex(p, "/")+1:]
				if im.Name != nil {
					n = im.Name.Name
				}
				internal[n] = p
			}
		}
		use := func(what string, n ast.Node) {
			checked++
			ast.Inspect(n, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && internal[id.Name] != "" {
						t.Errorf("%s: exported %s uses %s.%s (%s)", fset.Position(sel.Pos()), what, id.Name, sel.Sel.Name, internal[id.Name])
					}
				}
				return true
			})
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() || (d.Recv != nil && !exportedRecv(d.Recv)) {
					continue
				}
				use("func "+d.Name.Name, d.Type)
				if d.Recv != nil {
					use("method "+d.Name.Name, d.Recv)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							useExportedType(s.Name.Name, s.Type, use)
						}
					case *ast.ValueSpec:
						for i, n := range s.Names {
							if !n.IsExported() {
								continue
							}
							if s.Type != nil {
								use(n.Name, s.Type)
							}
							if i < len(s.Values) {
								use(n.Name, s.Values[i])
							}
						}
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked %d exported declarations, want the package's dozens: has the package moved?", checked)
	}
}

// useExportedType checks a type's exported fields (or the whole type when
// it is not a struct).
func useExportedType(name string, typ ast.Expr, use func(string, ast.Node)) {
	st, ok := typ.(*ast.StructType)
	if !ok {
		use("type "+name, typ)
		return
	}
	for _, fld := range st.Fields.List {
		for _, n := range fld.Names {
			if n.IsExported() {
				use("field "+name+"."+n.Name, fld.Type)
			}
		}
		if len(fld.Names) == 0 { // embedded: promoted, so exported API
			use("embedded field of "+name, fld.Type)
		}
	}
}

func exportedRecv(recv *ast.FieldList) bool {
	t := recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	id, ok := t.(*ast.Ident)
	return ok && id.IsExported()
}

// moduleImports returns the names under which the package's files import
// the module's packages.
func moduleImports(t *testing.T) []string {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var names []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, module) {
			names = append(names, p[strings.LastIndex(p, "/")+1:])
		}
	}
	if len(names) == 0 {
		t.Fatal("the package imports none of the module's packages: the check would check nothing")
	}
	return names
}

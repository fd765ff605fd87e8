//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// docs/openapi.yaml is the shim's HTTP contract in machine-readable form.
// This file loads it with kin-openapi and checks requests and answers
// against it; e2e_openapi_test.go sends them to a running shim.

var openapiFile = filepath.Join("..", "docs", "openapi.yaml")

// The responses under components that answer requests outside the
// document's operations (its info.description says so).
var openapiUnrouted = map[int]string{403: "ForbiddenOrigin", 404: "NotFound", 405: "MethodNotAllowed"}

// loadOpenAPI loads and validates docs/openapi.yaml.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openapiFile)
	if err != nil {
		t.Fatalf("loading %s: %v", openapiFile, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", openapiFile, err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Fatalf("%s: openapi %q, want 3.0.3", openapiFile, doc.OpenAPI)
	}
	return doc
}

// openapiErrorCodes returns the enum of components.schemas.ErrorCode: every
// error code the document promises.
func openapiErrorCodes(t *testing.T, doc *openapi3.T) []string {
	t.Helper()
	s := doc.Components.Schemas["ErrorCode"]
	if s == nil || s.Value == nil || len(s.Value.Enum) == 0 {
		t.Fatal("docs/openapi.yaml has no components.schemas.ErrorCode enum")
	}
	var codes []string
	for _, v := range s.Value.Enum {
		c, ok := v.(string)
		if !ok {
			t.Fatalf("ErrorCode enum value %v is not a string", v)
		}
		codes = append(codes, c)
	}
	return codes
}

// openapiSchemaCodes returns the error codes an answer of schema s may carry:
// the enum of error.code, intersected across allOf; nil if s is not an
// error answer.
func openapiSchemaCodes(s *openapi3.Schema) []string {
	if s == nil {
		return nil
	}
	var out []string
	restricted := false
	for _, m := range s.AllOf {
		if c := openapiSchemaCodes(m.Value); c != nil {
			if !restricted {
				out, restricted = c, true
				continue
			}
			out = slices.DeleteFunc(out, func(x string) bool { return !slices.Contains(c, x) })
		}
	}
	if e := s.Properties["error"]; e != nil && e.Value != nil {
		if code := e.Value.Properties["code"]; code != nil && code.Value != nil && len(code.Value.Enum) > 0 {
			var c []string
			for _, v := range code.Value.Enum {
				c = append(c, v.(string))
			}
			if !restricted {
				return c
			}
			out = slices.DeleteFunc(out, func(x string) bool { return !slices.Contains(c, x) })
		}
	}
	if !restricted {
		return nil
	}
	return out
}

// openapiResponseCodes maps each error code to the HTTP statuses the document
// answers it with, over every operation and the unrouted responses.
func openapiResponseCodes(doc *openapi3.T) map[string][]int {
	out := map[string][]int{}
	add := func(status int, r *openapi3.ResponseRef) {
		if r == nil || r.Value == nil {
			return
		}
		for _, mt := range r.Value.Content {
			if mt.Schema == nil {
				continue
			}
			for _, c := range openapiSchemaCodes(mt.Schema.Value) {
				if !slices.Contains(out[c], status) {
					out[c] = append(out[c], status)
				}
			}
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for s, r := range op.Responses.Map() {
				status, _ := strconv.Atoi(s)
				add(status, r)
			}
		}
	}
	for status, name := range openapiUnrouted {
		add(status, doc.Components.Responses[name])
	}
	return out
}

// shimDocErrorTable reads docs/shim.md's error table: code → status.
func shimDocErrorTable(t *testing.T) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "shim.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n### Errors\n")
	if !ok {
		t.Fatal("docs/shim.md has no ### Errors section")
	}
	section, _, _ = strings.Cut(section, "\n#")
	out := map[string]int{}
	for _, m := range regexp.MustCompile("(?m)^\\| ([0-9]{3}) \\| `([a-z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		out[m[2]], _ = strconv.Atoi(m[1])
	}
	if len(out) < 10 {
		t.Fatalf("docs/shim.md's error table: only %d rows read", len(out))
	}
	return out
}

// TestOpenAPIDocument: docs/openapi.yaml is a valid OpenAPI 3.0.3
// document; its ErrorCode enum is docs/shim.md's error table, each code
// answered with the status the table gives it and with no other; every
// code of ErrorCode is some answer's; every operation refuses requests a
// web page could send (403 forbidden_origin).
func TestOpenAPIDocument(t *testing.T) {
	doc := loadOpenAPI(t)
	codes := openapiErrorCodes(t, doc)
	table := shimDocErrorTable(t)
	if got, want := slices.Sorted(slices.Values(codes)), slices.Sorted(maps.Keys(table)); !slices.Equal(got, want) {
		t.Errorf("ErrorCode enum %v; docs/shim.md's error table lists %v", got, want)
	}
	answered := openapiResponseCodes(doc)
	for _, c := range codes {
		switch statuses := answered[c]; {
		case len(statuses) == 0:
			t.Errorf("error code %s: no response of the document carries it", c)
		case len(statuses) > 1 || statuses[0] != table[c]:
			t.Errorf("error code %s: answered with status %v in the document, %d in docs/shim.md", c, statuses, table[c])
		}
	}
	for c := range answered {
		if !slices.Contains(codes, c) {
			t.Errorf("a response carries code %s, which ErrorCode does not list", c)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			r := op.Responses.Status(403)
			if r == nil || r.Value == nil || !slices.Contains(openapiSchemaCodes(r.Value.Content.Get("application/json").Schema.Value), "forbidden_origin") {
				t.Errorf("%s %s: no 403 forbidden_origin answer, which every path gives", method, path)
			}
		}
	}
	for status, name := range openapiUnrouted {
		if doc.Components.Responses[name] == nil {
			t.Errorf("components.responses.%s (the %d answer outside the operations) is missing", name, status)
		}
	}
}

// apiContract checks requests and answers against the document and counts
// what was exercised: operations, their (operation, status) answers, and
// error codes.
type apiContract struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	codes  []string

	mu        sync.Mutex
	ops       map[string]bool // "GET /v1/status" → exercised
	responses map[string]bool // "GET /v1/status 503" → seen
	seen      map[string]bool // error code → seen
}

func newAPIContract(t *testing.T) *apiContract {
	t.Helper()
	doc := loadOpenAPI(t)
	// Route on the path alone: the shim under test listens on a port of
	// its own, not the servers entry's.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("a router for %s: %v", openapiFile, err)
	}
	c := &apiContract{t: t, doc: doc, router: router, codes: openapiErrorCodes(t, doc),
		ops: map[string]bool{}, responses: map[string]bool{}, seen: map[string]bool{}}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			c.ops[method+" "+path] = false
		}
	}
	return c
}

// apiAnswer is what the shim answered.
type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

// code is the answer's error code, "" if it is not an error answer.
func (a apiAnswer) code() string {
	var e struct {
		Error struct{ Code string }
	}
	json.Unmarshal(a.body, &e)
	return e.Error.Code
}

// check validates one exchange: the request r (its body in body) against
// the document, which must accept it exactly when docValid says; the
// answer against the operation r names, or against the unrouted
// responses when r names none. It reports what is wrong and records what
// was exercised.
func (c *apiContract) check(t *testing.T, name string, r *http.Request, body []byte, docValid bool, a apiAnswer) {
	t.Helper()
	input := &openapi3filter.RequestValidationInput{Request: r, Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	route, params, err := c.router.FindRoute(r)
	op := ""
	if err == nil && apiCleanPath(r.URL.EscapedPath()) {
		input.Route, input.PathParams = route, params
		op = r.Method + " " + route.Path
		r.Body = io.NopCloser(bytes.NewReader(body))
		err = openapi3filter.ValidateRequest(context.Background(), input)
		if (err == nil) != docValid {
			t.Errorf("%s: the document accepts the request: %v, want %v (%v)", name, err == nil, docValid, err)
		}
	} else {
		if docValid {
			t.Errorf("%s: %s %s names no operation of the document (%v)", name, r.Method, r.URL.RequestURI(), err)
		}
		input.Route = c.unrouted(r)
	}
	rv := &openapi3filter.ResponseValidationInput{RequestValidationInput: input, Status: a.status, Header: a.header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	rv.SetBodyBytes(a.body)
	if err := openapi3filter.ValidateResponse(context.Background(), rv); err != nil {
		t.Errorf("%s: %s %s answered %d, which the document does not allow: %v\nbody: %s", name, r.Method, r.URL.RequestURI(), a.status, err, apiTruncate(a.body, 600))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if op != "" {
		c.ops[op] = true
		c.responses[op+" "+strconv.Itoa(a.status)] = true
	}
	if code := a.code(); code != "" {
		c.seen[code] = true
	}
}

// unrouted is the route of a request outside the document's operations:
// its answers are the components' ForbiddenOrigin, NotFound and
// MethodNotAllowed.
func (c *apiContract) unrouted(r *http.Request) *routers.Route {
	op := openapi3.NewOperation()
	op.Responses = openapi3.NewResponses()
	for status, name := range openapiUnrouted {
		op.Responses.Set(strconv.Itoa(status), c.doc.Components.Responses[name])
	}
	return &routers.Route{Spec: c.doc, Path: r.URL.Path, Method: r.Method, Operation: op}
}

// apiCleanPath reports whether an escaped path has no empty, "." or ".."
// segment: the shim answers any other 404 before routing.
func apiCleanPath(p string) bool {
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range segs {
		if (s == "" && i < len(segs)-1) || s == "." || s == ".." {
			return false
		}
	}
	return strings.HasPrefix(p, "/")
}

// done fails the test for every operation never exercised and every error
// code never seen, and logs the documented answers never seen.
func (c *apiContract) done() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, op := range slices.Sorted(maps.Keys(c.ops)) {
		if !c.ops[op] {
			c.t.Errorf("the document's operation %s was never exercised", op)
		}
	}
	for _, code := range c.codes {
		if !c.seen[code] {
			c.t.Errorf("the document's error code %s was never answered", code)
		}
	}
	var unseen []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				if k := method + " " + path + " " + status; !c.responses[k] {
					unseen = append(unseen, k)
				}
			}
		}
	}
	slices.Sort(unseen)
	c.t.Logf("documented answers never provoked (%d of them): %s", len(unseen), strings.Join(unseen, "; "))
}

func apiTruncate(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return append(b[:n:n], "…"...)
}

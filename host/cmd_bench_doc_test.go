//go:build unix

package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestBenchJSONDocumented: every field of signer bench's JSON line has a
// row in docs/performance.md's table, its one home.
func TestBenchJSONDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/performance.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### The JSON line")
	if !ok {
		t.Fatal(`docs/performance.md has no "### The JSON line" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var rows []string
	for _, l := range strings.Split(section, "\n") {
		if strings.HasPrefix(l, "| `") {
			rows = append(rows, strings.SplitN(l, " | ", 2)[0])
		}
	}
	typ := reflect.TypeFor[benchResult]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		documented := false
		for _, r := range rows {
			if strings.Contains(r, "`"+name+"`") {
				documented = true
			}
		}
		if !documented {
			t.Errorf("benchResult field %s (JSON %q) has no row in docs/performance.md's JSON table", typ.Field(i).Name, name)
		}
	}
	if typ.NumField() < 13 {
		t.Fatalf("benchResult has %d fields; the table check read the wrong type", typ.NumField())
	}
}

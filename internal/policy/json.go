package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// An ordered JSON tree. encoding/json's maps lose key order and merge
// duplicate keys silently; a policy linter must see both, and a rendered
// policy must keep the layout operators know from AWS's examples.

type jkind int

const (
	jString jkind = iota
	jNumber
	jBool
	jNull
	jObject
	jArray
)

func (k jkind) String() string {
	return [...]string{"a string", "a number", "a boolean", "null", "an object", "a list"}[k]
}

type jnode struct {
	kind    jkind
	s       string // string value, or the literal text of a number, bool or null
	members []jmember
	elems   []*jnode
}

type jmember struct {
	key string
	val *jnode
}

// maxDepth bounds nesting: a policy is at most Statement → Condition →
// operator → key → list deep, so anything deeper is not a policy.
const maxDepth = 8

func readJSON(doc []byte) (*jnode, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	n, err := readNode(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			return nil, errors.New("data after the policy's closing brace")
		}
		return nil, fmt.Errorf("after the policy: %v", err)
	}
	return n, nil
}

func readNode(dec *json.Decoder, depth int) (*jnode, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("JSON nested deeper than %d levels", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, tokenError(err)
	}
	switch t := tok.(type) {
	case string:
		return &jnode{kind: jString, s: t}, nil
	case json.Number:
		return &jnode{kind: jNumber, s: t.String()}, nil
	case bool:
		if t {
			return &jnode{kind: jBool, s: "true"}, nil
		}
		return &jnode{kind: jBool, s: "false"}, nil
	case nil:
		return &jnode{kind: jNull, s: "null"}, nil
	case json.Delim:
		switch t {
		case '{':
			n := &jnode{kind: jObject}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, tokenError(err)
				}
				key, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("invalid JSON: object key %v is not a string", kt)
				}
				if seen[key] {
					// Go's encoding/json keeps the last, other parsers the
					// first: a duplicate means two readers see two policies.
					return nil, fmt.Errorf("duplicate key %q", key)
				}
				seen[key] = true
				v, err := readNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.members = append(n.members, jmember{key, v})
			}
			if _, err := dec.Token(); err != nil {
				return nil, tokenError(err)
			}
			return n, nil
		case '[':
			n := &jnode{kind: jArray}
			for dec.More() {
				v, err := readNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.elems = append(n.elems, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, tokenError(err)
			}
			return n, nil
		}
	}
	return nil, fmt.Errorf("invalid JSON: unexpected %v", tok)
}

// writeJSON writes n indented by two spaces per level, the layout of
// json.MarshalIndent(v, "", "  ") and of AWS's documentation.
func writeJSON(b *bytes.Buffer, n *jnode, indent int) {
	switch n.kind {
	case jString:
		writeString(b, n.s)
	case jNumber, jBool, jNull:
		b.WriteString(n.s)
	case jObject:
		if len(n.members) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{\n")
		for i, m := range n.members {
			b.WriteString(strings.Repeat("  ", indent+1))
			writeString(b, m.key)
			b.WriteString(": ")
			writeJSON(b, m.val, indent+1)
			if i < len(n.members)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(strings.Repeat("  ", indent))
		b.WriteByte('}')
	case jArray:
		if len(n.elems) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[\n")
		for i, e := range n.elems {
			b.WriteString(strings.Repeat("  ", indent+1))
			writeJSON(b, e, indent+1)
			if i < len(n.elems)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(strings.Repeat("  ", indent))
		b.WriteByte(']')
	}
}

func writeString(b *bytes.Buffer, s string) {
	var tmp bytes.Buffer
	enc := json.NewEncoder(&tmp)
	enc.SetEscapeHTML(false) // keep "<" and "&" readable; they are not HTML here
	_ = enc.Encode(s)        // encoding a string cannot fail
	b.Write(bytes.TrimSuffix(tmp.Bytes(), []byte("\n")))
}

func tokenError(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("unexpected end of JSON")
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

// Package policy models AWS KMS key policies for enclave-signer's key: it
// parses them faithfully, renders the policy that lets only an attested
// enclave decrypt, lints policies for ways around attestation, and evaluates
// requests against a policy as KMS does (for the KMS emulator).
//
// # Model
//
// [Parse] reads the IAM policy grammar as KMS accepts it for key policies:
// Version, Id and Statement (an object or a list); each statement's Sid,
// Effect, Principal or NotPrincipal, Action or NotAction, Resource or
// NotResource, and Condition (operator → key → string, list, bool or
// number). It keeps the order of elements and of condition keys, so
// [Policy.Marshal] writes a parsed policy back in its own layout, and it
// rejects what would make two readers see two policies: duplicate JSON keys,
// unknown elements, elements of the wrong type. Condition operators and keys
// are not judged by Parse: [Check] reports unknown ones, and
// [Policy.Evaluate] never lets an unknown operator grant access.
//
// # Rendering, linting, evaluating
//
// [Render] builds the four-statement policy of the operator guide the
// project started from (corrected in docs/key-policy.md) from nitro-cli
// measurements;
// [Check] lists findings (severity, statement, what, why);
// [Policy.Evaluate] decides one request: an explicit Deny wins, otherwise
// an Allow is needed.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxSize is the largest key policy KMS accepts, in bytes (the KMS key
// policy document size quota, 32 KiB). Parse refuses larger documents.
const MaxSize = 32 * 1024

// Policy versions IAM knows. A policy without Version is read as 2008-10-17.
const (
	Version2012 = "2012-10-17"
	Version2008 = "2008-10-17"
)

// Effects.
const (
	Allow = "Allow"
	Deny  = "Deny"
)

// Policy is a key policy document.
type Policy struct {
	Version    string // "" when absent
	ID         string // the "Id" element, "" when absent
	Statements []*Statement

	statementObject bool     // Statement was written as one object, not a list
	order           []string // top-level element names as parsed
}

// Statement is one statement of a policy. Exactly one of Principal and
// NotPrincipal, of Action and NotAction, and of Resource and NotResource is
// set in a parsed statement.
type Statement struct {
	Sid          string
	Effect       string // Allow or Deny
	Principal    *Principal
	NotPrincipal *Principal
	Action       Values
	NotAction    Values
	Resource     Values
	NotResource  Values
	Condition    []Condition // one entry per operator, in document order

	order []string // element names as parsed
}

// Principal is a Principal or NotPrincipal element: "*" (Any), or typed
// entries such as {"AWS": [...], "Service": "..."}.
type Principal struct {
	Any     bool
	Entries []PrincipalEntry
}

// PrincipalEntry is one principal type and its values.
type PrincipalEntry struct {
	Type   string // AWS, Service, Federated or CanonicalUser
	Values Values
}

// Condition is one condition operator block, e.g. StringEqualsIgnoreCase
// with its keys. All keys of a block must hold (AND); a key holds when any
// of its values matches (OR).
type Condition struct {
	Operator string
	Keys     []ConditionKey
}

// ConditionKey is a condition key and the values it is compared with.
type ConditionKey struct {
	Key    string
	Values Values
}

// Values is a string-or-list element. Single records that the document
// wrote one scalar rather than a list, so Marshal reproduces it.
type Values struct {
	List   []string
	Single bool

	literal []bool // per value: a JSON bool or number rather than a string
}

// One returns a single scalar value, written as a JSON string.
func One(s string) Values { return Values{List: []string{s}, Single: true} }

// List returns values written as a JSON list, even when there is one.
func List(s ...string) Values { return Values{List: slices.Clone(s)} }

// Set reports whether the element was present.
func (v Values) Set() bool { return len(v.List) > 0 }

var topElements = []string{"Version", "Id", "Statement"}
var statementElements = []string{"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"}
var principalTypes = []string{"AWS", "Service", "Federated", "CanonicalUser"}

// Parse reads a key policy document.
func Parse(doc []byte) (*Policy, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("policy: %d bytes, more than KMS's limit of %d", len(doc), MaxSize)
	}
	root, err := readJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := fromTree(root)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return p, nil
}

func fromTree(root *jnode) (*Policy, error) {
	if root.kind != jObject {
		return nil, fmt.Errorf("document is %v, want a JSON object", root.kind)
	}
	p := &Policy{}
	haveStatement := false
	for _, m := range root.members {
		if err := knownElement(m.key, topElements, "policy"); err != nil {
			return nil, err
		}
		p.order = append(p.order, m.key)
		switch m.key {
		case "Version":
			if m.val.kind != jString {
				return nil, fmt.Errorf("%s is %v, want a string", m.key, m.val.kind)
			}
			if m.val.s != Version2012 && m.val.s != Version2008 {
				return nil, fmt.Errorf("%s %q: want %q (or the older %q)", m.key, m.val.s, Version2012, Version2008)
			}
			p.Version = m.val.s
		case "Id":
			if m.val.kind != jString {
				return nil, fmt.Errorf("%s is %v, want a string", m.key, m.val.kind)
			}
			p.ID = m.val.s
		case "Statement":
			haveStatement = true
			var nodes []*jnode
			switch m.val.kind {
			case jObject:
				p.statementObject = true
				nodes = []*jnode{m.val}
			case jArray:
				nodes = m.val.elems
			default:
				return nil, fmt.Errorf("Statement is %v, want an object or a list of objects", m.val.kind)
			}
			if len(nodes) == 0 {
				return nil, errors.New("Statement is an empty list")
			}
			for i, n := range nodes {
				s, err := statementFromTree(n)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", statementLabel(i, s), err)
				}
				p.Statements = append(p.Statements, s)
			}
		}
	}
	if !haveStatement {
		return nil, errors.New("no Statement element")
	}
	return p, nil
}

// statementLabel names statement i (0-based) for messages: its Sid when
// it has one.
func statementLabel(i int, s *Statement) string {
	if s != nil && s.Sid != "" {
		return fmt.Sprintf("Statement[%d] (Sid %q)", i, s.Sid)
	}
	return fmt.Sprintf("Statement[%d]", i)
}

func knownElement(key string, known []string, where string) error {
	if slices.Contains(known, key) {
		return nil
	}
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return fmt.Errorf("unknown %s element %q: element names are case-sensitive, want %q", where, key, k)
		}
	}
	return fmt.Errorf("unknown %s element %q: want one of %s", where, key, strings.Join(known, ", "))
}

func statementFromTree(n *jnode) (*Statement, error) {
	if n.kind != jObject {
		return nil, fmt.Errorf("is %v, want an object", n.kind)
	}
	s := &Statement{}
	// The Sid is read first so that every later error can name it.
	for _, m := range n.members {
		if m.key == "Sid" {
			if m.val.kind != jString {
				return nil, fmt.Errorf("%s is %v, want a string", m.key, m.val.kind)
			}
			s.Sid = m.val.s
		}
	}
	for _, m := range n.members {
		if err := knownElement(m.key, statementElements, "statement"); err != nil {
			return s, err
		}
		s.order = append(s.order, m.key)
		switch m.key {
		case "Sid":
		case "Effect":
			if m.val.kind != jString {
				return s, fmt.Errorf("%s is %v, want \"Allow\" or \"Deny\"", m.key, m.val.kind)
			}
			if m.val.s != Allow && m.val.s != Deny {
				return s, fmt.Errorf("%s %q: want \"Allow\" or \"Deny\" (case-sensitive)", m.key, m.val.s)
			}
			s.Effect = m.val.s
		case "Principal", "NotPrincipal":
			pr, err := principalFromTree(m.val)
			if err != nil {
				return s, fmt.Errorf("%s: %w", m.key, err)
			}
			if m.key == "Principal" {
				s.Principal = pr
			} else {
				s.NotPrincipal = pr
			}
		case "Action", "NotAction", "Resource", "NotResource":
			v, err := valuesFromTree(m.val, false)
			if err != nil {
				return s, fmt.Errorf("%s: %w", m.key, err)
			}
			switch m.key {
			case "Action":
				s.Action = v
			case "NotAction":
				s.NotAction = v
			case "Resource":
				s.Resource = v
			case "NotResource":
				s.NotResource = v
			}
		case "Condition":
			c, err := conditionFromTree(m.val)
			if err != nil {
				return s, fmt.Errorf("Condition: %w", err)
			}
			s.Condition = c
		}
	}
	switch {
	case s.Effect == "":
		return s, errors.New("no Effect element")
	case s.Principal == nil && s.NotPrincipal == nil:
		return s, errors.New("no Principal element: every key policy statement names a Principal (or NotPrincipal)")
	case s.Principal != nil && s.NotPrincipal != nil:
		return s, errors.New("both Principal and NotPrincipal: want one")
	case !s.Action.Set() && !s.NotAction.Set():
		return s, errors.New("no Action element (or NotAction)")
	case s.Action.Set() && s.NotAction.Set():
		return s, errors.New("both Action and NotAction: want one")
	case !s.Resource.Set() && !s.NotResource.Set():
		return s, errors.New("no Resource element (or NotResource); a key policy uses \"Resource\": \"*\"")
	case s.Resource.Set() && s.NotResource.Set():
		return s, errors.New("both Resource and NotResource: want one")
	}
	return s, nil
}

func principalFromTree(n *jnode) (*Principal, error) {
	switch n.kind {
	case jString:
		if n.s != "*" {
			return nil, fmt.Errorf("%q: a string principal must be \"*\"; write {\"AWS\": %q}", n.s, n.s)
		}
		return &Principal{Any: true}, nil
	case jObject:
		if len(n.members) == 0 {
			return nil, errors.New("empty object: want {\"AWS\": ARN or list of ARNs}")
		}
		p := &Principal{}
		for _, m := range n.members {
			if err := knownElement(m.key, principalTypes, "principal type"); err != nil {
				return nil, err
			}
			v, err := valuesFromTree(m.val, false)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m.key, err)
			}
			p.Entries = append(p.Entries, PrincipalEntry{Type: m.key, Values: v})
		}
		return p, nil
	}
	return nil, fmt.Errorf("is %v, want \"*\" or an object such as {\"AWS\": ARN}", n.kind)
}

// valuesFromTree reads a string or a non-empty list of strings; literals
// allows bools and numbers too (condition values).
func valuesFromTree(n *jnode, literals bool) (Values, error) {
	scalar := func(e *jnode) (string, bool, error) {
		switch {
		case e.kind == jString:
			if e.s == "" && !literals {
				return "", false, errors.New("empty string")
			}
			return e.s, false, nil
		case literals && (e.kind == jBool || e.kind == jNumber):
			return e.s, true, nil
		}
		want := "a string"
		if literals {
			want = "a string, number or boolean"
		}
		return "", false, fmt.Errorf("value is %v, want %s", e.kind, want)
	}
	var v Values
	add := func(e *jnode) error {
		s, lit, err := scalar(e)
		if err != nil {
			return err
		}
		v.List = append(v.List, s)
		if lit {
			if v.literal == nil {
				v.literal = make([]bool, len(v.List)-1, len(v.List))
			}
			v.literal = append(v.literal, true)
		} else if v.literal != nil {
			v.literal = append(v.literal, false)
		}
		return nil
	}
	if n.kind == jArray {
		if len(n.elems) == 0 {
			return Values{}, errors.New("empty list")
		}
		for i, e := range n.elems {
			if err := add(e); err != nil {
				return Values{}, fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return v, nil
	}
	if err := add(n); err != nil {
		return Values{}, err
	}
	v.Single = true
	return v, nil
}

func conditionFromTree(n *jnode) ([]Condition, error) {
	if n.kind != jObject {
		return nil, fmt.Errorf("is %v, want an object of operators", n.kind)
	}
	var out []Condition
	for _, m := range n.members {
		if m.val.kind != jObject {
			return nil, fmt.Errorf("%s is %v, want an object of condition keys", m.key, m.val.kind)
		}
		if len(m.val.members) == 0 {
			return nil, fmt.Errorf("%s has no condition keys", m.key)
		}
		c := Condition{Operator: m.key}
		for _, km := range m.val.members {
			v, err := valuesFromTree(km.val, true)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", m.key, km.key, err)
			}
			c.Keys = append(c.Keys, ConditionKey{Key: km.key, Values: v})
		}
		out = append(out, c)
	}
	return out, nil
}

// Marshal returns the policy as JSON indented by two spaces, ending in a
// newline. A parsed policy keeps its element order; Render's policies use
// the order of AWS's examples.
func (p *Policy) Marshal() []byte {
	var b bytes.Buffer
	writeJSON(&b, p.tree(), 0)
	b.WriteByte('\n')
	return b.Bytes()
}

// MarshalJSON implements json.Marshaler.
func (p *Policy) MarshalJSON() ([]byte, error) { return p.Marshal(), nil }

// UnmarshalJSON implements json.Unmarshaler with Parse's rules.
func (p *Policy) UnmarshalJSON(b []byte) error {
	q, err := Parse(b)
	if err != nil {
		return err
	}
	*p = *q
	return nil
}

// ordered returns the element names in the parsed order; present elements
// the parse did not see (set later by a caller) go where the canonical
// order puts them, before the first element that canonically follows.
func ordered(parsed, canonical []string, present func(string) bool) []string {
	var out []string
	for _, k := range parsed {
		if present(k) && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	for ci, k := range canonical {
		if !present(k) || slices.Contains(out, k) {
			continue
		}
		at := len(out)
		for i, o := range out {
			if slices.Index(canonical, o) > ci {
				at = i
				break
			}
		}
		out = slices.Insert(out, at, k)
	}
	return out
}

func (p *Policy) tree() *jnode {
	root := &jnode{kind: jObject}
	present := func(k string) bool {
		switch k {
		case "Version":
			return p.Version != ""
		case "Id":
			return p.ID != ""
		case "Statement":
			return true
		}
		return false
	}
	for _, k := range ordered(p.order, topElements, present) {
		var v *jnode
		switch k {
		case "Version":
			v = str(p.Version)
		case "Id":
			v = str(p.ID)
		case "Statement":
			if p.statementObject && len(p.Statements) == 1 {
				v = p.Statements[0].tree()
			} else {
				v = &jnode{kind: jArray}
				for _, s := range p.Statements {
					v.elems = append(v.elems, s.tree())
				}
			}
		}
		root.members = append(root.members, jmember{k, v})
	}
	return root
}

func str(s string) *jnode { return &jnode{kind: jString, s: s} }

func (s *Statement) tree() *jnode {
	n := &jnode{kind: jObject}
	present := func(k string) bool {
		switch k {
		case "Sid":
			return s.Sid != ""
		case "Effect":
			return s.Effect != ""
		case "Principal":
			return s.Principal != nil
		case "NotPrincipal":
			return s.NotPrincipal != nil
		case "Action":
			return s.Action.Set()
		case "NotAction":
			return s.NotAction.Set()
		case "Resource":
			return s.Resource.Set()
		case "NotResource":
			return s.NotResource.Set()
		case "Condition":
			return len(s.Condition) > 0
		}
		return false
	}
	for _, k := range ordered(s.order, statementElements, present) {
		var v *jnode
		switch k {
		case "Sid":
			v = str(s.Sid)
		case "Effect":
			v = str(s.Effect)
		case "Principal":
			v = s.Principal.tree()
		case "NotPrincipal":
			v = s.NotPrincipal.tree()
		case "Action":
			v = s.Action.tree()
		case "NotAction":
			v = s.NotAction.tree()
		case "Resource":
			v = s.Resource.tree()
		case "NotResource":
			v = s.NotResource.tree()
		case "Condition":
			v = &jnode{kind: jObject}
			for _, c := range s.Condition {
				op := &jnode{kind: jObject}
				for _, k := range c.Keys {
					op.members = append(op.members, jmember{k.Key, k.Values.tree()})
				}
				v.members = append(v.members, jmember{c.Operator, op})
			}
		}
		n.members = append(n.members, jmember{k, v})
	}
	return n
}

func (p *Principal) tree() *jnode {
	if p.Any {
		return str("*")
	}
	n := &jnode{kind: jObject}
	for _, e := range p.Entries {
		n.members = append(n.members, jmember{e.Type, e.Values.tree()})
	}
	return n
}

func (v Values) tree() *jnode {
	item := func(i int) *jnode {
		if i < len(v.literal) && v.literal[i] && isLiteral(v.List[i]) {
			if v.List[i] == "true" || v.List[i] == "false" {
				return &jnode{kind: jBool, s: v.List[i]}
			}
			return &jnode{kind: jNumber, s: v.List[i]}
		}
		return str(v.List[i])
	}
	if v.Single && len(v.List) == 1 {
		return item(0)
	}
	n := &jnode{kind: jArray}
	for i := range v.List {
		n.elems = append(n.elems, item(i))
	}
	return n
}

// Label names statement i (0-based) of p for findings and decisions: its
// Sid, or "Statement[i]" when it has none.
func (p *Policy) Label(i int) string {
	if s := p.Statements[i]; s.Sid != "" {
		return s.Sid
	}
	return fmt.Sprintf("Statement[%d]", i)
}

// isLiteral reports whether s can be written as a bare JSON bool or number.
func isLiteral(s string) bool {
	if s == "true" || s == "false" {
		return true
	}
	return s != "" && (s[0] == '-' || '0' <= s[0] && s[0] <= '9') && json.Valid([]byte(s))
}

package policy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func mustParse(t testing.TB, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, doc)
	}
	return p
}

// The guide's policies, parsed and marshalled again, come out byte for byte.
func TestParseMarshalRoundTrip(t *testing.T) {
	for _, name := range []string{"guide-policy.json", "guide-policy-debug.json", "guide-policy-multi.json", "guide-policy-pcr3.json", "zh-guide/policy.json"} {
		doc := readFile(t, name)
		p, err := Parse(doc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := p.Marshal(); !bytes.Equal(got, doc) {
			t.Errorf("%s: Marshal(Parse(doc)) differs:\n got:\n%s\nwant:\n%s", name, got, doc)
		}
	}
}

func TestParseShapes(t *testing.T) {
	// One statement as an object, Principal "*", a bool and a number
	// condition value, NotAction and NotResource, elements in an unusual
	// order: all kept as written.
	doc := `{
  "Statement": {
    "Effect": "Deny",
    "Sid": "Odd",
    "Principal": "*",
    "NotAction": [
      "kms:Encrypt"
    ],
    "NotResource": "arn:aws:kms:us-east-1:123456789012:key/x",
    "Condition": {
      "Bool": {
        "aws:SecureTransport": false
      },
      "NumericLessThan": {
        "aws:MultiFactorAuthAge": 3600,
        "kms:ScheduleKeyDeletionPendingWindowInDays": [
          "7",
          30
        ]
      }
    }
  },
  "Version": "2008-10-17"
}
`
	p := mustParse(t, doc)
	if got := string(p.Marshal()); got != doc {
		t.Errorf("round trip:\n got:\n%s\nwant:\n%s", got, doc)
	}
	s := p.Statements[0]
	if s.Sid != "Odd" || s.Effect != Deny || !s.Principal.Any || s.Action.Set() || s.NotAction.List[0] != "kms:Encrypt" || s.NotAction.Single {
		t.Errorf("statement = %+v", s)
	}
	if c := s.Condition[1]; c.Operator != "NumericLessThan" || !reflect.DeepEqual(c.Keys[1].Values.List, []string{"7", "30"}) {
		t.Errorf("condition = %+v", c)
	}
	if p.Version != Version2008 || p.ID != "" {
		t.Errorf("Version %q Id %q", p.Version, p.ID)
	}

	p = mustParse(t, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::1:root","222222222222"],"Service":"ec2.amazonaws.com"},"Action":"kms:*","Resource":"*"}]}`)
	pr := p.Statements[0].Principal
	if pr.Any || len(pr.Entries) != 2 || pr.Entries[0].Type != "AWS" || len(pr.Entries[0].Values.List) != 2 || pr.Entries[1].Values.List[0] != "ec2.amazonaws.com" {
		t.Errorf("principal = %+v", pr)
	}
	// Values set after parsing are written in the canonical places.
	p.Statements[0].Condition = []Condition{{Operator: "Bool", Keys: []ConditionKey{{Key: "kms:GrantIsForAWSResource", Values: One("true")}}}}
	p.Statements[0].Sid = "Added"
	out := string(p.Marshal())
	if !strings.Contains(out, "{\n      \"Sid\": \"Added\",\n      \"Effect\"") || !strings.HasSuffix(out, "\"Condition\": {\n        \"Bool\": {\n          \"kms:GrantIsForAWSResource\": \"true\"\n        }\n      }\n    }\n  ]\n}\n") {
		t.Errorf("elements added after parsing misplaced:\n%s", out)
	}
	// encoding/json integration.
	var q Policy
	if err := json.Unmarshal(p.Marshal(), &q); err != nil || q.Statements[0].Sid != "Added" {
		t.Errorf("json.Unmarshal: %v", err)
	}
	if b, err := json.Marshal(&q); err != nil || !json.Valid(b) {
		t.Errorf("json.Marshal: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	stmt := func(fields string) string {
		return `{"Version":"2012-10-17","Statement":[{"Sid":"S",` + fields + `}]}`
	}
	ok := `"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:root"},"Action":"kms:*","Resource":"*"`
	tests := []struct{ name, doc, want string }{
		{"empty", ``, "unexpected end of JSON"},
		{"not JSON", `{"Version": }`, "invalid JSON"},
		{"trailing data", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}} {}`, "data after the policy"},
		{"array", `[]`, "document is a list, want a JSON object"},
		{"too large", `{"Id":"` + strings.Repeat("x", MaxSize) + `"}`, "more than KMS's limit of 32768"},
		{"too deep", `{"Statement":[[[[[[[[[[]]]]]]]]]]}`, "nested deeper than"},
		{"duplicate key", `{"Version":"2012-10-17","Version":"2012-10-17","Statement":[]}`, `duplicate key "Version"`},
		{"duplicate condition key", stmt(ok + `,"Condition":{"Bool":{"a":"true","a":"false"}}`), `duplicate key "a"`},
		{"bad version", `{"Version":"2012-10-18","Statement":[]}`, `Version "2012-10-18": want "2012-10-17"`},
		{"version number", `{"Version":2012,"Statement":[]}`, "Version is a number, want a string"},
		{"unknown element", `{"Version":"2012-10-17","Statment":[]}`, `unknown policy element "Statment"`},
		{"element case", `{"version":"2012-10-17","Statement":[]}`, `element names are case-sensitive, want "Version"`},
		{"no statement", `{"Version":"2012-10-17"}`, "no Statement element"},
		{"empty statements", `{"Statement":[]}`, "Statement is an empty list"},
		{"statement string", `{"Statement":"x"}`, "Statement is a string"},
		{"statement not object", `{"Statement":["x"]}`, "Statement[0]: is a string, want an object"},
		{"effect case", stmt(strings.Replace(ok, `"Allow"`, `"allow"`, 1)), `Statement[0] (Sid "S"): Effect "allow": want "Allow" or "Deny"`},
		{"no effect", stmt(`"Principal":"*","Action":"*","Resource":"*"`), "no Effect element"},
		{"no principal", stmt(`"Effect":"Allow","Action":"*","Resource":"*"`), "no Principal element"},
		{"both principals", stmt(ok + `,"NotPrincipal":"*"`), "both Principal and NotPrincipal"},
		{"no action", stmt(`"Effect":"Allow","Principal":"*","Resource":"*"`), "no Action element"},
		{"both actions", stmt(ok + `,"NotAction":"kms:Decrypt"`), "both Action and NotAction"},
		{"no resource", stmt(`"Effect":"Allow","Principal":"*","Action":"*"`), "no Resource element"},
		{"both resources", stmt(ok + `,"NotResource":"x"`), "both Resource and NotResource"},
		{"unknown statement element", stmt(ok + `,"Conditions":{}`), `unknown statement element "Conditions"`},
		{"principal string", stmt(`"Effect":"Allow","Principal":"arn:aws:iam::1:root","Action":"*","Resource":"*"`), `a string principal must be "*"`},
		{"principal type", stmt(`"Effect":"Allow","Principal":{"Aws":"x"},"Action":"*","Resource":"*"`), `want "AWS"`},
		{"principal empty", stmt(`"Effect":"Allow","Principal":{},"Action":"*","Resource":"*"`), "Principal: empty object"},
		{"principal list empty", stmt(`"Effect":"Allow","Principal":{"AWS":[]},"Action":"*","Resource":"*"`), "Principal: AWS: empty list"},
		{"action number", stmt(`"Effect":"Allow","Principal":"*","Action":1,"Resource":"*"`), "Action: value is a number, want a string"},
		{"action list bool", stmt(`"Effect":"Allow","Principal":"*","Action":["kms:Decrypt",true],"Resource":"*"`), "Action: [1]: value is a boolean"},
		{"empty action", stmt(`"Effect":"Allow","Principal":"*","Action":"","Resource":"*"`), "Action: empty string"},
		{"condition list", stmt(ok + `,"Condition":[]`), "Condition: is a list, want an object of operators"},
		{"operator string", stmt(ok + `,"Condition":{"Bool":"true"}`), "Condition: Bool is a string, want an object of condition keys"},
		{"operator empty", stmt(ok + `,"Condition":{"Bool":{}}`), "Condition: Bool has no condition keys"},
		{"condition null", stmt(ok + `,"Condition":{"Null":{"k":null}}`), "Condition: Null: k: value is null"},
		{"condition object", stmt(ok + `,"Condition":{"StringEquals":{"k":{"a":"b"}}}`), "Condition: StringEquals: k: value is an object"},
		{"sid number", `{"Statement":[{"Sid":1}]}`, "Statement[0]: Sid is a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error:\n got %v\nwant containing %q", err, tt.want)
			}
			if p != nil {
				t.Error("Parse returned a policy with an error")
			}
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		fold, want bool
	}{
		{"*", "", false, true},
		{"kms:*", "kms:Decrypt", false, true},
		{"kms:Decrypt*", "kms:Decrypt", false, true},
		{"kms:Re*", "kms:ReEncryptFrom", false, true},
		{"kms:re*", "kms:ReEncryptFrom", false, false},
		{"kms:re*", "kms:ReEncryptFrom", true, true},
		{"kms:?ecrypt", "kms:Decrypt", false, true},
		{"kms:?ecrypt", "kms:Encrypt", false, false},
		{"a*b*c", "axxbyyc", false, true},
		{"a*b*c", "axxbyy", false, false},
		{"*é", "café", false, true},
		{"caf?", "café", false, true},
		{"", "x", false, false},
	}
	for _, tt := range tests {
		if got := glob(tt.pattern, tt.s, tt.fold); got != tt.want {
			t.Errorf("glob(%q, %q, %v) = %v, want %v", tt.pattern, tt.s, tt.fold, got, tt.want)
		}
	}
}

// FuzzParse (seeds: the rendered policies and testdata/fuzz/FuzzParse)
// checks that Parse never panics, returns nil on error, and that
// what it accepts it writes back in a form that parses to the same output.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"guide-policy.json", "guide-policy-debug.json", "guide-policy-multi.json", "zh-guide/pcr3-statement.json"} {
		f.Add(readFile(f, name))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := Parse(doc)
		if err != nil {
			if p != nil {
				t.Fatal("policy returned with an error")
			}
			return
		}
		out := p.Marshal()
		q, err := Parse(out)
		if err != nil {
			t.Fatalf("Marshal output does not parse: %v\n%s", err, out)
		}
		if again := q.Marshal(); !bytes.Equal(again, out) {
			t.Fatalf("Marshal not stable:\n%s\n%s", out, again)
		}
		if !json.Valid(out) {
			t.Fatalf("Marshal output is not JSON:\n%s", out)
		}
		// Evaluate and Check must not panic on anything Parse accepts.
		p.Evaluate(Request{Principal: "arn:aws:sts::1:assumed-role/r/s", Action: "kms:Decrypt", Resource: "k", Context: map[string][]string{"k": {"v"}}})
		Check(p, true)
	})
}

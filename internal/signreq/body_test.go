package signreq

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseBody(t *testing.T) {
	for _, tc := range []struct {
		body   string
		b64    string
		digest bool
		err    string
	}{
		{`{"message":"eA=="}`, "eA==", false, ""},
		{` {"digest" : "AAAA"} `, "AAAA", true, ""},
		{`{"message":""}`, "", false, ""},
		{`{"message":"\/\/"}`, "//", false, ""},
		{`{"message":"a\"b"}`, `a"b`, false, ""},
		{``, "", false, "JSON object"},
		{`{`, "", false, "field name"},
		{`{"message"}`, "", false, "':'"},
		{`{"message":"x"`, "", false, "','"},
		{`{"message":"x",}`, "", false, "field name"},
		{`{"message":"x"}x`, "", false, "after"},
		{`{"message":"x","digest":"y"}`, "", false, "both"},
		{`{}`, "", false, "neither"},
		{`{"Message":"x"}`, "", false, `unknown field "Message"`},
		{`{"message":1}`, "", false, "base64 string"},
		{`{"message":"x","message":"y"}`, "", false, "twice"},
		{`{"message":"` + "\x01" + `"}`, "", false, "control character"},
		{`{"message":"` + "\xff" + `"}`, "", false, "UTF-8"},
		{`{"message":"abc`, "", false, "unterminated"},
		{`{"message":"\q"}`, "", false, "bad JSON string"},
	} {
		sb, err := ParseBody([]byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseBody(%q): err = %v\nwant one containing %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil || string(sb.B64) != tc.b64 || sb.IsDigest != tc.digest {
			t.Errorf("ParseBody(%q) = %q digest=%v, %v\nwant %q digest=%v", tc.body, sb.B64, sb.IsDigest, err, tc.b64, tc.digest)
		}
	}
}

// FuzzParseBody checks that whatever the hand-written parser accepts,
// encoding/json reads the same way: same field, same value.
func FuzzParseBody(f *testing.F) {
	for _, s := range []string{`{"message":"eA=="}`, `{"digest":"AAAA"}`, `{"message":"\/\u0041"}`, `{}`, ` { "message" : "" } `, `{"message":"a","digest":"b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sb, err := ParseBody(body)
		if err != nil {
			return
		}
		var ref struct {
			Message *string `json:"message"`
			Digest  *string `json:"digest"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ref); err != nil {
			t.Fatalf("ParseBody accepted %q, encoding/json refuses it: %v", body, err)
		}
		got := ref.Message
		if sb.IsDigest {
			got = ref.Digest
		}
		if got == nil || *got != string(sb.B64) || (ref.Message != nil && ref.Digest != nil) {
			t.Fatalf("ParseBody(%q) = %q digest=%v; encoding/json reads %+v", body, sb.B64, sb.IsDigest, ref)
		}
	})
}

package shim

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/enclave-signer/enclave-signer/pkg/wire"
)

func TestParseSignBody(t *testing.T) {
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
		sb, err := parseSignBody([]byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseSignBody(%q): err = %v\nwant one containing %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil || string(sb.b64) != tc.b64 || sb.isDigest != tc.digest {
			t.Errorf("parseSignBody(%q) = %q digest=%v, %v\nwant %q digest=%v", tc.body, sb.b64, sb.isDigest, err, tc.b64, tc.digest)
		}
	}
}

// FuzzParseSignBody checks that whatever the hand-written parser accepts,
// encoding/json reads the same way: same field, same value.
func FuzzParseSignBody(f *testing.F) {
	for _, s := range []string{`{"message":"eA=="}`, `{"digest":"AAAA"}`, `{"message":"\/\u0041"}`, `{}`, ` { "message" : "" } `, `{"message":"a","digest":"b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sb, err := parseSignBody(body)
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
			t.Fatalf("parseSignBody accepted %q, encoding/json refuses it: %v", body, err)
		}
		got := ref.Message
		if sb.isDigest {
			got = ref.Digest
		}
		if got == nil || *got != string(sb.b64) || (ref.Message != nil && ref.Digest != nil) {
			t.Fatalf("parseSignBody(%q) = %q digest=%v; encoding/json reads %+v", body, sb.b64, sb.isDigest, ref)
		}
	})
}

// FuzzAppendJSONString checks that the hand-written encoder gives valid
// JSON that decodes to the input (invalid UTF-8 becoming U+FFFD, as
// encoding/json does it).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\s", "\x00\x1f\n\t\r", "\u2028é", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("appendJSONString(%q) = %s: not JSON: %v", s, out, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); back != want && utf8.ValidString(s) {
			t.Fatalf("appendJSONString(%q) decodes to %q", s, back)
		}
		if !utf8.ValidString(back) {
			t.Fatalf("decoded %q is not UTF-8", back)
		}
	})
}

func TestDurationFieldsListed(t *testing.T) {
	var names []string
	rt := reflect.TypeFor[Config]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		if f.Type == reflect.TypeFor[Duration]() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			names = append(names, name)
		}
	}
	slices.Sort(names)
	listed := slices.Sorted(slices.Values(durationFields))
	if !slices.Equal(names, listed) {
		t.Fatalf("Duration fields %v, durationFields %v", names, listed)
	}
}

func TestMapErrorCoversEveryCode(t *testing.T) {
	// docs/protocol.md's table: wire code → HTTP status and API code.
	want := map[string]struct {
		status int
		code   string
	}{
		"malformed_frame": {400, codeMalformed}, "frame_too_large": {413, codeTooLarge},
		"unsupported": {500, codeInternal}, "version_mismatch": {500, codeInternal},
		"invalid_request": {400, codeMalformed}, "internal": {500, codeInternal},
		"too_many_connections": {503, codeNotReady},
		"not_ready":            {503, codeNotReady}, "unknown_key": {404, codeUnknownKey},
		"invalid_digest": {422, codeInvalidDigest}, "digest_not_allowed": {422, codeDigestNotAllowed},
		"provisioning_failed": {500, codeInternal}, "forbidden": {403, codeForbidden},
		"audit_unavailable": {503, codeAuditUnavailable},
	}
	for _, c := range wire.Codes() {
		w, ok := want[c.String()]
		if !ok {
			t.Errorf("wire code %s has no expected mapping in this test", c)
			continue
		}
		status, code, msg := mapError(wire.NewError(c, "detail"), 0)
		if status != w.status || code != w.code || !strings.Contains(msg, "detail") {
			t.Errorf("%s → %d %s %q, want %d %s with the message", c, status, code, msg, w.status, w.code)
		}
	}
	if status, code, _ := mapError(wire.NewError(999, ""), 0); status != 500 || code != codeInternal {
		t.Errorf("an unknown code → %d %s, want 500 internal", status, code)
	}
}

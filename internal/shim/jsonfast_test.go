package shim

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/enclave-signer/enclave-signer/internal/wire"
)

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
		"unauthenticated": {401, codeUnauthenticated}, "rate_limited": {429, codeRateLimited},
		"auth_unavailable":  {503, codeAuthUnavailable},
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

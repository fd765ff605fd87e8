package signreq

import (
	"strings"
	"testing"
)

func TestKeyIDFromPath(t *testing.T) {
	for _, tc := range []struct{ path, id, err string }{
		{"/v1/keys/eth/sign", "eth", ""},
		{"/v1/keys/a%2Fb/sign", "a/b", ""},
		{"/v1/keys/caf%C3%A9/sign", "café", ""},
		{SignPath("x y/z"), "x y/z", ""},
		{"/v1/keys//sign", "", "want /v1/keys/{id}/sign"},
		{"/v1/keys/a/b/sign", "", "want /v1/keys/{id}/sign"},
		{"/v1/keys/eth/sign?x=1", "", "no query"},
		{"/v1/keys/eth", "", "want /v1/keys/{id}/sign"},
		{"/v2/keys/eth/sign", "", "want /v1/keys/{id}/sign"},
		{"/v1/keys/%zz/sign", "", "key id"},
		{"/v1/keys/%ff/sign", "", "UTF-8"},
	} {
		id, err := KeyIDFromPath(tc.path)
		if tc.err == "" {
			if err != nil || id != tc.id {
				t.Errorf("KeyIDFromPath(%q) = %q, %v; want %q", tc.path, id, err, tc.id)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("KeyIDFromPath(%q) = %q, %v; want an error containing %q", tc.path, id, err, tc.err)
		}
	}
}

func FuzzKeyIDFromPath(f *testing.F) {
	for _, s := range []string{"/v1/keys/eth/sign", "/v1/keys/a%2Fb/sign", "/v1/keys//sign"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		id, err := KeyIDFromPath(p)
		if err != nil {
			return
		}
		// What it reads, SignPath writes back to a path that reads the same.
		if back, err := KeyIDFromPath(SignPath(id)); err != nil || back != id {
			t.Fatalf("KeyIDFromPath(%q) = %q; SignPath of it reads %q, %v", p, id, back, err)
		}
	})
}

package signreq

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// The sign endpoint's path: /v1/keys/{id}/sign, id path-escaped.
const (
	signPathPrefix = "/v1/keys/"
	signPathSuffix = "/sign"
)

// SignPath returns the path that signs with key id.
func SignPath(id string) string { return signPathPrefix + url.PathEscape(id) + signPathSuffix }

// KeyIDFromPath reads the key id from an authenticated request's path
// (the request target as the client sent it), as the shim's router reads
// it: one escaped segment between /v1/keys/ and /sign, unescaped. It
// refuses a query (the endpoint takes none, and bytes the id is not read
// from should not ride along), an empty id, and an id that is not UTF-8.
func KeyIDFromPath(path string) (string, error) {
	if strings.IndexByte(path, '?') >= 0 {
		return "", fmt.Errorf("path %s: the sign endpoint takes no query", quoteShort(path))
	}
	seg, ok := strings.CutPrefix(path, signPathPrefix)
	if ok {
		seg, ok = strings.CutSuffix(seg, signPathSuffix)
	}
	if !ok || seg == "" || strings.IndexByte(seg, '/') >= 0 {
		return "", fmt.Errorf("path %s: want %s{id}%s", quoteShort(path), signPathPrefix, signPathSuffix)
	}
	id, err := url.PathUnescape(seg)
	if err != nil {
		return "", fmt.Errorf("path %s: key id: %v", quoteShort(path), err)
	}
	if id == "" || !utf8.ValidString(id) {
		return "", fmt.Errorf("path %s: key id: want a non-empty UTF-8 string", quoteShort(path))
	}
	return id, nil
}

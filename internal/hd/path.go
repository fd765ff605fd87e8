package hd

import (
	"strconv"
	"strings"
)

const (
	// HardenedOffset is added to an index to make it hardened (BIP32's
	// 2^31); a path writes such an index as i' (or ih, iH).
	HardenedOffset uint32 = 1 << 31
	// MaxPathDepth bounds the steps of a path. BIP32 allows 255; the
	// deepest path in common use (BIP44 and its kin) has 5, and each step
	// is an HMAC and a scalar multiplication inside the enclave, so a
	// request may not ask for more than this many.
	MaxPathDepth = 32
	// maxPathLen bounds the text of a path: MaxPathDepth steps of at most
	// "/2147483647'" (12 bytes) after "m".
	maxPathLen = 1 + MaxPathDepth*12
)

// Path is a derivation path: the indices of each step from the master key,
// hardened ones at or above HardenedOffset. The empty path is the master
// key itself ("m").
type Path []uint32

// ParsePath reads a path such as m/44'/60'/0'/0/7: "m", then for each step
// a slash and a decimal index from 0 to 2147483647 (2^31-1) without
// leading zeros, followed by ', h or H for a hardened step. Anything else
// is refused with an error naming the step and what was expected, so that
// one path has one spelling apart from its hardened marker (String gives
// the canonical form, with ').
func ParsePath(s string) (Path, error) {
	if len(s) > maxPathLen {
		return nil, errorf(ErrPathTooDeep, "the path is %d bytes; at most %d steps (%d bytes) are allowed", len(s), MaxPathDepth, maxPathLen)
	}
	if s == "" {
		return nil, errorf(ErrPath, `the path is empty; write "m" for the master key or e.g. "m/44'/60'/0'/0/7"`)
	}
	rest, ok := strings.CutPrefix(s, "m")
	if !ok {
		return nil, errorf(ErrPath, `the path %q does not start with "m" (the master key); write e.g. "m/44'/60'/0'/0/7"`, s)
	}
	if rest == "" {
		return Path{}, nil
	}
	if rest[0] != '/' {
		return nil, errorf(ErrPath, `the path %q must continue after "m" with "/" and an index, e.g. "m/0'"`, s)
	}
	steps := strings.Split(rest[1:], "/")
	if len(steps) > MaxPathDepth {
		return nil, errorf(ErrPathTooDeep, "the path has %d steps; at most %d are allowed", len(steps), MaxPathDepth)
	}
	p := make(Path, len(steps))
	for i, step := range steps {
		v, err := parseStep(step, i+1)
		if err != nil {
			return nil, err
		}
		p[i] = v
	}
	return p, nil
}

// parseStep reads one step: digits, then an optional hardened marker.
func parseStep(step string, n int) (uint32, error) {
	digits, hardened := step, false
	if last := len(step) - 1; last >= 0 && (step[last] == '\'' || step[last] == 'h' || step[last] == 'H') {
		digits, hardened = step[:last], true
	}
	if digits == "" {
		return 0, errorf(ErrPath, `step %d is empty; each step is an index such as 0, 7 or 44' between slashes`, n)
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, errorf(ErrPath, `step %d (%q) is not a decimal index followed by an optional ', h or H`, n, clip(step))
		}
	}
	if len(digits) > 1 && digits[0] == '0' {
		return 0, errorf(ErrPath, `step %d (%q) has a leading zero; write the index without it`, n, clip(step))
	}
	v, err := strconv.ParseUint(digits, 10, 32)
	if err != nil || v >= uint64(HardenedOffset) {
		return 0, errorf(ErrPathIndex, `step %d (%q) is beyond 2147483647 (2^31-1); a hardened index is written i' (e.g. 0'), not as 2^31+i`, n, clip(step))
	}
	if hardened {
		v += uint64(HardenedOffset)
	}
	return uint32(v), nil
}

// clip shortens a step for an error message.
func clip(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// String is the canonical form of the path: "m", then /i or /i' per step.
func (p Path) String() string {
	var b strings.Builder
	b.WriteString("m")
	for _, v := range p {
		b.WriteByte('/')
		b.WriteString(strconv.FormatUint(uint64(v&^HardenedOffset), 10))
		if v >= HardenedOffset {
			b.WriteByte('\'')
		}
	}
	return b.String()
}

// HasPrefix reports whether the path starts with prefix (every path starts
// with "m"), for policies that allow signing under a subtree.
func (p Path) HasPrefix(prefix Path) bool {
	if len(prefix) > len(p) {
		return false
	}
	for i, v := range prefix {
		if p[i] != v {
			return false
		}
	}
	return true
}

// Hardened reports whether the step i is hardened.
func Hardened(i uint32) bool { return i >= HardenedOffset }

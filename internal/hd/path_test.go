package hd

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	h := HardenedOffset
	for _, c := range []struct {
		in    string
		want  Path
		canon string
	}{
		{"m", Path{}, "m"},
		{"m/0", Path{0}, "m/0"},
		{"m/44'/60'/0'/0/7", Path{44 + h, 60 + h, h, 0, 7}, "m/44'/60'/0'/0/7"},
		{"m/44h/60H/0'/0/7", Path{44 + h, 60 + h, h, 0, 7}, "m/44'/60'/0'/0/7"},
		{"m/2147483647'/2147483647", Path{2147483647 + h, 2147483647}, "m/2147483647'/2147483647"},
		{"m" + strings.Repeat("/1'", MaxPathDepth), slices.Repeat(Path{1 + h}, MaxPathDepth), "m" + strings.Repeat("/1'", MaxPathDepth)},
	} {
		p, err := ParsePath(c.in)
		if err != nil || !slices.Equal(p, c.want) || p == nil {
			t.Errorf("ParsePath(%q) = %v, %v; want %v", c.in, p, err, c.want)
			continue
		}
		if p.String() != c.canon {
			t.Errorf("%q: String() = %q, want %q", c.in, p.String(), c.canon)
		}
	}
}

func TestParsePathErrors(t *testing.T) {
	for _, c := range []struct {
		in   string
		want error
		text string
	}{
		{"", ErrPath, "empty"},
		{"44'/60'", ErrPath, `does not start with "m"`},
		{"M/44'", ErrPath, `does not start with "m"`},
		{"/0", ErrPath, `does not start with "m"`},
		{"m0", ErrPath, `continue after "m" with "/"`},
		{"m/", ErrPath, "step 1 is empty"},
		{"m//0", ErrPath, "step 1 is empty"},
		{"m/0/", ErrPath, "step 2 is empty"},
		{"m/'", ErrPath, "step 1 is empty"},
		{"m/0''", ErrPath, "step 1"},
		{"m/0'h", ErrPath, "step 1"},
		{"m/-1", ErrPath, "not a decimal index"},
		{"m/+1", ErrPath, "not a decimal index"},
		{"m/ 1", ErrPath, "not a decimal index"},
		{"m/1 ", ErrPath, "not a decimal index"},
		{"m/0x10", ErrPath, "not a decimal index"},
		{"m/１", ErrPath, "not a decimal index"},
		{"m/01", ErrPath, "leading zero"},
		{"m/00'", ErrPath, "leading zero"},
		{"m/2147483648", ErrPathIndex, "beyond 2147483647"},
		{"m/2147483648'", ErrPathIndex, "beyond 2147483647"},
		{"m/4294967296", ErrPathIndex, "beyond 2147483647"},
		{"m/99999999999999999999999", ErrPathIndex, "beyond 2147483647"},
		{"m" + strings.Repeat("/1", MaxPathDepth+1), ErrPathTooDeep, "at most 32"},
		{"m" + strings.Repeat("/1", 1000), ErrPathTooDeep, "at most 32"},
	} {
		p, err := ParsePath(c.in)
		if p != nil || !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("ParsePath(%q) = %v, %v; want %v saying %q", c.in, p, err, c.want, c.text)
		}
	}
}

func TestPathHasPrefix(t *testing.T) {
	p, _ := ParsePath("m/44'/60'/0'/0/7")
	for _, c := range []struct {
		prefix string
		want   bool
	}{
		{"m", true}, {"m/44'", true}, {"m/44'/60'/0'/0/7", true},
		{"m/44", false}, {"m/44'/61'", false}, {"m/44'/60'/0'/0/7/0", false},
	} {
		q, _ := ParsePath(c.prefix)
		if p.HasPrefix(q) != c.want {
			t.Errorf("%v.HasPrefix(%v) = %v", p, q, !c.want)
		}
	}
}

// FuzzParsePath: a parsed path is within the limits, its String parses
// back to the same path, and nothing panics.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"m", "m/44'/60'/0'/0/7", "m/0h/1H", "m/2147483647'", "m//", "m/01", "m/2147483648", "m/１"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			if !errors.Is(err, ErrPath) && !errors.Is(err, ErrPathIndex) && !errors.Is(err, ErrPathTooDeep) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(p) > MaxPathDepth {
			t.Fatalf("%q parsed to %d steps", s, len(p))
		}
		again, err := ParsePath(p.String())
		if err != nil || !slices.Equal(again, p) {
			t.Fatalf("%q: String %q parses to %v, %v", s, p.String(), again, err)
		}
		if strings.NewReplacer("h", "'", "H", "'").Replace(s) != p.String() {
			t.Fatalf("%q is another spelling of %q", s, p.String())
		}
	})
}

package bench

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSplitCPUs(t *testing.T) {
	for _, c := range []struct {
		avail         []int
		n             int
		enclave, rest []int
		err           string
	}{
		{avail: []int{0, 1}, n: 1, enclave: []int{1}, rest: []int{0}},
		{avail: []int{0, 1, 2, 3}, n: 2, enclave: []int{2, 3}, rest: []int{0, 1}},
		{avail: []int{2, 5, 7}, n: 1, enclave: []int{7}, rest: []int{2, 5}},
		{avail: []int{3}, n: 1, enclave: []int{3}, rest: []int{3}},
		{avail: []int{0, 1}, n: 2, err: "want at most 1 of the 2 CPUs available (0-1)"},
		{avail: []int{0, 1}, n: 0, err: "want at least 1, got 0"},
		{avail: nil, n: 1, err: "no CPUs available"},
	} {
		enc, rest, err := SplitCPUs(c.avail, c.n)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("SplitCPUs(%v, %d) error\n got %v\nwant …%s…", c.avail, c.n, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(enc, c.enclave) || !slices.Equal(rest, c.rest) {
			t.Errorf("SplitCPUs(%v, %d)\n got %v %v %v\nwant %v %v", c.avail, c.n, enc, rest, err, c.enclave, c.rest)
		}
	}
	for avail, want := range map[int]int{1: 1, 2: 1, 3: 1, 4: 2, 16: 8} {
		if got := DefaultEnclaveCPUs(avail); got != want {
			t.Errorf("DefaultEnclaveCPUs(%d) = %d, want %d", avail, got, want)
		}
	}
}

func TestFormatCPUs(t *testing.T) {
	for _, c := range []struct {
		cpus []int
		want string
	}{
		{nil, ""},
		{[]int{0}, "0"},
		{[]int{0, 1}, "0-1"},
		{[]int{0, 1, 2, 5, 7, 8}, "0-2,5,7-8"},
	} {
		if got := FormatCPUs(c.cpus); got != c.want {
			t.Errorf("FormatCPUs(%v) = %q, want %q", c.cpus, got, c.want)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// utime 250 and stime 50 ticks: 3 s.
	good := "1234 (signerd) S 1 1234 1234 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 5 0 100 0 0"
	odd := "1234 (a) b) (c) R 1 1234 1234 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 5 0 100 0 0"
	for _, s := range []string{good, odd} {
		d, err := parseStatCPU([]byte(s))
		if err != nil || d != 3*time.Second {
			t.Errorf("parseStatCPU(%q) = %v, %v; want 3s", s, d, err)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"1234 signerd S 1", "no command name"},
		{"1234 (x) S 1 2 3", "want at least 13"},
		{"1234 (x) S 1 1234 1234 0 -1 4194560 1 0 0 0 -5 50", "want a count of clock ticks"},
	} {
		if _, err := parseStatCPU([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseStatCPU(%q) error %v, want …%s…", c.in, err, c.want)
		}
	}
}

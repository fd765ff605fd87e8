package bench

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SplitCPUs divides the CPUs a process may use between the enclave (the
// last n) and everything else (the load generator, the shim). n must be at least 1 and
// leave at least one CPU for the rest, unless only one CPU is available,
// in which case both get it (shared: the figures are then not
// representative, and the caller should say so).
func SplitCPUs(avail []int, n int) (enclave, rest []int, err error) {
	switch {
	case len(avail) == 0:
		return nil, nil, fmt.Errorf("no CPUs available")
	case n < 1:
		return nil, nil, fmt.Errorf("enclave CPUs: want at least 1, got %d", n)
	case len(avail) == 1 && n == 1:
		return []int{avail[0]}, []int{avail[0]}, nil
	case n >= len(avail):
		return nil, nil, fmt.Errorf("enclave CPUs: want at most %d of the %d CPUs available (%s), so that the load generator and the shim keep at least one, got %d", len(avail)-1, len(avail), FormatCPUs(avail), n)
	}
	split := len(avail) - n
	return append([]int(nil), avail[split:]...), append([]int(nil), avail[:split]...), nil
}

// DefaultEnclaveCPUs is half the available CPUs, at least 1.
func DefaultEnclaveCPUs(avail int) int { return max(1, avail/2) }

// FormatCPUs writes a CPU list as taskset -c does: "0-3,6".
func FormatCPUs(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// parseStatCPU reads utime and stime (fields 14 and 15, in clock ticks)
// from the contents of /proc/PID/stat. The command name (field 2) is in
// parentheses and may hold spaces and parentheses itself, so the fields
// are counted from its last ")".
func parseStatCPU(b []byte) (time.Duration, error) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: no command name in %.40q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("/proc stat: CPU time %q: want a count of clock ticks", v)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

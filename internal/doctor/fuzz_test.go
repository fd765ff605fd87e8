package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func addSeeds(f *testing.F, dir string) {
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/%s: %v", dir, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseDescribeEnclaves: no panic; nil on error; on success every
// entry has an id and a known state and flags.
func FuzzParseDescribeEnclaves(f *testing.F) {
	addSeeds(f, "nitro-cli")
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := ParseDescribeEnclaves(data)
		if err != nil {
			if list != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		for _, e := range list {
			if e.EnclaveID == "" || (e.State != StateRunning && e.State != StateTerminating && e.State != StateEmpty) || (e.Flags != FlagsNone && e.Flags != FlagsDebugMode) {
				t.Fatalf("accepted %+v", e)
			}
		}
	})
}

// FuzzParseProxyArgs reads a /proc cmdline: on success, the arguments
// written back canonically parse to the same values.
func FuzzParseProxyArgs(f *testing.F) {
	addSeeds(f, "cmdline")
	f.Fuzz(func(t *testing.T, data []byte) {
		argv := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		a, err := ParseProxyArgs(argv)
		if err != nil {
			return
		}
		canon := []string{"vsock-proxy", "-w", fmt.Sprint(a.Workers), "--config", a.Config, "--", fmt.Sprint(a.LocalPort), a.RemoteAddr, fmt.Sprint(a.RemotePort)}
		b, err := ParseProxyArgs(canon)
		if err != nil || b != a {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", argv, b, err, a)
		}
	})
}

// FuzzParseAllowlist: no panic; nil on error; on success every entry has
// an address and a port in range.
func FuzzParseAllowlist(f *testing.F) {
	addSeeds(f, "allowlist")
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := ParseAllowlist(data)
		if err != nil {
			if list != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		for _, e := range list {
			if e.Address == "" || e.Port < 0 || e.Port > 65535 {
				t.Fatalf("accepted %+v", e)
			}
		}
	})
}

package doctor

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

func argv(t *testing.T, name string) []string {
	return strings.Split(strings.TrimRight(string(fixture(t, "cmdline/"+name)), "\x00"), "\x00")
}

func TestParseProxyArgs(t *testing.T) {
	def := DefaultProxyConfig
	tests := []struct {
		name string
		argv []string
		want ProxyArgs
		err  string
	}{
		{name: "systemd unit", argv: argv(t, "systemd-unit.cmdline"),
			want: ProxyArgs{8000, "kms.us-east-1.amazonaws.com", 443, "/etc/nitro_enclaves/vsock-proxy.yaml", 4}},
		{name: "zh guide", argv: argv(t, "zh-guide-5000.cmdline"),
			want: ProxyArgs{5000, "kms.us-east-1.amazonaws.com", 443, def, 4}},
		{name: "workers", argv: argv(t, "other-region.cmdline"),
			want: ProxyArgs{8000, "kms.eu-west-1.amazonaws.com", 443, def, 8}},
		{name: "--config=", argv: argv(t, "imds.cmdline"),
			want: ProxyArgs{8001, "169.254.169.254", 80, "/etc/nitro_enclaves/imds.yaml", 4}},
		{name: "relative config first", argv: argv(t, "relative-config.cmdline"),
			want: ProxyArgs{8000, "kms.us-east-1.amazonaws.com", 443, "vsock.yaml", 4}},
		{name: "-w8 -4 --num_workers=2", argv: []string{"vsock-proxy", "-w8", "-4", "8000", "--num_workers=2", "kms.us-east-1.amazonaws.com", "443"},
			want: ProxyArgs{8000, "kms.us-east-1.amazonaws.com", 443, def, 2}},
		{name: "double dash", argv: []string{"vsock-proxy", "--ipv6", "--", "8000", "kms.us-east-1.amazonaws.com", "443"},
			want: ProxyArgs{8000, "kms.us-east-1.amazonaws.com", 443, def, 4}},
		{name: "missing port", argv: argv(t, "missing-port.cmdline"), err: "2 positional arguments, want 3"},
		{name: "unknown option", argv: []string{"vsock-proxy", "--verbose", "8000", "h", "443"}, err: `unknown option "--verbose"`},
		{name: "config without value", argv: []string{"vsock-proxy", "8000", "h", "443", "--config"}, err: "--config needs a value"},
		{name: "bad workers", argv: []string{"vsock-proxy", "-w", "0", "8000", "h", "443"}, err: `-w "0": want a positive number`},
		{name: "local port", argv: []string{"vsock-proxy", "vsock", "h", "443"}, err: `local port "vsock": want a number`},
		{name: "remote port too big", argv: []string{"vsock-proxy", "8000", "h", "65536"}, err: "remote port \"65536\""},
		{name: "flag with value", argv: []string{"vsock-proxy", "--ipv4=yes", "8000", "h", "443"}, err: "--ipv4 takes no value"},
		{name: "empty", argv: nil, err: "empty command line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProxyArgs(tt.argv)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseAllowlist(t *testing.T) {
	tests := []struct {
		file string
		want []AllowEntry
		err  string
	}{
		{file: "block-style.yaml", want: []AllowEntry{{"kms.us-east-1.amazonaws.com", 443}}},
		{file: "with-imds.yaml", want: []AllowEntry{{"kms.us-east-1.amazonaws.com", 443}, {"169.254.169.254", 80}}},
		{file: "wildcard.yaml", want: []AllowEntry{{"kms.us-east-1.amazonaws.com", 443}, {"*.amazonaws.com", 443}}},
		{file: "port-string.yaml", err: "allowlist entry 0 (line 2): no port, or not an integer"},
		{file: "no-allowlist.yaml", err: "no allowlist key"},
		{file: "not-a-list.yaml", err: "allowlist (line 1) is not a list"},
		{file: "no-address.yaml", err: "allowlist entry 0 (line 2): no address"},
		{file: "empty.yaml", err: "empty file"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseAllowlist(fixture(t, "allowlist/"+tt.file))
			if tt.err != "" {
				if err == nil || got != nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, %v\nwant nil and an error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, %v\nwant %v", got, err, tt.want)
			}
		})
	}
	def, err := ParseAllowlist(fixture(t, "allowlist/default-style.yaml"))
	if err != nil || len(def) != 7 || def[1] != (AllowEntry{"kms-fips.us-east-1.amazonaws.com", 443}) {
		t.Errorf("default-style: %v, %v", def, err)
	}
	for _, in := range []string{"allowlist:\n- {address: a, port: 70000}\n", "allowlist:\n- {address: a, port: -1}\n"} {
		if _, err := ParseAllowlist([]byte(in)); err == nil || !strings.Contains(err.Error(), "want 0 to 65535") {
			t.Errorf("%q: %v, want a port range error", in, err)
		}
	}
	// Anchors and aliases resolve; a billion-laughs document costs nothing
	// (aliases are followed, never expanded) and is refused: its entries
	// are lists, not {address, port}.
	if got, err := ParseAllowlist([]byte("k: &e {address: kms.us-east-1.amazonaws.com, port: 443}\nallowlist: [*e]\n")); err != nil || len(got) != 1 {
		t.Errorf("alias: %v, %v", got, err)
	}
	laughs := "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nallowlist: *g\n"
	if got, err := ParseAllowlist([]byte(laughs)); err == nil {
		t.Errorf("billion laughs parsed into %d entries", len(got))
	}
}

func TestKMSRegion(t *testing.T) {
	for host, want := range map[string]string{
		"kms.us-east-1.amazonaws.com":          "us-east-1",
		"KMS.eu-west-1.amazonaws.com":          "eu-west-1",
		"kms-fips.us-gov-west-1.amazonaws.com": "us-gov-west-1 fips",
		"kms.cn-north-1.amazonaws.com.cn":      "cn-north-1",
		"kms.amazonaws.com":                    "",
		"sts.us-east-1.amazonaws.com":          "",
		"kms.*.amazonaws.com":                  "",
		"kms.us-east-1.amazonaws.com.evil.io":  "",
		"169.254.169.254":                      "",
	} {
		r, fips, ok := kmsRegion(host)
		got := r
		if fips {
			got += " fips"
		}
		if !ok {
			got = ""
		}
		if got != want {
			t.Errorf("kmsRegion(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestCheckVsockProxy(t *testing.T) {
	tests := []struct {
		name      string
		procs     map[string]string // pid → cmdline fixture
		allowlist string            // fixture at the default path
		extra     fstest.MapFS      // more files in the root or /proc
		region    string
		port      uint32
		wants     []want
	}{
		{name: "systemd unit, default allowlist", procs: map[string]string{"1": "sshd.cmdline", "812": "systemd-unit.cmdline"},
			allowlist: "default-style.yaml", region: "us-east-1",
			wants: []want{
				{OK, "pid 812 listens on vsock port 8000 (CID 3) and forwards to kms.us-east-1.amazonaws.com:443", ""},
				{OK, "allowlist /etc/nitro_enclaves/vsock-proxy.yaml admits kms.us-east-1.amazonaws.com:443 (7 entries)", ""},
			}},
		{name: "no proxy", procs: map[string]string{"1": "sshd.cmdline"}, region: "us-east-1",
			wants: []want{{Error, "no vsock-proxy process running", "vsock-proxy 8000 kms.us-east-1.amazonaws.com 443"}}},
		{name: "guide's port 5000", procs: map[string]string{"900": "zh-guide-5000.cmdline"}, allowlist: "block-style.yaml", region: "us-east-1",
			wants: []want{
				{Error, "the KMS proxy (pid 900) listens on vsock port 5000, but signerd's --kms-proxy uses port 8000", "--kms-proxy vsock://3:5000"},
				{OK, "admits kms.us-east-1.amazonaws.com:443 (1 entry)", ""},
			}},
		{name: "guide's port 5000 configured", procs: map[string]string{"900": "zh-guide-5000.cmdline"}, allowlist: "block-style.yaml", region: "us-east-1", port: 5000,
			wants: []want{{OK, "pid 900 listens on vsock port 5000", ""}, {OK, "admits kms.us-east-1.amazonaws.com:443 (1 entry)", ""}}},
		{name: "only a non-KMS proxy on another port", procs: map[string]string{"77": "imds.cmdline"}, region: "us-east-1",
			wants: []want{{Error, "no vsock-proxy listens on port 8000 (signerd's --kms-proxy); running: port 8001 → 169.254.169.254:80", "vsock-proxy 8000"}}},
		{name: "other region", procs: map[string]string{"5": "other-region.cmdline"}, allowlist: "default-style.yaml", region: "us-east-1",
			wants: []want{
				{Error, "forwards to kms.eu-west-1.amazonaws.com:443, but the region is us-east-1", "--region eu-west-1"},
				{OK, "admits kms.eu-west-1.amazonaws.com:443", ""},
			}},
		{name: "region unknown: taken from the proxy", procs: map[string]string{"812": "systemd-unit.cmdline"}, allowlist: "block-style.yaml",
			wants: []want{{OK, "(region taken from the proxy", ""}, {OK, "admits", ""}}},
		{name: "allowlist with IMDS and an IMDS proxy", procs: map[string]string{"812": "systemd-unit.cmdline", "813": "imds.cmdline"},
			allowlist: "with-imds.yaml", region: "us-east-1",
			wants: []want{
				{OK, "forwards to kms.us-east-1.amazonaws.com:443", ""},
				{Warning, "another vsock-proxy (pid 813) forwards vsock port 8001 to 169.254.169.254:80", "signerd needs only KMS"},
				{OK, "admits kms.us-east-1.amazonaws.com:443", ""},
				{Warning, "admits more than KMS: 169.254.169.254:80 (the instance metadata service", "remove those entries"},
			}},
		{name: "wildcard", procs: map[string]string{"812": "systemd-unit.cmdline"}, allowlist: "wildcard.yaml", region: "us-east-1",
			wants: []want{{OK, "forwards", ""}, {OK, "admits", ""}, {Warning, "*.amazonaws.com:443 (a wildcard", "remove those entries"}}},
		{name: "allowlist lacks the region", procs: map[string]string{"812": "systemd-unit.cmdline"}, allowlist: "other-region-only.yaml", region: "us-east-1",
			wants: []want{{OK, "forwards", ""}, {Error, "does not name kms.us-east-1.amazonaws.com:443", "{address: kms.us-east-1.amazonaws.com, port: 443}"}}},
		{name: "allowlist missing", procs: map[string]string{"812": "systemd-unit.cmdline"}, region: "us-east-1",
			wants: []want{{OK, "forwards", ""}, {Error, "allowlist /etc/nitro_enclaves/vsock-proxy.yaml does not exist", "allowlist: [{address: kms.us-east-1.amazonaws.com, port: 443}]"}}},
		{name: "allowlist broken", procs: map[string]string{"812": "systemd-unit.cmdline"}, allowlist: "port-string.yaml", region: "us-east-1",
			wants: []want{{OK, "forwards", ""}, {Error, "not an integer", "vsock-proxy refuses to start"}}},
		{name: "relative config through cwd", procs: map[string]string{"812": "relative-config.cmdline"}, region: "us-east-1",
			extra: fstest.MapFS{"proc:812/cwd/vsock.yaml": {Data: []byte("allowlist:\n- {address: kms.us-east-1.amazonaws.com, port: 443}\n")}},
			wants: []want{{OK, "forwards", ""}, {OK, "allowlist vsock.yaml admits", ""}}},
		{name: "unreadable arguments", procs: map[string]string{"812": "systemd-unit.cmdline", "99": "missing-port.cmdline"}, allowlist: "block-style.yaml", region: "us-east-1",
			wants: []want{
				{Error, "vsock-proxy pid 99: cannot read its arguments (8000 kms.us-east-1.amazonaws.com): 2 positional arguments", "usage: vsock-proxy"},
				{OK, "pid 812", ""}, {OK, "admits", ""},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc, root := procFS(t, tt.procs), rootFS(t, tt.allowlist)
			for k, v := range tt.extra {
				if p, ok := strings.CutPrefix(k, "proc:"); ok {
					proc[p] = v
				} else {
					root[k] = v
				}
			}
			f := checkVsockProxy(context.Background(), &Config{ProcFS: proc, RootFS: root, KMSProxyPort: tt.port}, tt.region)
			checkResults(t, f.results, tt.wants)
		})
	}
	t.Run("no procfs", func(t *testing.T) {
		checkResults(t, checkVsockProxy(context.Background(), &Config{}, "").results, []want{{Skipped, "no /proc", ""}})
	})
	t.Run("region from proxy", func(t *testing.T) {
		f := checkVsockProxy(context.Background(), &Config{ProcFS: procFS(t, map[string]string{"812": "other-region.cmdline"}), RootFS: rootFS(t, "default-style.yaml")}, "")
		if f.region != "eu-west-1" {
			t.Errorf("region = %q, want eu-west-1 from the proxy's remote", f.region)
		}
	})
}

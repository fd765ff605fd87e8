package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	// go.yaml.in/yaml/v3 is the YAML organisation's maintained
	// continuation of gopkg.in/yaml.v3 (archived), with the same API. It
	// keeps YAML's types (port 443 is an !!int, "443" a string, as
	// vsock-proxy's yaml-rust sees them), which sigs.k8s.io/yaml's
	// YAML-to-JSON conversion would blur, and it bounds alias expansion.
	"go.yaml.in/yaml/v3"
)

// ProxyArgs are a vsock-proxy process's arguments:
// vsock-proxy [-4|-6] [-w N] [--config FILE] <local_port> <remote_addr> <remote_port>.
type ProxyArgs struct {
	LocalPort  uint32 // the vsock port it listens on (CID 3)
	RemoteAddr string
	RemotePort uint16
	// Config is the allowlist file: --config, else DefaultProxyConfig.
	Config  string
	Workers int // -w/--num_workers, default 4
}

// ParseProxyArgs reads vsock-proxy's command line (argv[0] included) as
// its clap parser does: -4/--ipv4, -6/--ipv6, -w/--num_workers N and
// --config FILE (also -wN, -w=N, --name=value) anywhere, "--" ending
// options, and exactly three positional arguments.
func ParseProxyArgs(argv []string) (ProxyArgs, error) {
	a := ProxyArgs{Config: DefaultProxyConfig, Workers: 4}
	if len(argv) == 0 {
		return a, errors.New("empty command line")
	}
	var pos []string
	args := argv[1:]
	value := func(i *int, name, inline string, hasInline bool) (string, error) {
		if hasInline {
			return inline, nil
		}
		if *i+1 >= len(args) {
			return "", fmt.Errorf("%s needs a value", name)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			pos = append(pos, arg)
			continue
		}
		name, inline, hasInline := strings.Cut(arg, "=")
		if !strings.HasPrefix(arg, "--") && len(arg) > 2 && !hasInline {
			name, inline, hasInline = arg[:2], arg[2:], true // -w8
		}
		switch name {
		case "-4", "--ipv4", "-6", "--ipv6":
			if hasInline {
				return a, fmt.Errorf("%s takes no value", name)
			}
		case "-w", "--num_workers":
			v, err := value(&i, name, inline, hasInline)
			if err != nil {
				return a, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return a, fmt.Errorf("%s %q: want a positive number of workers", name, v)
			}
			a.Workers = n
		case "--config":
			v, err := value(&i, name, inline, hasInline)
			if err != nil {
				return a, err
			}
			if v == "" {
				return a, errors.New("--config: empty file name")
			}
			a.Config = v
		default:
			return a, fmt.Errorf("unknown option %q", oneLine(name, 40))
		}
	}
	if len(pos) != 3 {
		return a, fmt.Errorf("%d positional arguments, want 3: <local_port> <remote_addr> <remote_port>", len(pos))
	}
	lp, err := strconv.ParseUint(pos[0], 10, 32)
	if err != nil {
		return a, fmt.Errorf("local port %q: want a number", oneLine(pos[0], 20))
	}
	rp, err := strconv.ParseUint(pos[2], 10, 16)
	if err != nil {
		return a, fmt.Errorf("remote port %q: want a number from 0 to 65535", oneLine(pos[2], 20))
	}
	if pos[1] == "" {
		return a, errors.New("empty remote address")
	}
	a.LocalPort, a.RemoteAddr, a.RemotePort = uint32(lp), pos[1], uint16(rp)
	return a, nil
}

// AllowEntry is one entry of a vsock-proxy allowlist.
type AllowEntry struct {
	Address string
	Port    int
}

func (e AllowEntry) String() string { return net2(e.Address, e.Port) }

func net2(host string, port int) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// maxAllowlist bounds an allowlist file: AWS's default, every region's KMS
// endpoints, is 3 KB.
const maxAllowlist = 1 << 20

// ParseAllowlist reads a vsock-proxy configuration file: YAML whose first
// document is a mapping with "allowlist", a list of {address: string,
// port: integer}. Like vsock-proxy, it ignores other keys.
func ParseAllowlist(data []byte) ([]AllowEntry, error) {
	if len(data) > maxAllowlist {
		return nil, fmt.Errorf("%d bytes, more than %d", len(data), maxAllowlist)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file: want an allowlist: list of {address, port}")
		}
		return nil, fmt.Errorf("not YAML: %s", oneLine(err.Error(), 200))
	}
	if len(doc.Content) != 1 || deref(doc.Content[0]).Kind != yaml.MappingNode {
		return nil, errors.New("want a mapping with an allowlist: key at the top")
	}
	list := mapGet(deref(doc.Content[0]), "allowlist")
	if list == nil {
		return nil, errors.New("no allowlist key")
	}
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("allowlist (line %d) is not a list", list.Line)
	}
	var out []AllowEntry
	for i, item := range list.Content {
		item = deref(item)
		if item.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("allowlist entry %d (line %d): want a mapping {address, port}", i, item.Line)
		}
		addr, port := mapGet(item, "address"), mapGet(item, "port")
		if addr == nil || addr.Kind != yaml.ScalarNode || addr.ShortTag() != "!!str" || addr.Value == "" {
			return nil, fmt.Errorf("allowlist entry %d (line %d): no address, or not a string", i, item.Line)
		}
		if port == nil || port.Kind != yaml.ScalarNode || port.ShortTag() != "!!int" {
			return nil, fmt.Errorf("allowlist entry %d (line %d): no port, or not an integer", i, item.Line)
		}
		var n int
		if err := port.Decode(&n); err != nil || n < 0 || n > 65535 {
			return nil, fmt.Errorf("allowlist entry %d (line %d): port %s, want 0 to 65535", i, item.Line, oneLine(port.Value, 20))
		}
		out = append(out, AllowEntry{Address: addr.Value, Port: n})
	}
	return out, nil
}

// deref follows alias nodes (bounded: the decoder refuses cycles).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// mapGet returns the value of key in mapping m (its last occurrence, as
// yaml-rust's hash keeps it), nil when absent.
func mapGet(m *yaml.Node, key string) *yaml.Node {
	var v *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := deref(m.Content[i]); k.Kind == yaml.ScalarNode && k.Value == key {
			v = deref(m.Content[i+1])
		}
	}
	return v
}

// KMSHost returns KMS's regional endpoint host name, the one signerd's TLS
// connection names and the proxy must forward to.
func KMSHost(region string) string { return "kms." + region + ".amazonaws.com" }

// kmsRegion returns the region of a KMS endpoint host name
// (kms[-fips].REGION.amazonaws.com[.cn]).
func kmsRegion(host string) (region string, fips, ok bool) {
	h := strings.ToLower(host)
	h, cn := strings.CutSuffix(h, ".amazonaws.com.cn")
	if !cn {
		var found bool
		if h, found = strings.CutSuffix(h, ".amazonaws.com"); !found {
			return "", false, false
		}
	}
	rest, ok := strings.CutPrefix(h, "kms-fips.")
	if ok {
		fips = true
	} else if rest, ok = strings.CutPrefix(h, "kms."); !ok {
		return "", false, false
	}
	if rest == "" || strings.ContainsAny(rest, ".*?") {
		return "", false, false
	}
	return rest, fips, true
}

type proxyProcess struct {
	pid  string
	argv []string
	args ProxyArgs
	err  error
}

type proxyFacts struct {
	results []Result
	region  string // from the KMS proxy's remote, when the region was unknown
}

// findProxies lists the vsock-proxy processes in procFS.
func findProxies(procFS fs.FS) ([]proxyProcess, error) {
	entries, err := fs.ReadDir(procFS, ".")
	if err != nil {
		return nil, err
	}
	var out []proxyProcess
	for _, d := range entries {
		pid := d.Name()
		if _, err := strconv.ParseUint(pid, 10, 32); err != nil {
			continue
		}
		b, err := fs.ReadFile(procFS, pid+"/cmdline")
		if err != nil || len(b) == 0 {
			continue // gone, or a kernel thread
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if path.Base(argv[0]) != "vsock-proxy" {
			continue
		}
		p := proxyProcess{pid: pid, argv: argv}
		p.args, p.err = ParseProxyArgs(argv)
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b proxyProcess) int {
		x, _ := strconv.Atoi(a.pid)
		y, _ := strconv.Atoi(b.pid)
		return x - y
	})
	return out, nil
}

func checkVsockProxy(_ context.Context, cfg *Config, region string) proxyFacts {
	port := cfg.proxyPort()
	res := func(s Status, fix, format string, a ...any) Result {
		return Result{Check: CheckVsockProxy, Status: s, Message: fmt.Sprintf(format, a...), Fix: fix}
	}
	var f proxyFacts
	if cfg.ProcFS == nil {
		f.results = append(f.results, res(Skipped, "", "no /proc to read configured"))
		return f
	}
	wantHost := "kms.<region>.amazonaws.com"
	if region != "" {
		wantHost = KMSHost(region)
	}
	startFix := fmt.Sprintf("start it: sudo systemctl enable --now nitro-enclaves-vsock-proxy (it runs vsock-proxy 8000 kms.<region>.amazonaws.com 443), or vsock-proxy %d %s 443 --config %s", port, wantHost, DefaultProxyConfig)
	procs, err := findProxies(cfg.ProcFS)
	if err != nil {
		f.results = append(f.results, res(Error, "run doctor on the parent instance itself, with /proc mounted", "cannot list processes: %v", err))
		return f
	}
	if len(procs) == 0 {
		f.results = append(f.results, res(Error, startFix, "no vsock-proxy process running: the enclave cannot reach KMS"))
		return f
	}
	var kms *proxyProcess
	for i := range procs {
		p := &procs[i]
		if p.err != nil {
			f.results = append(f.results, res(Error, "vsock-proxy refuses these arguments; usage: vsock-proxy [-w N] [--config FILE] <local_port> <remote_addr> <remote_port>",
				"vsock-proxy pid %s: cannot read its arguments (%s): %v", p.pid, oneLine(strings.Join(p.argv[1:], " "), 200), p.err))
			continue
		}
		if p.args.LocalPort == port && kms == nil {
			kms = p
		}
	}
	portMismatch := false
	if kms == nil {
		var others []string
		for i := range procs {
			p := &procs[i]
			if p.err != nil {
				continue
			}
			others = append(others, fmt.Sprintf("port %d → %s", p.args.LocalPort, net2(p.args.RemoteAddr, int(p.args.RemotePort))))
			if _, _, ok := kmsRegion(p.args.RemoteAddr); ok && kms == nil {
				kms = p
			}
		}
		if kms == nil {
			if len(others) > 0 {
				f.results = append(f.results, res(Error, startFix,
					"no vsock-proxy listens on port %d (signerd's --kms-proxy); running: %s", port, strings.Join(others, ", ")))
			}
			return f
		}
		// A KMS proxy on another port: say so, then check it all the same.
		portMismatch = true
		f.results = append(f.results, res(Error,
			fmt.Sprintf("make the two agree: start signerd with --kms-proxy vsock://3:%d (then run doctor with --kms-proxy-port %d), or run the proxy on port %d", kms.args.LocalPort, kms.args.LocalPort, port),
			"the KMS proxy (pid %s) listens on vsock port %d, but signerd's --kms-proxy uses port %d", kms.pid, kms.args.LocalPort, port))
	}

	a := kms.args
	remote := net2(a.RemoteAddr, int(a.RemotePort))
	remoteRegion, fips, isKMS := kmsRegion(a.RemoteAddr)
	note := ""
	if region == "" && isKMS {
		note = " (region taken from the proxy: no --region, and IMDS did not say)"
		f.region = remoteRegion
	}
	switch {
	case !isKMS:
		f.results = append(f.results, res(Error,
			fmt.Sprintf("run the proxy on port %d to %s 443 (the enclave speaks TLS to KMS through it)", port, wantHost),
			"vsock-proxy pid %s on port %d forwards to %s, not to KMS", kms.pid, kms.args.LocalPort, remote))
	case a.RemotePort != 443:
		f.results = append(f.results, res(Error, fmt.Sprintf("restart it as vsock-proxy %d %s 443", port, a.RemoteAddr),
			"vsock-proxy pid %s forwards to %s: KMS answers HTTPS on port 443", kms.pid, remote))
	case region != "" && !strings.EqualFold(remoteRegion, region):
		f.results = append(f.results, res(Error,
			fmt.Sprintf("restart it as vsock-proxy %d %s 443, or pass --region %s if the key lives there", port, wantHost, remoteRegion),
			"vsock-proxy pid %s forwards to %s, but the region is %s (--region, else the instance's)", kms.pid, remote, region))
	case fips:
		f.results = append(f.results, res(Warning,
			fmt.Sprintf("restart it as vsock-proxy %d %s 443 unless signerd is built for the FIPS endpoint", port, KMSHost(remoteRegion)),
			"vsock-proxy pid %s forwards to the FIPS endpoint %s; signerd's TLS names kms.%s.amazonaws.com", kms.pid, remote, remoteRegion))
	case portMismatch:
		// Reported above.
	default:
		f.results = append(f.results, res(OK, "", "pid %s listens on vsock port %d (CID 3) and forwards to %s%s", kms.pid, port, remote, note))
	}

	// Other proxies widen what the enclave can reach.
	for _, p := range procs {
		if p.err != nil || p.pid == kms.pid {
			continue
		}
		if _, _, ok := kmsRegion(p.args.RemoteAddr); ok && p.args.RemotePort == 443 {
			continue
		}
		f.results = append(f.results, res(Warning,
			"stop it unless the enclave needs that service; signerd needs only KMS",
			"another vsock-proxy (pid %s) forwards vsock port %d to %s: the enclave can reach it too", p.pid, p.args.LocalPort, net2(p.args.RemoteAddr, int(p.args.RemotePort))))
	}

	f.results = append(f.results, checkAllowlist(cfg, kms)...)
	return f
}

// readProxyFile reads a vsock-proxy's --config file: an absolute path from
// the root file system, a relative one from the process's working
// directory (/proc/PID/cwd).
func readProxyFile(cfg *Config, p *proxyProcess) ([]byte, error) {
	name := p.args.Config
	var fsys fs.FS
	var rel string
	if strings.HasPrefix(name, "/") {
		fsys, rel = cfg.RootFS, path.Clean(name)[1:]
	} else {
		fsys, rel = cfg.ProcFS, p.pid+"/cwd/"+path.Clean(name)
	}
	if fsys == nil {
		return nil, errors.New("no file system to read it from")
	}
	f, err := fsys.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, maxAllowlist+1)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func checkAllowlist(cfg *Config, p *proxyProcess) []Result {
	res := func(s Status, fix, format string, a ...any) Result {
		return Result{Check: CheckVsockProxy, Status: s, Message: fmt.Sprintf(format, a...), Fix: fix}
	}
	file := p.args.Config
	host := p.args.RemoteAddr
	wantEntry := fmt.Sprintf("{address: %s, port: %d}", host, p.args.RemotePort)
	data, err := readProxyFile(cfg, p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return []Result{res(Error,
				fmt.Sprintf("create %s holding allowlist: [%s] (the package's default file lists every region's KMS endpoint); vsock-proxy refuses to start without it", file, wantEntry),
				"allowlist %s does not exist: the running proxy would not start again", file)}
		}
		return []Result{res(Error, "run doctor as root (sudo signer doctor …) or check the file's permissions",
			"cannot read allowlist %s: %v", file, err)}
	}
	entries, err := ParseAllowlist(data)
	if err != nil {
		return []Result{res(Error,
			fmt.Sprintf("fix %s: it must read allowlist: followed by entries like %s; vsock-proxy refuses to start otherwise", file, wantEntry),
			"allowlist %s: %v", file, err)}
	}
	var out []Result
	admitted := slices.ContainsFunc(entries, func(e AllowEntry) bool {
		return e.Address == host && e.Port == int(p.args.RemotePort)
	})
	if admitted {
		count := fmt.Sprintf("%d entries", len(entries))
		if len(entries) == 1 {
			count = "1 entry"
		}
		out = append(out, res(OK, "", "allowlist %s admits %s (%s)", file, net2(host, int(p.args.RemotePort)), count))
	} else {
		out = append(out, res(Error,
			fmt.Sprintf("add the entry %s to the allowlist in %s and restart the proxy (sudo systemctl restart nitro-enclaves-vsock-proxy)", wantEntry, file),
			"allowlist %s does not name %s: the proxy would refuse to start again (it started when the file differed, or matched the name by IP address, which doctor does not resolve)", file, net2(host, int(p.args.RemotePort))))
	}
	var extra []string
	for _, e := range entries {
		if _, _, ok := kmsRegion(e.Address); ok && e.Port == 443 {
			continue // any KMS endpoint: the default file lists them all
		}
		why := "not KMS"
		switch {
		case e.Address == "169.254.169.254" || strings.EqualFold(e.Address, "fd00:ec2::254"):
			why = "the instance metadata service: a proxy to it hands the instance role's credentials to whatever asks"
		case strings.ContainsAny(e.Address, "*?"):
			why = "a wildcard: vsock-proxy matches names exactly, so this entry admits nothing, or everything to a reader that expands it"
		case e.Address == "0.0.0.0" || e.Address == "::":
			why = "the any-address"
		}
		extra = append(extra, fmt.Sprintf("%s (%s)", e, why))
	}
	if len(extra) > 0 {
		out = append(out, res(Warning,
			fmt.Sprintf("remove those entries from %s unless a proxy needs them: signerd needs only %s", file, net2(host, int(p.args.RemotePort))),
			"allowlist %s admits more than KMS: %s", file, strings.Join(extra, "; ")))
	}
	return out
}

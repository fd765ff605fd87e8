package repro

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/enclave-signer/enclave-signer/internal/shim"
)

// Where deploy/README.md installs the files, as the units name them.
const (
	shimConfigPath  = "/etc/enclave-signer/shim.json"
	allowlistPath   = "/etc/enclave-signer/vsock-proxy.yaml"
	eifInstallPath  = "/opt/enclave-signer/enclave-signer.eif"
	proxyUnit       = "deploy/systemd/enclave-signer-vsock-proxy.service"
	enclaveUnit     = "deploy/systemd/enclave-signer-enclave.service"
	shimUnit        = "deploy/systemd/enclave-signer-shim.service"
	awsProxyUnit    = "nitro-enclaves-vsock-proxy.service"
	allocatorUnit   = "nitro-enclaves-allocator.service"
	k8sDir          = "deploy/kubernetes"
	k8sConfigMap    = "enclave-signer-config"
	k8sConfigMount  = "/etc/enclave-signer"
	deviceResource  = "aws.ec2.nitro/nitro_enclaves"
	hugepageResName = "hugepages-2Mi"
)

// checkDockerfile checks Dockerfile.enclave: one stage FROM scratch, only
// signerd copied with a fixed mode, the production command line.
func checkDockerfile(data []byte) error {
	ins, err := parseDockerfile(data)
	if err != nil {
		return err
	}
	if len(ins) == 0 || ins[0].cmd != "FROM" {
		return errors.New("want FROM as the first instruction")
	}
	var errs []error
	var copies, entry, cmd []instruction
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			if in.args != "scratch" {
				errs = append(errs, fmt.Errorf("line %d: FROM %s: want FROM scratch, one stage", in.line, in.args))
			}
			if in.line != ins[0].line {
				errs = append(errs, fmt.Errorf("line %d: a second FROM: want one stage", in.line))
			}
		case "ARG", "ENV":
		case "COPY":
			copies = append(copies, in)
		case "ENTRYPOINT":
			entry = append(entry, in)
		case "CMD":
			cmd = append(cmd, in)
		default:
			errs = append(errs, fmt.Errorf("line %d: %s: want only FROM, ARG, ENV, COPY, ENTRYPOINT and CMD", in.line, in.cmd))
		}
	}
	if len(copies) != 1 {
		errs = append(errs, fmt.Errorf("%d COPY instructions, want one (signerd)", len(copies)))
	} else if f := strings.Fields(copies[0].args); len(f) != 3 || f[0] != "--chmod=0755" || f[2] != "/signerd" {
		errs = append(errs, fmt.Errorf("line %d: COPY %s: want COPY --chmod=0755 SIGNERD /signerd", copies[0].line, copies[0].args))
	}
	if len(entry) != 1 {
		errs = append(errs, fmt.Errorf("%d ENTRYPOINT instructions, want one", len(entry)))
	} else if v, err := jsonArgs(entry[0]); err != nil {
		errs = append(errs, err)
	} else if !slices.Equal(v, []string{"/signerd"}) {
		errs = append(errs, fmt.Errorf("ENTRYPOINT %q, want [\"/signerd\"]", v))
	}
	if len(cmd) != 1 {
		errs = append(errs, fmt.Errorf("%d CMD instructions, want one", len(cmd)))
	} else if v, err := jsonArgs(cmd[0]); err != nil {
		errs = append(errs, err)
	} else if !slices.Equal(v, productionCmd) {
		errs = append(errs, fmt.Errorf("CMD %q, want the production flags %q", v, productionCmd))
	}
	return errors.Join(errs...)
}

func TestDockerfile(t *testing.T) {
	data := readFile(t, "Dockerfile.enclave")
	if err := checkDockerfile(data); err != nil {
		t.Fatalf("Dockerfile.enclave: %v", err)
	}
	// The ARG default is the path make image passes for amd64.
	ins, _ := parseDockerfile(data)
	var argDefault string
	for _, in := range ins {
		if name, def, ok := strings.Cut(in.args, "="); in.cmd == "ARG" && ok && name == "SIGNERD" {
			argDefault = def
		}
	}
	bud := commandWith(t, dryRun(t, "image", "ENCLAVE_GOARCH=amd64"), "buildah --storage-driver vfs bud ")
	if want := "--build-arg SIGNERD=" + argDefault; argDefault == "" || !strings.Contains(bud, want) {
		t.Errorf("Dockerfile.enclave's ARG SIGNERD default %q is not what make image passes: %s", argDefault, bud)
	}
	// Each pin is a build argument, empty by default, that make image
	// passes and an ENV signerd reads sets from.
	envs := map[string]string{}
	args := map[string]string{}
	for _, in := range ins {
		name, val, _ := strings.Cut(in.args, "=")
		switch in.cmd {
		case "ENV":
			envs[name] = val
		case "ARG":
			args[name] = val
		}
	}
	for arg, env := range pinVars {
		if def, ok := args[arg]; !ok || def != "" {
			t.Errorf("Dockerfile.enclave: want ARG %s= (empty: unpinned), got %q (declared %v)", arg, def, ok)
		}
		if envs[env] != "${"+arg+"}" {
			t.Errorf("Dockerfile.enclave: want ENV %s=${%s}, got %q", env, arg, envs[env])
		}
		if !strings.Contains(bud, "--build-arg '"+arg+"=' ") && !strings.HasSuffix(bud, "--build-arg '"+arg+"='") {
			t.Errorf("make image does not pass --build-arg '%s=…': %s", arg, bud)
		}
	}
}

// pinVars maps make image's pin variables (build arguments) to the
// environment variables of the image that signerd reads.
var pinVars = map[string]string{
	"KMS_KEYS":          "SIGNERD_KMS_KEYS",
	"KEYRING_SIGNERS":   "SIGNERD_KEYRING_SIGNERS",
	"KEYRING_THRESHOLD": "SIGNERD_KEYRING_THRESHOLD",
	"REQUIRE_AUTH":      "SIGNERD_REQUIRE_AUTH",
	"AUDIT_OVERFLOW":    "SIGNERD_AUDIT_OVERFLOW",
}

func TestCheckDockerfileRefuses(t *testing.T) {
	good := string(readFile(t, "Dockerfile.enclave"))
	tests := []struct {
		name, old, new, want string
	}{
		{"base image", "FROM scratch", "FROM alpine", "want FROM scratch"},
		{"builder stage", "FROM scratch", "FROM golang:1.26 AS build\nRUN go build ./enclave\nFROM scratch", "want FROM scratch"},
		{"RUN", "ENTRYPOINT", "RUN true\nENTRYPOINT", "RUN: want only"},
		{"ADD", "ENTRYPOINT", "ADD https://example.com/x /x\nENTRYPOINT", "ADD: want only"},
		{"no chmod", "COPY --chmod=0755 ", "COPY ", "want COPY --chmod=0755"},
		{"copy from stage", "COPY --chmod=0755 ", "COPY --from=build --chmod=0755 ", "want COPY --chmod=0755"},
		{"second file", "ENTRYPOINT", "COPY --chmod=0644 ca.pem /ca.pem\nENTRYPOINT", "2 COPY instructions"},
		{"simulated", `"nsm"`, `"simulated"`, "production flags"},
		{"shell form", `CMD ["--listen"`, `CMD --listen vsock://any:5005 #`, "JSON array"},
		{"shell entrypoint", `ENTRYPOINT ["/signerd"]`, `ENTRYPOINT /signerd`, "JSON array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(good, tt.old) {
				t.Fatalf("Dockerfile.enclave has no %q to replace", tt.old)
			}
			err := checkDockerfile([]byte(strings.Replace(good, tt.old, tt.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// allowEntry is one vsock-proxy allowlist entry.
type allowEntry struct {
	Address string `yaml:"address"`
	Port    int    `yaml:"port"`
}

// parseAllowlist reads a vsock-proxy configuration strictly: one YAML
// document, only the allowlist key, each entry {address: string, port:
// integer} (a quoted "443" is a string, which vsock-proxy refuses).
func parseAllowlist(data []byte) ([]allowEntry, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var doc struct {
		Allowlist []allowEntry `yaml:"allowlist"`
	}
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("allowlist: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("allowlist: more than one YAML document")
	}
	return doc.Allowlist, nil
}

// checkAllowlist checks that a vsock-proxy configuration admits exactly
// kms.<region>.amazonaws.com on port 443.
func checkAllowlist(data []byte, region string) error {
	list, err := parseAllowlist(data)
	if err != nil {
		return err
	}
	want := allowEntry{Address: kmsHost(region), Port: 443}
	if len(list) != 1 || list[0] != want {
		return fmt.Errorf("allowlist %+v: want exactly [%+v]", list, want)
	}
	return nil
}

func kmsHost(region string) string { return "kms." + region + ".amazonaws.com" }

func TestCheckAllowlistRefuses(t *testing.T) {
	good := "allowlist:\n- {address: kms.us-east-1.amazonaws.com, port: 443}\n"
	if err := checkAllowlist([]byte(good), "us-east-1"); err != nil {
		t.Fatalf("the good allowlist: %v", err)
	}
	tests := []struct{ name, data, want string }{
		{"fips too", good + "- {address: kms-fips.us-east-1.amazonaws.com, port: 443}\n", "want exactly"},
		{"imds", good + "- {address: 169.254.169.254, port: 80}\n", "want exactly"},
		{"other region", strings.Replace(good, "us-east-1", "eu-west-1", 1), "want exactly"},
		{"other port", strings.Replace(good, "443", "8443", 1), "want exactly"},
		{"port as string", strings.Replace(good, "443", `"443"`, 1), "cannot unmarshal"},
		{"empty list", "allowlist: []\n", "want exactly"},
		{"misspelt key", "allow_list:\n- {address: kms.us-east-1.amazonaws.com, port: 443}\n", "not found"},
		{"two documents", good + "---\n" + good, "more than one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkAllowlist([]byte(tt.data), "us-east-1")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// vsockAddr splits vsock://CID:PORT.
func vsockAddr(t *testing.T, s string) (cid string, port int) {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "vsock" {
		t.Fatalf("%q: want vsock://CID:PORT", s)
	}
	port, err = strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("%q: port: %v", s, err)
	}
	return u.Hostname(), port
}

// imagePorts returns the ports of signerd's --listen and --kms-proxy in
// Dockerfile.enclave's CMD.
func imagePorts(t *testing.T) (listen, proxy int) {
	t.Helper()
	ins, err := parseDockerfile(readFile(t, "Dockerfile.enclave"))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if in.cmd == "CMD" {
			args, err := jsonArgs(in)
			if err != nil {
				t.Fatal(err)
			}
			_, listen = vsockAddr(t, mustFlag(t, args, "--listen"))
			cid, p := vsockAddr(t, mustFlag(t, args, "--kms-proxy"))
			if cid != "3" {
				t.Fatalf("--kms-proxy CID %s: the proxy runs on the parent, CID 3", cid)
			}
			return listen, p
		}
	}
	t.Fatal("Dockerfile.enclave has no CMD")
	return 0, 0
}

// loadShimConfig parses a shim configuration with the shim's own parser.
func loadShimConfig(t *testing.T, rel string) *shim.Config {
	t.Helper()
	cfg, err := shim.ParseConfig(bytes.NewReader(readFile(t, rel)))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return cfg
}

// loadUnit parses a unit under the repository and checks what every unit
// here needs.
func loadUnit(t *testing.T, rel string) *unit {
	t.Helper()
	u, err := parseUnit(rel, readFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	if u.one(t, "Unit", "Description") == "" {
		t.Errorf("%s: empty Description", rel)
	}
	if wb := u.get("Install", "WantedBy"); !slices.Contains(wb, "multi-user.target") {
		t.Errorf("%s: [Install] WantedBy %q: want multi-user.target, or the unit never starts at boot", rel, wb)
	}
	return u
}

// unitExec returns the arguments of the single key (ExecStart, ExecStop).
func unitExec(t *testing.T, u *unit, key string) []string {
	t.Helper()
	args, err := execArgs(u.one(t, "Service", key))
	if err != nil {
		t.Fatalf("%s: %s: %v", u.path, key, err)
	}
	return args
}

// words returns the space-separated words of every value of key.
func words(u *unit, section, key string) []string {
	var w []string
	for _, v := range u.get(section, key) {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

// proxyArgs reads vsock-proxy's command line (program first): the local
// port, remote host and port, and --config.
func proxyArgs(t *testing.T, args []string) (local int, host string, port int, config string) {
	t.Helper()
	if filepath.Base(args[0]) != "vsock-proxy" {
		t.Fatalf("%q: want vsock-proxy", args)
	}
	var pos []string
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--config":
			if i+1 >= len(args) {
				t.Fatalf("%q: --config without a file", args)
			}
			config = args[i+1]
			i++
		case strings.HasPrefix(a, "-"):
			t.Fatalf("%q: unexpected flag %s", args, a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 3 {
		t.Fatalf("%q: want LOCAL_PORT REMOTE_ADDR REMOTE_PORT", args)
	}
	local, err1 := strconv.Atoi(pos[0])
	port, err2 := strconv.Atoi(pos[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("%q: ports must be numbers", args)
	}
	return local, pos[1], port, config
}

// runEnclaveArgs is what `make run-enclave` passes to nitro-cli with the
// EIF at path (program name dropped).
func runEnclaveArgs(t *testing.T, eif string) []string {
	t.Helper()
	line := commandWith(t, dryRun(t, "run-enclave", "EIF="+eif), "nitro-cli ")
	return strings.Fields(line)[1:]
}

func TestSystemdUnits(t *testing.T) {
	region := loadShimConfig(t, "deploy/shim.example.json").Region
	listenPort, proxyPort := imagePorts(t)

	t.Run("vsock-proxy", func(t *testing.T) {
		u := loadUnit(t, proxyUnit)
		local, host, port, config := proxyArgs(t, unitExec(t, u, "ExecStart"))
		if local != proxyPort {
			t.Errorf("vsock-proxy listens on %d, signerd's --kms-proxy (Dockerfile.enclave) dials port %d", local, proxyPort)
		}
		if host != kmsHost(region) || port != 443 {
			t.Errorf("vsock-proxy forwards to %s:%d, want %s:443 (the shim's region %s)", host, port, kmsHost(region), region)
		}
		if config != allowlistPath {
			t.Errorf("--config %q, want %s (where deploy/README.md installs deploy/vsock-proxy.yaml)", config, allowlistPath)
		}
		if err := checkAllowlist(readFile(t, "deploy/vsock-proxy.yaml"), region); err != nil {
			t.Errorf("deploy/vsock-proxy.yaml: %v", err)
		}
		if !slices.Contains(words(u, "Unit", "Conflicts"), awsProxyUnit) {
			t.Errorf("no Conflicts=%s: both listen on port %d", awsProxyUnit, proxyPort)
		}
		if af := words(u, "Service", "RestrictAddressFamilies"); len(af) > 0 && (!slices.Contains(af, "AF_VSOCK") || !slices.Contains(af, "AF_INET")) {
			t.Errorf("RestrictAddressFamilies %q: the proxy needs AF_VSOCK and AF_INET", af)
		}
	})

	t.Run("enclave", func(t *testing.T) {
		u := loadUnit(t, enclaveUnit)
		if u.one(t, "Service", "Type") != "oneshot" || u.one(t, "Service", "RemainAfterExit") != "yes" {
			t.Errorf("want Type=oneshot and RemainAfterExit=yes: nitro-cli run-enclave returns once the enclave runs")
		}
		start := unitExec(t, u, "ExecStart")
		if start[0] != "/usr/bin/nitro-cli" || !slices.Equal(start[1:], runEnclaveArgs(t, eifInstallPath)) {
			t.Errorf("ExecStart %q\nis not make run-enclave's command (EIF=%s): nitro-cli %q", start, eifInstallPath, runEnclaveArgs(t, eifInstallPath))
		}
		name := mustFlag(t, start, "--enclave-name")
		if stop := unitExec(t, u, "ExecStop"); !slices.Equal(stop, []string{"/usr/bin/nitro-cli", "terminate-enclave", "--enclave-name", name}) {
			t.Errorf("ExecStop %q: want nitro-cli terminate-enclave --enclave-name %s", stop, name)
		}
		cid, port := vsockAddr(t, loadShimConfig(t, "deploy/shim.example.json").Enclave)
		if got := mustFlag(t, start, "--enclave-cid"); got != cid {
			t.Errorf("--enclave-cid %s, but the shim's enclave address names CID %s", got, cid)
		}
		if port != listenPort {
			t.Errorf("the shim dials port %d, signerd listens on %d (Dockerfile.enclave)", port, listenPort)
		}
		if !slices.Contains(words(u, "Unit", "Requires"), allocatorUnit) {
			t.Errorf("no Requires=%s: the enclave's CPUs and memory come from it", allocatorUnit)
		}
	})

	t.Run("shim", func(t *testing.T) {
		u := loadUnit(t, shimUnit)
		if start := unitExec(t, u, "ExecStart"); !slices.Equal(start, []string{"/usr/local/bin/signer", "serve", "--config", shimConfigPath}) {
			t.Errorf("ExecStart %q: want /usr/local/bin/signer serve --config %s", start, shimConfigPath)
		}
		if af := words(u, "Service", "RestrictAddressFamilies"); !slices.Contains(af, "AF_VSOCK") {
			t.Errorf("RestrictAddressFamilies %q: without AF_VSOCK the shim cannot reach the enclave", af)
		}
		if !slices.Contains(words(u, "Unit", "After"), filepath.Base(enclaveUnit)) {
			t.Errorf("After= lacks %s", filepath.Base(enclaveUnit))
		}
	})

	t.Run("README", func(t *testing.T) {
		readme := string(readFile(t, "deploy/README.md"))
		for _, p := range []string{shimConfigPath, allowlistPath, eifInstallPath, filepath.Base(proxyUnit), filepath.Base(enclaveUnit), filepath.Base(shimUnit)} {
			if !strings.Contains(readme, p) {
				t.Errorf("deploy/README.md does not mention %s", p)
			}
		}
	})
}

func TestParseUnitRefuses(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"key before section", "Description=x\n[Unit]\n", "before any [Section]"},
		{"no equals", "[Unit]\nDescription\n", "want Key=Value"},
		{"unknown section", "[Srevice]\nExecStart=/bin/true\n", "section [Srevice]"},
		{"broken header", "[Unit\nDescription=x\n", "malformed section header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseUnit("x.service", []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	u, err := parseUnit("x.service", []byte("[Service]\nExecStart=/bin/a \\\n  --b\nExecStartPre=/x\nExecStartPre=\nExecStartPre=/y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := u.get("Service", "ExecStart"); !slices.Equal(got, []string{"/bin/a  --b"}) {
		t.Errorf("continuation: got %q", got)
	}
	if got := u.get("Service", "ExecStartPre"); !slices.Equal(got, []string{"/y"}) {
		t.Errorf("an empty assignment resets the list: got %q", got)
	}
	if _, err := execArgs(`/bin/sh -c "echo hi"`); err == nil {
		t.Error("execArgs accepted quotes")
	}
	if _, err := execArgs("nitro-cli run-enclave"); err == nil {
		t.Error("execArgs accepted a relative program")
	}
}

// k8sObject is the part of a Kubernetes object the tests read; spec is
// decoded per kind.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec yaml.Node `yaml:"spec"`
	file string
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
}

type deploymentSpec struct {
	Replicas int           `yaml:"replicas"`
	Selector labelSelector `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			ServiceAccountName string            `yaml:"serviceAccountName"`
			NodeSelector       map[string]string `yaml:"nodeSelector"`
			Affinity           struct {
				PodAntiAffinity struct {
					Required []struct {
						LabelSelector labelSelector `yaml:"labelSelector"`
						TopologyKey   string        `yaml:"topologyKey"`
					} `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
				} `yaml:"podAntiAffinity"`
			} `yaml:"affinity"`
			Containers []container `yaml:"containers"`
			Volumes    []struct {
				Name      string `yaml:"name"`
				ConfigMap *struct {
					Name string `yaml:"name"`
				} `yaml:"configMap"`
				EmptyDir *struct {
					Medium string `yaml:"medium"`
				} `yaml:"emptyDir"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

// decodeYAMLDocs decodes every document of a YAML file; each must be a
// non-empty mapping.
func decodeYAMLDocs(rel string, data []byte) ([]yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		if len(n.Content) != 1 || n.Content[0].Kind != yaml.MappingNode || len(n.Content[0].Content) == 0 {
			return nil, fmt.Errorf("%s: document %d (line %d) is not a non-empty mapping", rel, len(docs)+1, n.Line)
		}
		docs = append(docs, n)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no YAML document", rel)
	}
	return docs, nil
}

// k8sObjects reads the resources of deploy/kubernetes/kustomization.yaml,
// checking that each file is listed once and every object names its kind.
func k8sObjects(t *testing.T) (objs []k8sObject, generated map[string][]string) {
	t.Helper()
	var kust struct {
		APIVersion         string   `yaml:"apiVersion"`
		Kind               string   `yaml:"kind"`
		Namespace          string   `yaml:"namespace"`
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Name  string   `yaml:"name"`
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
		Images []kustomizeImage `yaml:"images"` // TestKubernetesImages
	}
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, k8sDir+"/kustomization.yaml")))
	dec.KnownFields(true)
	if err := dec.Decode(&kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if kust.Kind != "Kustomization" || kust.Namespace == "" {
		t.Fatalf("kustomization.yaml: kind %q namespace %q", kust.Kind, kust.Namespace)
	}
	listed := map[string]bool{"kustomization.yaml": true}
	generated = map[string][]string{}
	for _, g := range kust.ConfigMapGenerator {
		for _, f := range g.Files {
			listed[f] = true
			generated[g.Name] = append(generated[g.Name], f)
		}
	}
	for _, r := range kust.Resources {
		if listed[r] {
			t.Fatalf("kustomization.yaml lists %s twice", r)
		}
		listed[r] = true
		rel := k8sDir + "/" + r
		docs, err := decodeYAMLDocs(rel, readFile(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			var o k8sObject
			if err := d.Decode(&o); err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s: an object without apiVersion, kind or metadata.name", rel)
			}
			o.file = rel
			objs = append(objs, o)
		}
	}
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), k8sDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !listed[e.Name()] && e.Name() != "README.md" {
			t.Errorf("%s/%s is neither a resource nor a generator file of kustomization.yaml", k8sDir, e.Name())
		}
	}
	return objs, generated
}

// hugepagesMiB parses a quantity such as 512Mi or 1Gi.
func hugepagesMiB(q string) (int, error) {
	for suffix, mul := range map[string]int{"Mi": 1, "Gi": 1024} {
		if n, ok := strings.CutSuffix(q, suffix); ok {
			v, err := strconv.Atoi(n)
			return v * mul, err
		}
	}
	return 0, fmt.Errorf("quantity %q: want NMi or NGi", q)
}

func TestKubernetesManifests(t *testing.T) {
	objs, generated := k8sObjects(t)
	byKind := map[string][]k8sObject{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	for _, kind := range []string{"Namespace", "ServiceAccount", "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget"} {
		if len(byKind[kind]) != 1 {
			t.Fatalf("want one %s, got %d", kind, len(byKind[kind]))
		}
	}
	var dep deploymentSpec
	if err := byKind["Deployment"][0].Spec.Decode(&dep); err != nil {
		t.Fatalf("Deployment spec: %v", err)
	}
	pod := dep.Template.Spec
	podLabels := dep.Template.Metadata.Labels
	matches := func(sel map[string]string) bool {
		if len(sel) == 0 {
			return false
		}
		for k, v := range sel {
			if podLabels[k] != v {
				return false
			}
		}
		return true
	}
	if !matches(dep.Selector.MatchLabels) {
		t.Errorf("Deployment selector %v does not match the pod labels %v", dep.Selector.MatchLabels, podLabels)
	}
	if sa := byKind["ServiceAccount"][0]; pod.ServiceAccountName != sa.Metadata.Name {
		t.Errorf("serviceAccountName %q, the ServiceAccount is %q", pod.ServiceAccountName, sa.Metadata.Name)
	} else if arn := sa.Metadata.Annotations["eks.amazonaws.com/role-arn"]; !strings.HasPrefix(arn, "arn:aws:iam::") || !strings.Contains(arn, ":role/") {
		t.Errorf("ServiceAccount annotation eks.amazonaws.com/role-arn %q: want an IAM role ARN", arn)
	}
	if pod.NodeSelector["aws-nitro-enclaves-k8s-dp"] != "enabled" {
		t.Errorf("nodeSelector %v: want aws-nitro-enclaves-k8s-dp: enabled (the device plugin's node label)", pod.NodeSelector)
	}
	oneAntiAffinity := false
	for _, r := range pod.Affinity.PodAntiAffinity.Required {
		oneAntiAffinity = oneAntiAffinity || (r.TopologyKey == "kubernetes.io/hostname" && matches(r.LabelSelector.MatchLabels))
	}
	if !oneAntiAffinity {
		t.Error("no required pod anti-affinity on kubernetes.io/hostname: two pods on a node would collide on the enclave CID and the proxy's vsock port")
	}

	containers := map[string]container{}
	for _, c := range pod.Containers {
		containers[c.Name] = c
	}
	volumes := map[string]string{} // name → "configMap:NAME" or "emptyDir:MEDIUM"
	for _, v := range pod.Volumes {
		switch {
		case v.ConfigMap != nil:
			volumes[v.Name] = "configMap:" + v.ConfigMap.Name
		case v.EmptyDir != nil:
			volumes[v.Name] = "emptyDir:" + v.EmptyDir.Medium
		}
	}
	mountOf := func(c container, path string) string {
		for _, m := range c.VolumeMounts {
			if m.MountPath == path {
				return volumes[m.Name]
			}
		}
		return ""
	}
	if !slices.Contains(generated[k8sConfigMap], "shim.json") || !slices.Contains(generated[k8sConfigMap], "vsock-proxy.yaml") {
		t.Fatalf("configMapGenerator %s: want shim.json and vsock-proxy.yaml, got %q", k8sConfigMap, generated[k8sConfigMap])
	}
	cfg := loadShimConfig(t, k8sDir+"/shim.json")
	listenPort, proxyPort := imagePorts(t)

	t.Run("enclave", func(t *testing.T) {
		c, ok := containers["enclave"]
		if !ok {
			t.Fatal("no container named enclave")
		}
		for _, res := range []map[string]string{c.Resources.Requests, c.Resources.Limits} {
			if res[deviceResource] != "1" {
				t.Errorf("resources %v: want %s: \"1\" in requests and limits", res, deviceResource)
			}
		}
		req, lim := c.Resources.Requests[hugepageResName], c.Resources.Limits[hugepageResName]
		if req == "" || req != lim {
			t.Fatalf("%s: request %q, limit %q: want both, equal", hugepageResName, req, lim)
		}
		if got := mountOf(c, "/dev/hugepages"); got != "emptyDir:HugePages-2Mi" {
			t.Errorf("/dev/hugepages is %q, want an emptyDir of medium HugePages-2Mi", got)
		}
		script := strings.Join(c.Args, "\n")
		var run []string
		for l := range strings.SplitSeq(script, "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "nitro-cli" && f[1] == "run-enclave" {
				run = f[1:]
				if i := slices.Index(run, "||"); i >= 0 {
					run = run[:i]
				}
			}
		}
		if want := runEnclaveArgs(t, eifInstallPath); !slices.Equal(run, want) {
			t.Errorf("the launcher runs nitro-cli %q,\nmake run-enclave EIF=%s runs nitro-cli %q", run, eifInstallPath, want)
		}
		mem, err := strconv.Atoi(mustFlag(t, run, "--memory"))
		if err != nil {
			t.Fatal(err)
		}
		if hp, err := hugepagesMiB(lim); err != nil || hp < mem {
			t.Errorf("%s %s (%v) is less than the enclave's --memory %d MiB", hugepageResName, lim, err, mem)
		}
		cid, port := vsockAddr(t, cfg.Enclave)
		if got := mustFlag(t, run, "--enclave-cid"); got != cid || port != listenPort {
			t.Errorf("enclave CID %s, shim dials %s (signerd listens on port %d)", got, cfg.Enclave, listenPort)
		}
		name := mustFlag(t, run, "--enclave-name")
		if !strings.Contains(script, "nitro-cli terminate-enclave --enclave-name "+name+"; exit 0") {
			t.Error("the launcher does not terminate the enclave on SIGTERM")
		}
	})

	t.Run("vsock-proxy", func(t *testing.T) {
		c, ok := containers["vsock-proxy"]
		if !ok {
			t.Fatal("no container named vsock-proxy")
		}
		local, host, port, config := proxyArgs(t, append(c.Command, c.Args...))
		if local != proxyPort || host != kmsHost(cfg.Region) || port != 443 {
			t.Errorf("vsock-proxy %d → %s:%d, want %d → %s:443", local, host, port, proxyPort, kmsHost(cfg.Region))
		}
		if filepath.Dir(config) != k8sConfigMount || mountOf(c, k8sConfigMount) != "configMap:"+k8sConfigMap {
			t.Errorf("--config %s is not in the ConfigMap %s mounted at %s", config, k8sConfigMap, k8sConfigMount)
		}
		if err := checkAllowlist(readFile(t, k8sDir+"/"+filepath.Base(config)), cfg.Region); err != nil {
			t.Errorf("%s/%s: %v", k8sDir, filepath.Base(config), err)
		}
	})

	t.Run("shim", func(t *testing.T) {
		c, ok := containers["shim"]
		if !ok {
			t.Fatal("no container named shim")
		}
		cmd := append(c.Command, c.Args...)
		if len(cmd) != 4 || filepath.Base(cmd[0]) != "signer" || cmd[1] != "serve" || cmd[2] != "--config" ||
			filepath.Dir(cmd[3]) != k8sConfigMount || filepath.Base(cmd[3]) != "shim.json" {
			t.Errorf("shim command %q: want signer serve --config %s/shim.json", cmd, k8sConfigMount)
		}
		if mountOf(c, k8sConfigMount) != "configMap:"+k8sConfigMap {
			t.Errorf("the ConfigMap %s is not mounted at %s", k8sConfigMap, k8sConfigMount)
		}
		_, lp, err := splitListen(cfg.Listen)
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.AllowPublicListen {
			t.Error("shim.json: the Service reaches the pod IP, so listen needs allow_public_listen")
		}
		if len(c.Ports) != 1 || c.Ports[0].ContainerPort != lp || c.Ports[0].Name == "" {
			t.Fatalf("container ports %+v: want one named port %d (shim.json listen %s)", c.Ports, lp, cfg.Listen)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port != c.Ports[0].Name {
			t.Errorf("readinessProbe %+v: want GET /readyz on %s: the Service must route only to enclaves that can sign", c.ReadinessProbe, c.Ports[0].Name)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("livenessProbe %+v: want GET /healthz (/readyz would restart the shim while the enclave provisions)", c.LivenessProbe)
		}

		var svc struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Port       int    `yaml:"port"`
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		}
		if err := byKind["Service"][0].Spec.Decode(&svc); err != nil {
			t.Fatal(err)
		}
		if !matches(svc.Selector) || len(svc.Ports) != 1 || svc.Ports[0].TargetPort != c.Ports[0].Name {
			t.Errorf("Service selector %v ports %+v: want the pod labels and targetPort %s", svc.Selector, svc.Ports, c.Ports[0].Name)
		}
		var np struct {
			PodSelector labelSelector `yaml:"podSelector"`
			PolicyTypes []string      `yaml:"policyTypes"`
			Ingress     []struct {
				From  []map[string]any `yaml:"from"`
				Ports []struct {
					Port int `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
		}
		if err := byKind["NetworkPolicy"][0].Spec.Decode(&np); err != nil {
			t.Fatal(err)
		}
		if !matches(np.PodSelector.MatchLabels) || !slices.Contains(np.PolicyTypes, "Ingress") ||
			len(np.Ingress) != 1 || len(np.Ingress[0].From) == 0 || len(np.Ingress[0].Ports) != 1 || np.Ingress[0].Ports[0].Port != lp {
			t.Errorf("NetworkPolicy %+v: want ingress only from named clients, to port %d of these pods", np, lp)
		}
		var pdb struct {
			Selector labelSelector `yaml:"selector"`
		}
		if err := byKind["PodDisruptionBudget"][0].Spec.Decode(&pdb); err != nil || !matches(pdb.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget selector %v (%v) does not match the pods", pdb.Selector.MatchLabels, err)
		}
	})
}

// splitListen returns the host and port of a HOST:PORT listen address.
func splitListen(s string) (string, int, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", 0, fmt.Errorf("listen %q: want HOST:PORT", s)
	}
	p, err := strconv.Atoi(s[i+1:])
	return s[:i], p, err
}

// TestConfigExamples parses every configuration example, manifest and unit
// under deploy/ and docs/ with the parser its format calls for, so none of
// them can rot unnoticed: JSON with encoding/json (shim configurations with
// the shim's own strict parser), YAML with go.yaml.in/yaml/v3, systemd
// units with parseUnit.
func TestConfigExamples(t *testing.T) {
	root := repoRoot(t)
	counts := map[string]int{}
	for _, dir := range []string{"deploy", "docs"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			switch ext := filepath.Ext(rel); ext {
			case ".json":
				if !json.Valid(data) {
					var v any
					return fmt.Errorf("%s: %v", rel, json.Unmarshal(data, &v))
				}
				if strings.Contains(filepath.Base(rel), "shim") {
					if _, err := shim.ParseConfig(bytes.NewReader(data)); err != nil {
						return fmt.Errorf("%s: %v", rel, err)
					}
					counts["shim config"]++
				}
			case ".yaml", ".yml":
				if _, err := decodeYAMLDocs(rel, data); err != nil {
					return err
				}
			case ".service":
				if _, err := parseUnit(rel, data); err != nil {
					return err
				}
			default:
				return nil
			}
			counts[filepath.Ext(rel)]++
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	// What deploy/ alone holds; docs/ may add more.
	for kind, least := range map[string]int{".json": 2, ".yaml": 9, ".service": 3, "shim config": 2} {
		if counts[kind] < least {
			t.Errorf("%d %s files, want at least %d: did a file move?", counts[kind], kind, least)
		}
	}
	t.Logf("parsed: %v", counts)
}

package repro

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The shim's image: signer serve, with the configuration where the
// Kubernetes Deployment and deploy/README.md put it.
var (
	shimEntrypoint = []string{"/signer", "serve"}
	shimCmd        = []string{"--config", k8sConfigMount + "/shim.json"}
)

// checkShimDockerfile checks Dockerfile.shim: one stage FROM scratch, only
// signer copied with a fixed mode, PATH fixed, `signer serve` with the
// configuration's path.
func checkShimDockerfile(data []byte) error {
	ins, err := parseDockerfile(data)
	if err != nil {
		return err
	}
	if len(ins) == 0 || ins[0].cmd != "FROM" {
		return errors.New("want FROM as the first instruction")
	}
	var errs []error
	byCmd := map[string][]instruction{}
	for _, in := range ins {
		byCmd[in.cmd] = append(byCmd[in.cmd], in)
		switch in.cmd {
		case "FROM":
			if in.args != "scratch" || in.line != ins[0].line {
				errs = append(errs, fmt.Errorf("line %d: FROM %s: want FROM scratch, one stage", in.line, in.args))
			}
		case "ARG", "ENV", "COPY", "ENTRYPOINT", "CMD":
		default:
			errs = append(errs, fmt.Errorf("line %d: %s: want only FROM, ARG, ENV, COPY, ENTRYPOINT and CMD", in.line, in.cmd))
		}
	}
	if c := byCmd["COPY"]; len(c) != 1 {
		errs = append(errs, fmt.Errorf("%d COPY instructions, want one (signer)", len(c)))
	} else if f := strings.Fields(c[0].args); len(f) != 3 || f[0] != "--chmod=0755" || f[2] != "/signer" {
		errs = append(errs, fmt.Errorf("line %d: COPY %s: want COPY --chmod=0755 SIGNER /signer", c[0].line, c[0].args))
	}
	if e := byCmd["ENV"]; len(e) != 1 || e[0].args != "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" {
		errs = append(errs, fmt.Errorf("ENV %v: want ENV PATH alone, as in Dockerfile.enclave (builders' defaults differ)", e))
	}
	for _, want := range []struct {
		cmd  string
		args []string
	}{{"ENTRYPOINT", shimEntrypoint}, {"CMD", shimCmd}} {
		found := byCmd[want.cmd]
		if len(found) != 1 {
			errs = append(errs, fmt.Errorf("%d %s instructions, want one", len(found), want.cmd))
			continue
		}
		if v, err := jsonArgs(found[0]); err != nil {
			errs = append(errs, err)
		} else if !slices.Equal(v, want.args) {
			errs = append(errs, fmt.Errorf("%s %q, want %q", want.cmd, v, want.args))
		}
	}
	return errors.Join(errs...)
}

func TestShimDockerfile(t *testing.T) {
	data := readFile(t, "Dockerfile.shim")
	if err := checkShimDockerfile(data); err != nil {
		t.Fatalf("Dockerfile.shim: %v", err)
	}
	// The ARG default is the path make image-shim passes for amd64.
	ins, _ := parseDockerfile(data)
	var argDefault string
	for _, in := range ins {
		if name, def, ok := strings.Cut(in.args, "="); in.cmd == "ARG" && ok && name == "SIGNER" {
			argDefault = def
		}
	}
	bud := commandWith(t, dryRun(t, "image-shim", "ENCLAVE_GOARCH=amd64"), "buildah --storage-driver vfs bud ")
	if want := "--build-arg SIGNER=" + argDefault; argDefault == "" || !strings.Contains(bud, want) {
		t.Errorf("Dockerfile.shim's ARG SIGNER default %q is not what make image-shim passes: %s", argDefault, bud)
	}
}

func TestCheckShimDockerfileRefuses(t *testing.T) {
	good := string(readFile(t, "Dockerfile.shim"))
	tests := []struct {
		name, old, new, want string
	}{
		{"base image", "FROM scratch", "FROM gcr.io/distroless/static", "want FROM scratch"},
		{"builder stage", "FROM scratch", "FROM golang:1.26 AS build\nRUN go build ./host\nFROM scratch", "want FROM scratch"},
		{"RUN", "ENTRYPOINT", "RUN true\nENTRYPOINT", "RUN: want only"},
		{"USER", "ENTRYPOINT", "USER 65532\nENTRYPOINT", "USER: want only"},
		{"no chmod", "COPY --chmod=0755 ", "COPY ", "want COPY --chmod=0755"},
		{"CA bundle", "ENTRYPOINT", "COPY --chmod=0644 ca.pem /etc/ssl/certs/ca-certificates.crt\nENTRYPOINT", "2 COPY instructions"},
		{"no PATH", "ENV PATH=", "ARG UNUSED=", "want ENV PATH alone"},
		{"another command", `["/signer", "serve"]`, `["/signer", "dev"]`, "ENTRYPOINT"},
		{"no config", `CMD ["--config", "/etc/enclave-signer/shim.json"]`, `CMD []`, "CMD"},
		{"shell form", `ENTRYPOINT ["/signer", "serve"]`, `ENTRYPOINT /signer serve`, "JSON array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(good, tt.old) {
				t.Fatalf("Dockerfile.shim has no %q to replace", tt.old)
			}
			err := checkShimDockerfile([]byte(strings.Replace(good, tt.old, tt.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestMakeShimImageCommands checks what make shim-signer, image-shim and
// images run: signer built as signerd is, and the enclave image's buildah
// flags.
func TestMakeShimImageCommands(t *testing.T) {
	toolchain := "GOTOOLCHAIN=" + goModToolchain(t)
	build := commandWith(t, dryRun(t, "shim-signer", "ENCLAVE_GOARCH=amd64"), "GOOS=linux GOARCH=amd64 ")
	f := fields(build)
	for _, want := range append(reproFlags, toolchain, "bin/linux_amd64/signer", "./host") {
		if !slices.Contains(f, want) {
			t.Errorf("make shim-signer: %s\nlacks %s", build, want)
		}
	}
	// On linux/amd64 it is make build's signer.
	var local string
	for _, l := range dryRun(t, "build") {
		if strings.Contains(l, "-o bin/signer ") {
			local = l
		}
	}
	if got := strings.Replace(strings.TrimPrefix(build, "GOOS=linux GOARCH=amd64 "), "-o bin/linux_amd64/signer", "-o bin/signer", 1); got != local {
		t.Errorf("make shim-signer:\n%s\nis not make build's signer command:\n%s", build, local)
	}
	if arm := commandWith(t, dryRun(t, "shim-signer", "ENCLAVE_GOARCH=arm64"), "GOOS="); !strings.Contains(arm, "GOOS=linux GOARCH=arm64 ") || !strings.Contains(arm, "-o bin/linux_arm64/signer") {
		t.Errorf("ENCLAVE_GOARCH=arm64: %s", arm)
	}

	lines := dryRun(t, "image-shim", "ENCLAVE_GOARCH=amd64", "BUILDAH_FLAGS=--root /r --runroot /rr")
	bud := fields(commandWith(t, lines, "buildah --root /r --runroot /rr --storage-driver vfs bud "))
	enclaveBud := fields(commandWith(t, dryRun(t, "image", "ENCLAVE_GOARCH=amd64", "BUILDAH_FLAGS=--root /r --runroot /rr"), "buildah --root /r --runroot /rr --storage-driver vfs bud "))
	for _, flag := range enclaveBud {
		// Every flag of the enclave image's build but its own inputs.
		if strings.HasPrefix(flag, "--") && flag != "--build-arg" && !slices.Contains(bud, flag) {
			t.Errorf("make image-shim's buildah bud lacks %s, which make image passes: %q", flag, bud)
		}
	}
	for _, want := range []string{"--build-arg", "SIGNER=bin/linux_amd64/signer", "--iidfile", "bin/shim-image-id", "-f", "Dockerfile.shim", "-t", shimImage} {
		if !slices.Contains(bud, want) {
			t.Errorf("make image-shim's buildah bud lacks %s: %q", want, bud)
		}
	}
	if slices.ContainsFunc(bud, func(s string) bool { return strings.Contains(s, "KMS_KEYS") }) {
		t.Errorf("make image-shim passes the enclave's pins: %q", bud)
	}
	push := commandWith(t, lines, "buildah --root /r --runroot /rr --storage-driver vfs push ")
	if !strings.HasSuffix(push, "push "+shimImage+" docker-archive:bin/enclave-signer-shim-amd64.tar:"+shimImage) {
		t.Errorf("image-shim export: %s", push)
	}

	// make images builds both.
	all := dryRun(t, "images")
	for _, want := range []string{"-f Dockerfile.enclave -t " + enclaveImage, "-f Dockerfile.shim -t " + shimImage} {
		if !slices.ContainsFunc(all, func(l string) bool { return strings.Contains(l, want) }) {
			t.Errorf("make -n images does not build %s:\n%s", want, strings.Join(all, "\n"))
		}
	}

	doc := string(readFile(t, "docs/image.md"))
	for _, want := range []string{"make image-shim", "make images", "Dockerfile.shim", "## The shim image", "## The launcher image"} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/image.md does not mention %q", want)
		}
	}
}

// kustomizeImage is one entry of a kustomization's images: the name the
// manifests use, and what kustomize puts in its place.
type kustomizeImage struct {
	Name    string `yaml:"name"`
	NewName string `yaml:"newName"`
	NewTag  string `yaml:"newTag"`
	Digest  string `yaml:"digest"`
}

// TestKubernetesImages checks that deploy/kubernetes runs the images by
// the names they are built under, mapped to a registry in one place, and
// that the shim's container runs the shim image's own command.
func TestKubernetesImages(t *testing.T) {
	var kust struct {
		Images []kustomizeImage `yaml:"images"`
	}
	if err := yaml.Unmarshal(readFile(t, k8sDir+"/kustomization.yaml"), &kust); err != nil {
		t.Fatal(err)
	}
	mapped := map[string]kustomizeImage{}
	for _, im := range kust.Images {
		if _, dup := mapped[im.Name]; dup || im.NewName == "" || (im.NewTag == "") == (im.Digest == "") ||
			filepath.Base(im.NewName) != im.Name {
			t.Errorf("kustomization.yaml images: %+v: want each name once, a newName REGISTRY/%s, and a newTag or a digest", im, im.Name)
		}
		mapped[im.Name] = im
	}
	objs, _ := k8sObjects(t)
	var dep deploymentSpec
	for _, o := range objs {
		if o.Kind == "Deployment" {
			if err := o.Spec.Decode(&dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The name make image-shim tags, without its tag.
	shimName, _, _ := strings.Cut(shimImage, ":")
	used := map[string]bool{}
	for _, c := range dep.Template.Spec.Containers {
		if _, ok := mapped[c.Image]; !ok {
			t.Errorf("container %s: image %q is not one of kustomization.yaml's images %q", c.Name, c.Image, slices.Sorted(maps.Keys(mapped)))
		}
		used[c.Image] = true
		if c.Name != "shim" {
			continue
		}
		if c.Image != shimName {
			t.Errorf("the shim container runs %q, want %q, the image make image-shim builds", c.Image, shimName)
		}
		if cmd := append(slices.Clone(c.Command), c.Args...); !slices.Equal(cmd, append(slices.Clone(shimEntrypoint), shimCmd...)) {
			t.Errorf("the shim container's command %q is not Dockerfile.shim's entry point and command %q %q", cmd, shimEntrypoint, shimCmd)
		}
	}
	for name := range mapped {
		if !used[name] {
			t.Errorf("kustomization.yaml maps image %s, which no container runs", name)
		}
	}
}

// checkReproducibleShim compares what make image-shim built in the two
// copies a and b (their environments and buildah stores): signer, the
// image id, config, manifest and docker-archive; and checks the layer
// (signer alone) and config (signer serve).
func checkReproducibleShim(t *testing.T, envA, envB []string, a, b, storeA, storeB string) {
	t.Helper()
	bin := filepath.FromSlash("bin/linux_amd64/signer")
	sumA, sumB := fileSHA256(t, filepath.Join(a, bin)), fileSHA256(t, filepath.Join(b, bin))
	if sumA != sumB {
		t.Fatalf("signer differs between the copies: %s and %s", sumA, sumB)
	}
	t.Logf("signer sha256 %s", sumA)
	checkBuildInfo(t, filepath.Join(a, bin), "host")

	idA, idB := readTrim(t, filepath.Join(a, "bin", "shim-image-id")), readTrim(t, filepath.Join(b, "bin", "shim-image-id"))
	if idA != idB || !strings.HasPrefix(idA, "sha256:") {
		t.Fatalf("shim image ids differ: %s and %s", idA, idB)
	}
	t.Logf("shim image id %s", idA)
	inspA, inspB := inspect(t, envA, storeA, shimImage), inspect(t, envB, storeB, shimImage)
	if inspA != inspB {
		t.Fatalf("shim image metadata differs:\n%+v\n%+v", inspA, inspB)
	}
	if got := "sha256:" + sha256Hex([]byte(inspA.Config)); got != idA {
		t.Errorf("the shim image id %s is not its config's digest %s", idA, got)
	}
	checkShimConfig(t, inspA.Config)
	archive := filepath.FromSlash("bin/enclave-signer-shim-amd64.tar")
	if tarA, tarB := fileSHA256(t, filepath.Join(a, archive)), fileSHA256(t, filepath.Join(b, archive)); tarA != tarB {
		t.Errorf("the shim's docker-archives differ: %s and %s", tarA, tarB)
	}
	checkLayer(t, filepath.Join(a, archive), "signer", shimImage, sumA)
}

// checkShimConfig checks the shim image's OCI config: signer serve, PATH,
// no timestamps, user, labels or history, one layer.
func checkShimConfig(t *testing.T, raw string) {
	t.Helper()
	var c struct {
		Created      string `json:"created"`
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			Env        []string          `json:"Env"`
			Entrypoint []string          `json:"Entrypoint"`
			Cmd        []string          `json:"Cmd"`
			Labels     map[string]string `json:"Labels"`
			User       string            `json:"User"`
			WorkingDir string            `json:"WorkingDir"`
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		History []json.RawMessage `json:"history"`
	}
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		t.Fatalf("shim image config: %v", err)
	}
	if c.Created != "1970-01-01T00:00:00Z" || c.OS != "linux" || c.Architecture != "amd64" {
		t.Errorf("shim image config created %q os %q architecture %q: want the epoch, linux, amd64", c.Created, c.OS, c.Architecture)
	}
	if !slices.Equal(c.Config.Entrypoint, shimEntrypoint) || !slices.Equal(c.Config.Cmd, shimCmd) {
		t.Errorf("shim image entry point %q cmd %q: want %q %q", c.Config.Entrypoint, c.Config.Cmd, shimEntrypoint, shimCmd)
	}
	if want := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}; !slices.Equal(c.Config.Env, want) {
		t.Errorf("shim image env %q, want %q", c.Config.Env, want)
	}
	if len(c.Config.Labels) != 0 || len(c.History) != 0 || c.Config.User != "" || c.Config.WorkingDir != "" {
		t.Errorf("shim image config carries labels %v, history %d entries, user %q, workdir %q: want none", c.Config.Labels, len(c.History), c.Config.User, c.Config.WorkingDir)
	}
	if len(c.RootFS.DiffIDs) != 1 {
		t.Errorf("shim image has %d layers, want 1", len(c.RootFS.DiffIDs))
	}
}

package repro

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// reproFlags are the settings every signerd build must carry.
var reproFlags = []string{
	"CGO_ENABLED=0", "GOFLAGS=", "GOEXPERIMENT=", "GOFIPS140=off", "GOAMD64=v1", "GOARM64=v8.0",
	"-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=",
}

// fields splits a make -n line into words, dropping the shell's single
// quotes (none of the tested values contains a space inside quotes except
// -ldflags, which is rejoined).
func fields(line string) []string {
	line = strings.ReplaceAll(line, "-ldflags='-s -w -buildid='", "-ldflags=-s\x00-w\x00-buildid=")
	f := strings.Fields(line)
	for i := range f {
		f[i] = strings.ReplaceAll(f[i], "\x00", " ")
	}
	return f
}

func TestMakeBuildIsReproducible(t *testing.T) {
	toolchain := "GOTOOLCHAIN=" + goModToolchain(t)
	build := dryRun(t, "build")
	enclave := commandWith(t, dryRun(t, "enclave-signerd", "ENCLAVE_GOARCH=amd64"), "GOOS=linux GOARCH=amd64 ")
	var signerd string
	for _, l := range build {
		if strings.Contains(l, "-o bin/signerd ") {
			signerd = l
		}
	}
	if len(build) != 2 || signerd == "" || !strings.HasSuffix(signerd, "./enclave") {
		t.Fatalf("make -n build:\n%s\nwant the signerd and signer builds", strings.Join(build, "\n"))
	}
	for _, l := range append(build, enclave) {
		f := fields(l)
		for _, want := range append(reproFlags, toolchain) {
			if !slices.Contains(f, want) {
				t.Errorf("%s\nlacks %s", l, want)
			}
		}
	}
	// make build's signerd is the image's signerd on linux/amd64: the same
	// command but for GOOS/GOARCH and the output path.
	got := strings.Replace(strings.TrimPrefix(enclave, "GOOS=linux GOARCH=amd64 "), "-o bin/linux_amd64/signerd", "-o bin/signerd", 1)
	if got != signerd {
		t.Errorf("make enclave-signerd:\n%s\nis not make build's signerd command:\n%s", enclave, signerd)
	}
	if arm := commandWith(t, dryRun(t, "enclave-signerd", "ENCLAVE_GOARCH=arm64"), "GOOS="); !strings.Contains(arm, "GOOS=linux GOARCH=arm64 ") || !strings.Contains(arm, "-o bin/linux_arm64/signerd") {
		t.Errorf("ENCLAVE_GOARCH=arm64: %s", arm)
	}
}

// goModToolchain is go.mod's toolchain line (e.g. go1.26.8).
func goModToolchain(t *testing.T) string {
	t.Helper()
	for l := range strings.SplitSeq(string(readFile(t, "go.mod")), "\n") {
		if v, ok := strings.CutPrefix(l, "toolchain "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no toolchain line: the build would take whatever go is installed")
	return ""
}

func TestMakeImageCommands(t *testing.T) {
	lines := dryRun(t, "image", "ENCLAVE_GOARCH=amd64", "BUILDAH_FLAGS=--root /r --runroot /rr")
	bud := fields(commandWith(t, lines, "buildah --root /r --runroot /rr --storage-driver vfs bud "))
	for _, want := range []string{
		"--root", "/r", "--runroot", "/rr", "--storage-driver", "vfs", "bud",
		"--format", "oci", "--timestamp", "0", "--identity-label=false", "--omit-history", "--layers=false",
		"--pull=never", "--isolation", "chroot", "--os", "linux", "--arch", "amd64",
		"--build-arg", "SIGNERD=bin/linux_amd64/signerd", "-f", "Dockerfile.enclave", "-t", "enclave-signer:latest",
	} {
		if !slices.Contains(bud, want) {
			t.Errorf("buildah bud lacks %s: %q", want, bud)
		}
	}
	if mustFlag(t, bud, "--format") != "oci" || mustFlag(t, bud, "--timestamp") != "0" {
		t.Errorf("buildah bud: want --format oci --timestamp 0")
	}
	push := commandWith(t, lines, "buildah --root /r --runroot /rr --storage-driver vfs push ")
	if !strings.HasSuffix(push, "push enclave-signer:latest docker-archive:bin/enclave-signer-amd64.tar:enclave-signer:latest") {
		t.Errorf("image export: %s", push)
	}
	// The pins, passed as build arguments; an unpinned image is warned of.
	const keys = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab,arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
	pinned := dryRun(t, "image", "KMS_KEYS="+keys, "KEYRING_SIGNERS=s1,s2", "KEYRING_THRESHOLD=2")
	pbud := fields(commandWith(t, pinned, "buildah --storage-driver vfs bud "))
	for _, want := range []string{"'KMS_KEYS=" + keys + "'", "'KEYRING_SIGNERS=s1,s2'", "'KEYRING_THRESHOLD=2'"} {
		if i := slices.Index(pbud, want); i < 1 || pbud[i-1] != "--build-arg" {
			t.Errorf("make image KMS_KEYS=…: buildah bud lacks --build-arg %s: %q", want, pbud)
		}
	}
	warning := "make image: warning: no KMS_KEYS"
	if strings.Contains(strings.Join(pinned, "\n"), warning) || !strings.Contains(strings.Join(lines, "\n"), warning) {
		t.Errorf("make image should warn of an unpinned image, and only then:\npinned:\n%s\nunpinned:\n%s", strings.Join(pinned, "\n"), strings.Join(lines, "\n"))
	}
	docker := commandWith(t, dryRun(t, "docker-image"), "buildah ")
	if !strings.HasSuffix(docker, "push enclave-signer:latest docker-daemon:enclave-signer:latest") {
		t.Errorf("docker-image: %s", docker)
	}

	// docs/image.md explains every flag of the bud command.
	doc := string(readFile(t, "docs/image.md"))
	for _, f := range bud {
		if strings.HasPrefix(f, "--") && !slices.Contains([]string{"--root", "--runroot"}, f) && !strings.Contains(doc, strings.SplitN(f, "=", 2)[0]) {
			t.Errorf("docs/image.md does not explain buildah's %s", f)
		}
	}
}

func TestMakeEIFCommands(t *testing.T) {
	lines := dryRun(t, "eif", "KMS_KEYS=arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
	for i, want := range []string{"GOOS=linux GOARCH=amd64 ", "buildah ", "rm -f ", "buildah ", "echo ", "buildah ", "CGO_ENABLED=0 ", "nitro-cli build-enclave ", "bin/signer image pins ", "rm ", "mv ", "cat "} {
		if i >= len(lines) || !strings.HasPrefix(lines[i], want) {
			t.Fatalf("make -n eif, command %d: want %q…, got:\n%s", i+1, want, strings.Join(lines, "\n"))
		}
	}
	if got := commandWith(t, lines, "nitro-cli "); got != "nitro-cli build-enclave --docker-uri enclave-signer:latest --output-file enclave-signer.eif > measurements.json.tmp" {
		t.Errorf("eif: %s", got)
	}
	if got := commandWith(t, lines, "bin/signer "); got != "bin/signer image pins --measurements measurements.json.tmp bin/enclave-signer-amd64.tar > measurements.json.pins.tmp" {
		t.Errorf("eif, the image's pins: %s", got)
	}
	if got := commandWith(t, lines, "CGO_ENABLED=0 "); !strings.HasSuffix(got, "-o bin/signer ./host") {
		t.Errorf("eif builds signer: %s", got)
	}
	run := commandWith(t, dryRun(t, "run-enclave"), "nitro-cli ")
	if run != "nitro-cli run-enclave --eif-path enclave-signer.eif --cpu-count 2 --memory 512 --enclave-cid 16 --enclave-name enclave-signer" {
		t.Errorf("run-enclave: %s", run)
	}
	if run := commandWith(t, dryRun(t, "run-enclave", "ENCLAVE_CID="), "nitro-cli "); strings.Contains(run, "--enclave-cid") {
		t.Errorf("ENCLAVE_CID= should let the driver choose: %s", run)
	}
	debug := dryRun(t, "run-debug")
	if len(debug) != 2 || debug[0] != run+" --debug-mode" || debug[1] != "nitro-cli console --enclave-name enclave-signer" {
		t.Errorf("run-debug:\n%s", strings.Join(debug, "\n"))
	}
	if stop := dryRun(t, "stop"); len(stop) != 1 || stop[0] != "nitro-cli terminate-enclave --enclave-name enclave-signer" {
		t.Errorf("stop: %q", stop)
	}
}

// fakeTool writes an executable shell script that appends its arguments
// (one per line, then a line "--") to log and then runs body.
func fakeTool(t *testing.T, dir, name, log, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> '" + log + "'; done\necho -- >> '" + log + "'\n" + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// calls reads a fakeTool log: one argument list per call.
func calls(t *testing.T, log string) [][]string {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	var cur []string
	for l := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
		if l == "--" {
			out = append(out, cur)
			cur = nil
			continue
		}
		cur = append(cur, l)
	}
	return out
}

// TestMakeEnclaveTargetsRun runs the parent-instance targets for real, with
// a stand-in nitro-cli: what they pass, and that eif keeps stdout (the
// measurements) apart from stderr (progress).
func TestMakeEnclaveTargetsRun(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		unavailable(t, "make is not installed")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "nitro-cli.log")
	const measurements = `{
  "Measurements": {
    "HashAlgorithm": "Sha384 { ... }",
    "PCR0": "287b24930a9f0fe14b01a71ecdc00d8be8fad90f9834d547158854b8279c74095c43f8d7f047714e98deb7903f20e3dd"
  }
}`
	nitro := fakeTool(t, dir, "nitro-cli", log, `case "$1" in
build-enclave) echo "Start building the Enclave Image..." >&2; printf '%s\n' '`+measurements+`'; echo "Enclave Image successfully created." >&2;;
esac`)
	eif, meas := filepath.Join(dir, "x.eif"), filepath.Join(dir, "m.json")
	// A stand-in signer image pins: adds a member to the measurements it
	// is given, as the real one adds the image's pins.
	signerLog := filepath.Join(dir, "signer.log")
	signer := fakeTool(t, dir, "signer", signerLog, `sed 's/^}$/  ,"Pins": {}\n}/' "$4"`)
	vars := []string{"NITRO_CLI=" + nitro, "SIGNER=" + signer, "IMAGE_TAR=/images/x.tar", "EIF=" + eif, "MEASUREMENTS=" + meas, "ENCLAVE_NAME=t1", "ENCLAVE_CPUS=4", "ENCLAVE_MEMORY=1024", "ENCLAVE_CID=20"}
	// -o: image and docker-image need buildah and Docker, signer a Go
	// build; take them as done.
	args := append([]string{"-o", "image", "-o", "docker-image", "-o", "signer", "eif", "run-enclave", "run-debug", "stop"}, vars...)
	if _, stderr, err := runMake(t, repoRoot(t), makeEnv(), args...); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	got, err := os.ReadFile(meas)
	if err != nil {
		t.Fatal(err)
	}
	withPins := strings.Replace(measurements, "\n}", "\n  ,\"Pins\": {}\n}", 1) + "\n"
	if string(got) != withPins {
		t.Errorf("measurements file:\n%s\nwant nitro-cli's stdout with signer's pins:\n%s", got, withPins)
	}
	for _, tmp := range []string{meas + ".tmp", meas + ".pins.tmp"} {
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", tmp, err)
		}
	}
	if c := calls(t, signerLog); len(c) != 1 || !slices.Equal(c[0], []string{"image", "pins", "--measurements", meas + ".tmp", "/images/x.tar"}) {
		t.Errorf("signer calls %q, want one image pins --measurements %s.tmp /images/x.tar", c, meas)
	}
	run := []string{"run-enclave", "--eif-path", eif, "--cpu-count", "4", "--memory", "1024", "--enclave-cid", "20", "--enclave-name", "t1"}
	want := [][]string{
		{"build-enclave", "--docker-uri", "enclave-signer:latest", "--output-file", eif},
		run,
		append(slices.Clone(run), "--debug-mode"),
		{"console", "--enclave-name", "t1"},
		{"terminate-enclave", "--enclave-name", "t1"},
	}
	if c := calls(t, log); !slices.EqualFunc(c, want, slices.Equal) {
		t.Errorf("nitro-cli calls:\n%q\nwant\n%q", c, want)
	}

	// A failed build leaves the previous measurements alone.
	failing := fakeTool(t, dir, "nitro-cli-fails", log, `echo '{"partial": ' ; echo "Failed to build" >&2; exit 1`)
	if _, _, err := runMake(t, repoRoot(t), makeEnv(), "-o", "image", "-o", "docker-image", "-o", "signer", "eif", "NITRO_CLI="+failing, "SIGNER="+signer, "EIF="+eif, "MEASUREMENTS="+meas); err == nil {
		t.Fatal("make eif succeeded although nitro-cli failed")
	}
	if got2, _ := os.ReadFile(meas); string(got2) != string(got) {
		t.Errorf("a failed make eif changed %s to %q", meas, got2)
	}
}

func TestMakePolicy(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		unavailable(t, "make is not installed")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "signer.log")
	signer := fakeTool(t, dir, "signer", log, `echo '{"Version": "2012-10-17"}'`)
	policy := filepath.Join(dir, "policy.json")
	root := repoRoot(t)

	_, stderr, err := runMake(t, root, makeEnv(), "policy", "SIGNER="+signer, "POLICY="+policy, "ENCRYPT_ROLE=arn:aws:iam::1:role/e")
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("make policy without ENCLAVE_ROLE and ADMIN_ROLE: %v, want a failure", err)
	}
	if !strings.Contains(stderr, "set ENCLAVE_ROLE ADMIN_ROLE") || strings.Contains(stderr, "ENCRYPT_ROLE (") {
		t.Errorf("stderr %q: want it to name ENCLAVE_ROLE and ADMIN_ROLE, the missing ones", stderr)
	}
	if _, err := os.Stat(log); !errors.Is(err, os.ErrNotExist) {
		t.Error("signer ran although role ARNs were missing")
	}

	if _, stderr, err := runMake(t, root, makeEnv(), "policy", "SIGNER="+signer, "POLICY="+policy,
		"POLICY_MEASUREMENTS=blue.json green.json", "POLICY_FLAGS=--pcr3-role-arn arn:aws:iam::1:role/i",
		"ENCLAVE_ROLE=arn:aws:iam::1:role/n", "ENCRYPT_ROLE=arn:aws:iam::1:role/e", "ADMIN_ROLE=arn:aws:iam::1:role/a"); err != nil {
		t.Fatalf("make policy: %v\n%s", err, stderr)
	}
	want := []string{"policy", "render", "--measurements", "blue.json", "--measurements", "green.json",
		"--enclave-role", "arn:aws:iam::1:role/n", "--encrypt-role", "arn:aws:iam::1:role/e", "--admin-role", "arn:aws:iam::1:role/a",
		"--pcr3-role-arn", "arn:aws:iam::1:role/i"}
	if c := calls(t, log); len(c) != 1 || !slices.Equal(c[0], want) {
		t.Errorf("signer calls %q, want [%q]", c, want)
	}
	if got, err := os.ReadFile(policy); err != nil || string(got) != "{\"Version\": \"2012-10-17\"}\n" {
		t.Errorf("policy file %q (%v): want signer's stdout", got, err)
	}
}

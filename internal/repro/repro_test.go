package repro

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/imagepins"
)

// TestReproducibleImage builds the images (make images: the enclave's and
// the shim's) twice, from two `git archive HEAD` copies in different
// directories (different path lengths, different umask, different file
// times, separate buildah stores), and checks that signerd, signer and
// both images are the same bytes.
//
// It needs git, make, tar and buildah: on a developer's machine it skips
// without them, in CI (CI=true) it fails. Both copies share the Go build
// cache, so the second builds of signerd and signer are cache hits; that
// the cache key matches is itself evidence (it covers the source, the flags
// and, without -trimpath, the directory), but to also recompile everything
// from an empty cache for the second copy, set REPRO_COLD_CACHE=1 (about
// two minutes more on two cores).
func TestReproducibleImage(t *testing.T) {
	for _, tool := range []string{"git", "make", "tar", "buildah"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "%s is not installed (apt-get install -y %s)", tool, tool)
		}
	}
	root := repoRoot(t)
	if _, err := gitOut(root, "rev-parse", "--verify", "HEAD^{commit}"); err != nil {
		unavailable(t, "%s has no commit to archive (%v): this test builds committed content only", root, err)
	}
	headMakefile, err := gitOut(root, "show", "HEAD:Makefile")
	if err != nil || !strings.Contains(headMakefile, "\nenclave-signerd:") || !strings.Contains(headMakefile, "\nimages:") {
		unavailable(t, "HEAD's Makefile has no enclave-signerd and images targets: commit Makefile, Dockerfile.enclave and Dockerfile.shim first (this test builds HEAD, not the working tree)")
	}
	for _, f := range []string{"Makefile", "Dockerfile.enclave", "Dockerfile.shim"} {
		if out, _ := gitOut(root, "status", "--porcelain", "--", f); out != "" {
			t.Logf("note: %s has uncommitted changes; this test builds HEAD's", f)
		}
	}
	archive, err := gitBytes(root, "archive", "--format=tar", "HEAD")
	if err != nil {
		t.Fatalf("git archive HEAD: %v", err)
	}

	tmp := t.TempDir()
	copies := []struct {
		dir, umask string
		env        []string
	}{
		{dir: filepath.Join(tmp, "a"), umask: "022"},
		{dir: filepath.Join(tmp, "second", "copy", "of", "the", "source"), umask: "077"},
	}
	if os.Getenv("REPRO_COLD_CACHE") == "1" {
		copies[1].env = append(copies[1].env, "GOCACHE="+filepath.Join(tmp, "gocache"))
	}
	for i := range copies {
		c := &copies[i]
		if err := os.MkdirAll(c.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		x := exec.Command("tar", "-x", "-f", "-", "-C", c.dir)
		x.Stdin = bytes.NewReader(archive)
		if out, err := x.CombinedOutput(); err != nil {
			t.Fatalf("tar -x into %s: %v\n%s", c.dir, err, out)
		}
		store := filepath.Join(tmp, fmt.Sprintf("store%d", i))
		scratch := filepath.Join(tmp, fmt.Sprintf("tmp%d", i))
		if err := os.MkdirAll(scratch, 0o700); err != nil {
			t.Fatal(err)
		}
		c.env = append(makeEnv("TMPDIR="+scratch), c.env...)
		start := time.Now()
		makeImage(t, c.dir, c.umask, store, c.env, reproPins)
		t.Logf("copy %d: make images in %v", i+1, time.Since(start).Round(100*time.Millisecond))
	}
	a, b := copies[0].dir, copies[1].dir
	bin := filepath.FromSlash("bin/linux_amd64/signerd")

	// signerd: same bytes, though built under different umasks.
	sumA, sumB := fileSHA256(t, filepath.Join(a, bin)), fileSHA256(t, filepath.Join(b, bin))
	if sumA != sumB {
		t.Fatalf("signerd differs between the copies: %s and %s", sumA, sumB)
	}
	t.Logf("signerd sha256 %s", sumA)
	if fi, err := os.Stat(filepath.Join(b, bin)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("copy 2's signerd mode %v (%v): want 0700 from umask 077, so the image's 0755 shows COPY --chmod at work", fi.Mode(), err)
	}
	checkBuildInfo(t, filepath.Join(a, bin), "enclave")

	// The image: same id (the config digest), config, manifest and archive.
	idA, idB := readTrim(t, filepath.Join(a, "bin", "image-id")), readTrim(t, filepath.Join(b, "bin", "image-id"))
	if idA != idB || !strings.HasPrefix(idA, "sha256:") {
		t.Fatalf("image ids differ: %s and %s", idA, idB)
	}
	t.Logf("image id %s", idA)
	inspA := inspect(t, copies[0].env, filepath.Join(tmp, "store0"), enclaveImage)
	inspB := inspect(t, copies[1].env, filepath.Join(tmp, "store1"), enclaveImage)
	if inspA.FromImageDigest != inspB.FromImageDigest || inspA.Manifest != inspB.Manifest || inspA.Config != inspB.Config {
		t.Fatalf("image metadata differs:\nmanifest %s\n    vs   %s\nconfig %s\n  vs   %s", inspA.Manifest, inspB.Manifest, inspA.Config, inspB.Config)
	}
	t.Logf("manifest digest %s", inspA.FromImageDigest)
	if got := "sha256:" + sha256Hex([]byte(inspA.Config)); got != idA {
		t.Errorf("the image id %s is not the config's digest %s", idA, got)
	}
	checkImageConfig(t, inspA.Config, reproPins)
	archiveA := filepath.Join(a, "bin", "enclave-signer-amd64.tar")
	tarA, tarB := fileSHA256(t, archiveA), fileSHA256(t, filepath.Join(b, "bin", "enclave-signer-amd64.tar"))
	if tarA != tarB {
		t.Errorf("the docker-archives differ: %s and %s", tarA, tarB)
	}
	checkLayer(t, archiveA, "signerd", enclaveImage, sumA)
	// The pins read back from the archive, as signer image pins does.
	img := readArchivePins(t, archiveA)
	if img.ID != idA || strings.Join(img.Pins.KMSKeys, ",") != reproPins["KMS_KEYS"] || strings.Join(img.Pins.KeyringSigners, ",") != reproPins["KEYRING_SIGNERS"] || img.Pins.KeyringThreshold != reproPins["KEYRING_THRESHOLD"] || img.Pins.RequireAuth != reproPins["REQUIRE_AUTH"] || img.Pins.AuditOverflow != reproPins["AUDIT_OVERFLOW"] {
		t.Errorf("pins read back from %s: %+v, want id %s and %v", archiveA, img, idA, reproPins)
	}

	// The shim's image, from the same two copies.
	checkReproducibleShim(t, copies[0].env, copies[1].env, a, b, filepath.Join(tmp, "store0"), filepath.Join(tmp, "store1"))

	// Other pins, other image: the image id, which fixes what nitro-cli
	// measures into PCR0, commits to the pins.
	otherPins := map[string]string{"KMS_KEYS": reproKeyB, "KEYRING_SIGNERS": "", "KEYRING_THRESHOLD": "", "REQUIRE_AUTH": "", "AUDIT_OVERFLOW": ""}
	makeImage(t, a, "022", filepath.Join(tmp, "store0"), copies[0].env, otherPins)
	idOther := readTrim(t, filepath.Join(a, "bin", "image-id"))
	if idOther == idA {
		t.Errorf("make image with other pins gave the same image id %s", idA)
	}
	checkImageConfig(t, inspect(t, copies[0].env, filepath.Join(tmp, "store0"), enclaveImage).Config, otherPins)
	if img := readArchivePins(t, archiveA); img.ID != idOther || strings.Join(img.Pins.KMSKeys, ",") != reproKeyB {
		t.Errorf("pins read back after the rebuild: %+v, want id %s and %s", img, idOther, reproKeyB)
	}
	t.Logf("image id with other pins %s", idOther)
}

// The pins both copies are built with (the keyring signer is a stand-in:
// the image carries it whatever it is), and another key.
const (
	reproKeyA = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	reproKeyB = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
)

var reproPins = map[string]string{"KMS_KEYS": reproKeyA + "," + reproKeyB, "KEYRING_SIGNERS": "test-signer-1,test-signer-2", "KEYRING_THRESHOLD": "2", "REQUIRE_AUTH": "true", "AUDIT_OVERFLOW": "drop"}

// makeImage runs make images (the enclave's and the shim's) in dir with the
// umask, buildah store and pins given, as a shell runs it.
func makeImage(t *testing.T, dir, umask, store string, env []string, pins map[string]string) {
	t.Helper()
	args := []string{"-c", `umask "$1"; shift; exec make --no-print-directory "$@"`, "sh", umask,
		"images", "ENCLAVE_GOARCH=amd64", "BUILDAH_FLAGS=--root " + filepath.Join(store, "root") + " --runroot " + filepath.Join(store, "run")}
	for k, v := range pins {
		args = append(args, k+"="+v)
	}
	cmd := exec.Command("sh", args...)
	cmd.Dir, cmd.Env = dir, env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make images in %s: %v\n%s", dir, err, out)
	}
}

func readArchivePins(t *testing.T, path string) *imagepins.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := imagepins.ReadArchive(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func gitOut(dir string, args ...string) (string, error) {
	b, err := gitBytes(dir, args...)
	return string(b), err
}

func gitBytes(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256Hex(b)
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// checkBuildInfo reads the build settings Go stamps into a binary built
// from the module's package main (enclave: signerd, host: signer): the
// pinned toolchain and flags, and nothing from VCS.
func checkBuildInfo(t *testing.T, path, main string) {
	t.Helper()
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("build info of %s: %v", path, err)
	}
	if want := goModToolchain(t); bi.GoVersion != want {
		t.Errorf("%s built by %s, go.mod's toolchain is %s", path, bi.GoVersion, want)
	}
	if bi.Path != modulePath+"/"+main {
		t.Errorf("%s's main package %q, want %s/%s", path, bi.Path, modulePath, main)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
		if strings.HasPrefix(s.Key, "vcs") {
			t.Errorf("%s carries VCS information %s=%s", path, s.Key, s.Value)
		}
	}
	for k, v := range map[string]string{
		"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64", "GOAMD64": "v1",
		"-trimpath": "true", "-buildmode": "exe",
	} {
		if settings[k] != v {
			t.Errorf("%s build setting %s=%q, want %q", path, k, settings[k], v)
		}
	}
	// With -trimpath, go leaves -ldflags out of the build info (it may hold
	// paths); make -n shows them (TestMakeBuildIsReproducible).
	for _, k := range []string{"GOEXPERIMENT", "-tags", "-race", "-gcflags", "-asmflags", "-ldflags"} {
		if v, ok := settings[k]; ok {
			t.Errorf("%s build setting %s=%q: the build must not take it from the environment", path, k, v)
		}
	}
}

// inspection is the part of `buildah inspect --type image` compared.
type inspection struct {
	FromImageDigest string
	Config          string
	Manifest        string
}

// The images' names in buildah's store, as the Makefile tags them.
const (
	enclaveImage = "enclave-signer:latest"
	shimImage    = "enclave-signer-shim:latest"
)

func inspect(t *testing.T, env []string, store, image string) inspection {
	t.Helper()
	cmd := exec.Command("buildah", "--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"),
		"--storage-driver", "vfs", "inspect", "--type", "image", image)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("buildah inspect: %v\n%s", err, stderr.Bytes())
	}
	var in inspection
	if err := json.Unmarshal(out, &in); err != nil {
		t.Fatalf("buildah inspect output: %v", err)
	}
	return in
}

// checkImageConfig checks the OCI image config: the production entry
// point, the environment (PATH and the pins, in order), no timestamps,
// labels or history, one layer.
func checkImageConfig(t *testing.T, raw string, pins map[string]string) {
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
		t.Fatalf("image config: %v", err)
	}
	if c.Created != "1970-01-01T00:00:00Z" || c.OS != "linux" || c.Architecture != "amd64" {
		t.Errorf("image config created %q os %q architecture %q: want the epoch, linux, amd64", c.Created, c.OS, c.Architecture)
	}
	if !slices.Equal(c.Config.Entrypoint, []string{"/signerd"}) || !slices.Equal(c.Config.Cmd, productionCmd) {
		t.Errorf("image entry point %q cmd %q: want [/signerd] %q", c.Config.Entrypoint, c.Config.Cmd, productionCmd)
	}
	wantEnv := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, arg := range []string{"KMS_KEYS", "KEYRING_SIGNERS", "KEYRING_THRESHOLD", "REQUIRE_AUTH", "AUDIT_OVERFLOW"} {
		wantEnv = append(wantEnv, pinVars[arg]+"="+pins[arg])
	}
	if !slices.Equal(c.Config.Env, wantEnv) {
		t.Errorf("image env %q\nwant %q (PATH and the pins: nitro-cli measures the environment into PCR0 and PCR2)", c.Config.Env, wantEnv)
	}
	if len(c.Config.Labels) != 0 || len(c.History) != 0 || c.Config.User != "" || c.Config.WorkingDir != "" {
		t.Errorf("image config carries labels %v, history %d entries, user %q, workdir %q: want none", c.Config.Labels, len(c.History), c.Config.User, c.Config.WorkingDir)
	}
	if len(c.RootFS.DiffIDs) != 1 {
		t.Errorf("image has %d layers, want 1", len(c.RootFS.DiffIDs))
	}
}

// checkLayer opens the docker-archive of image and checks its one layer:
// the file name alone, mode 0755, owner 0:0, time 0, the built bytes.
func checkLayer(t *testing.T, archive, name, image, wantSHA string) {
	t.Helper()
	files := readTar(t, archive)
	var manifest []struct {
		Config   string   `json:"Config"`
		RepoTags []string `json:"RepoTags"`
		Layers   []string `json:"Layers"`
	}
	if err := json.Unmarshal(files["manifest.json"].data, &manifest); err != nil || len(manifest) != 1 || len(manifest[0].Layers) != 1 {
		t.Fatalf("%s: manifest.json %s (%v): want one image of one layer", archive, files["manifest.json"].data, err)
	}
	if !slices.Contains(manifest[0].RepoTags, "docker.io/library/"+image) {
		t.Errorf("docker-archive tags %q: `docker load` would not give %s", manifest[0].RepoTags, image)
	}
	layer, ok := files[manifest[0].Layers[0]]
	if !ok {
		t.Fatalf("%s: no layer %s", archive, manifest[0].Layers[0])
	}
	tr := tar.NewReader(bytes.NewReader(layer.data))
	var entries []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		entries = append(entries, h.Name)
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != name || h.Typeflag != tar.TypeReg || h.FileInfo().Mode() != 0o755 || h.Uid != 0 || h.Gid != 0 ||
			h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != 0 || sha256Hex(data) != wantSHA {
			t.Errorf("layer entry %q type %c mode %v owner %d:%d (%q:%q) time %v sha256 %s: want %s, 0755, 0:0, time 0, %s",
				h.Name, h.Typeflag, h.FileInfo().Mode(), h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime.UTC(), sha256Hex(data), name, wantSHA)
		}
	}
	if !slices.Equal(entries, []string{name}) {
		t.Errorf("layer entries %q: want %s alone", entries, name)
	}
}

type tarFile struct{ data []byte }

// readTar reads a (docker-archive) tar, following its symlinks by name.
func readTar(t *testing.T, path string) map[string]tarFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]tarFile{}
	links := map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			links[h.Name] = filepath.ToSlash(filepath.Join(filepath.Dir(h.Name), h.Linkname))
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = tarFile{data: data}
		}
	}
	for name, target := range links {
		files[name] = files[target]
	}
	return files
}

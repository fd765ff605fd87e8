package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/policy"
)

// imageArchive writes a docker-archive, as make image writes it, whose
// config has env, and returns its path and image id.
func imageArchive(t *testing.T, env ...string) (path, id string) {
	t.Helper()
	envJSON, _ := json.Marshal(env)
	config := []byte(`{"created":"1970-01-01T00:00:00Z","architecture":"amd64","os":"linux","config":{"Env":` + string(envJSON) + `,"Entrypoint":["/signerd"]}}`)
	sum := sha256.Sum256(config)
	id = hex.EncodeToString(sum[:])
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{
		{id + ".json", config},
		{"manifest.json", []byte(`[{"Config":"` + id + `.json","RepoTags":["enclave-signer:latest"],"Layers":["l.tar"]}]`)},
		{"l.tar", []byte("a layer")},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg})
		tw.Write(f.data)
	}
	tw.Close()
	path = filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, "sha256:" + id
}

func TestImagePins(t *testing.T) {
	const keyA = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	const keyB = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
	pinned, pinnedID := imageArchive(t, "PATH=/bin", "SIGNERD_KMS_KEYS="+keyA+","+keyB, "SIGNERD_KEYRING_SIGNERS=", "SIGNERD_KEYRING_THRESHOLD=")
	code, stdout, stderr := signer(t, "", "image", "pins", pinned)
	var got imagePinsJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || got.ImageID != pinnedID || strings.Join(got.Pins.KMSKeys, " ") != keyA+" "+keyB || stderr != "" {
		t.Fatalf("signer image pins: exit %d\n%s\n%s\nwant id %s, both keys, no warning", code, stdout, stderr, pinnedID)
	}

	// make eif's use: nitro-cli's measurements with the pins added, which
	// policy update reads back.
	nitro := "Start building the Enclave Image...\n" + string(readTestdata(t, "measurements-v1.json"))
	meas := filepath.Join(t.TempDir(), "m.json")
	os.WriteFile(meas, []byte(nitro), 0o644)
	code, stdout, stderr = signer(t, "", "image", "pins", "--measurements", meas, pinned)
	if code != 0 {
		t.Fatalf("--measurements: exit %d\n%s", code, stderr)
	}
	m, err := policy.ParseMeasurements("out", []byte(stdout))
	if err != nil || m.ImageID != pinnedID || m.Pins == nil || !m.Pins.Pinned() || len(m.Pins.KMSKeys) != 2 || m.PCRs[0] == "" {
		t.Fatalf("--measurements output does not parse back with the pins: %v, %+v\n%s", err, m, stdout)
	}
	if strings.Contains(stdout, "Start building") || !strings.HasPrefix(stdout, "{") {
		t.Errorf("the progress line was kept:\n%s", stdout)
	}
	os.WriteFile(meas, []byte(stdout), 0o644)
	if code, _, stderr := signer(t, "", "image", "pins", "--measurements", meas, pinned); code != 1 || !strings.Contains(stderr, "already record an image's pins") {
		t.Errorf("pins added twice: exit %d, %s", code, stderr)
	}

	unpinned, _ := imageArchive(t, "PATH=/bin", "SIGNERD_KMS_KEYS=")
	code, stdout, stderr = signer(t, "", "image", "pins", unpinned)
	if code != 0 || !strings.Contains(stdout, `"KMSKeys": []`) || !strings.Contains(stderr, "pins no KMS key: its signerd accepts an identity sealed under any KMS key") {
		t.Errorf("unpinned image: exit %d\n%s\n%s\nwant empty KMSKeys and a warning", code, stdout, stderr)
	}

	alias, _ := imageArchive(t, "SIGNERD_KMS_KEYS=alias/signer")
	if code, _, stderr := signer(t, "", "image", "pins", alias); code != 1 || !strings.Contains(stderr, "pins alias/signer, which signerd refuses at start") {
		t.Errorf("an alias pinned: exit %d, %s", code, stderr)
	}
	notTar := filepath.Join(t.TempDir(), "x.tar")
	os.WriteFile(notTar, []byte("{}"), 0o644)
	if code, _, stderr := signer(t, "", "image", "pins", notTar); code != 1 || !strings.Contains(stderr, "docker-archive") {
		t.Errorf("not an archive: exit %d, %s", code, stderr)
	}
	if code, _, _ := signer(t, "", "image", "pins"); code != 2 {
		t.Errorf("no argument: exit %d, want 2", code)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "internal", "policy", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package imagepins

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
)

const (
	keyA = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	keyB = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
)

func TestFromEnv(t *testing.T) {
	p := FromEnv([]string{"PATH=/bin", EnvKMSKeys + "= " + keyA + " ,," + keyB, EnvKeyringSigners + "=", EnvKeyringThreshold + "=2"})
	if !slices.Equal(p.KMSKeys, []string{keyA, keyB}) || len(p.KeyringSigners) != 0 || p.KeyringThreshold != "2" || !p.Pinned() {
		t.Fatalf("pins %+v", p)
	}
	if p := FromEnv([]string{"PATH=/bin", EnvKMSKeys + "="}); p.Pinned() || p.KMSKeys == nil {
		t.Fatalf("empty: %+v, want unpinned with an empty (not nil) list", p)
	}
}

type entry struct {
	name, link string
	data       []byte
}

func archive(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}
		if e.link != "" {
			h = &tar.Header{Name: e.name, Linkname: e.link, Typeflag: tar.TypeSymlink}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadArchive(t *testing.T) {
	config := []byte(`{"created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/bin","` + EnvKMSKeys + `=` + keyA + `","` + EnvKeyringSigners + `=","` + EnvKeyringThreshold + `="]}}`)
	sum := sha256.Sum256(config)
	id := hex.EncodeToString(sum[:])
	manifest := []byte(`[{"Config":"` + id + `.json","RepoTags":["enclave-signer:latest"],"Layers":["l.tar"]}]`)
	for name, a := range map[string][]byte{
		"as buildah writes it": archive(t, entry{name: "l.tar", data: []byte("layer")}, entry{name: id + ".json", data: config}, entry{name: "manifest.json", data: manifest}),
		"config behind a link": archive(t, entry{name: "manifest.json", data: manifest}, entry{name: id + ".json", link: "blobs/c.json"}, entry{name: "blobs/c.json", data: config}),
	} {
		img, err := ReadArchive(bytes.NewReader(a))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if img.ID != "sha256:"+id || !slices.Equal(img.Pins.KMSKeys, []string{keyA}) || len(img.Env) != 4 {
			t.Errorf("%s: %+v, want id sha256:%s and the pin %s", name, img, id, keyA)
		}
	}

	for _, tc := range []struct {
		name string
		a    []byte
		want string
	}{
		{"no manifest", archive(t, entry{name: id + ".json", data: config}), "no manifest.json"},
		{"two images", archive(t, entry{name: "manifest.json", data: []byte(`[{"Config":"a.json"},{"Config":"b.json"}]`)}), "lists 2 images"},
		{"no config", archive(t, entry{name: "manifest.json", data: manifest}), "no config " + id + ".json"},
		{"bad config", archive(t, entry{name: "manifest.json", data: manifest}, entry{name: id + ".json", data: []byte("{")}), "config " + id + ".json"},
		{"not a tar", []byte("hello, this is not a tar file at all; it is much too short"), "docker-archive"},
	} {
		if _, err := ReadArchive(bytes.NewReader(tc.a)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

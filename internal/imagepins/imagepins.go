// Package imagepins reads the pins an enclave image carries: the KMS keys
// (and keyring signers) that signerd takes keys from, which
// Dockerfile.enclave sets as environment variables from make image's
// KMS_KEYS, KEYRING_SIGNERS and KEYRING_THRESHOLD. nitro-cli writes the
// image's environment into the enclave's root file system, so PCR0 commits
// to them; signerd reads them at start.
//
// ReadArchive reads them from a docker-archive, as make image writes it,
// and with the image id: what `signer image pins` prints and make eif
// records in measurements.json (see docs/image.md).
package imagepins

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// The environment variables that carry the pins, each a comma-separated
// list (the threshold a number).
const (
	EnvKMSKeys          = "SIGNERD_KMS_KEYS"
	EnvKeyringSigners   = "SIGNERD_KEYRING_SIGNERS"
	EnvKeyringThreshold = "SIGNERD_KEYRING_THRESHOLD"
	// EnvRequireAuth, "true", makes signerd refuse keyrings that declare
	// no clients (--require-auth).
	EnvRequireAuth   = "SIGNERD_REQUIRE_AUTH"
	EnvAuditOverflow = "SIGNERD_AUDIT_OVERFLOW"
)

// Pins are an image's pins. Its JSON form (nitro-cli's PascalCase) is the
// "Pins" member make eif adds to measurements.json.
type Pins struct {
	// KMSKeys are the KMS key ARNs an identity may be sealed under; empty:
	// the image is unpinned.
	KMSKeys []string `json:"KMSKeys"`
	// KeyringSigners are the keyring signers' public keys.
	KeyringSigners []string `json:"KeyringSigners"`
	// KeyringThreshold is how many of them must sign, as written ("" when
	// unset).
	KeyringThreshold string `json:"KeyringThreshold,omitempty"`
	// RequireAuth is SIGNERD_REQUIRE_AUTH as written ("" when unset).
	RequireAuth string `json:"RequireAuth,omitempty"`
	// AuditOverflow is what a full audit buffer does, as written ("" when
	// unset: refuse).
	AuditOverflow string `json:"AuditOverflow,omitempty"`
}

// Pinned reports whether the image pins the KMS keys its identity may be
// sealed under.
func (p Pins) Pinned() bool { return len(p.KMSKeys) > 0 }

// FromEnv reads the pins from an image's environment, NAME=VALUE strings
// as the image config's Env lists them.
func FromEnv(env []string) Pins {
	p := Pins{KMSKeys: []string{}, KeyringSigners: []string{}}
	for _, kv := range env {
		name, v, _ := strings.Cut(kv, "=")
		switch name {
		case EnvKMSKeys:
			p.KMSKeys = List(v)
		case EnvKeyringSigners:
			p.KeyringSigners = List(v)
		case EnvKeyringThreshold:
			p.KeyringThreshold = strings.TrimSpace(v)
		case EnvRequireAuth:
			p.RequireAuth = strings.TrimSpace(v)
		case EnvAuditOverflow:
			p.AuditOverflow = strings.TrimSpace(v)
		}
	}
	return p
}

// List splits a comma-separated value as signerd does: items trimmed,
// empty ones dropped.
func List(v string) []string {
	out := []string{}
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Image is what ReadArchive finds in a docker-archive.
type Image struct {
	// ID is the image id: "sha256:" and the SHA-256 of its config, as
	// make image writes to bin/image-id.
	ID string
	// Env is the config's environment.
	Env []string
	// Pins are read from Env.
	Pins Pins
}

// maxMetadata bounds manifest.json and the config read from an archive.
const maxMetadata = 1 << 20

// ReadArchive reads the image of a docker-archive (a tar with
// manifest.json naming the config) holding exactly one image.
func ReadArchive(r io.Reader) (*Image, error) {
	files := map[string][]byte{} // the small JSON files, by clean name
	links := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("docker-archive: %w", err)
		}
		name := path.Clean(h.Name)
		switch {
		case h.Typeflag == tar.TypeSymlink:
			links[name] = path.Join(path.Dir(name), h.Linkname)
		case h.Typeflag == tar.TypeReg && strings.HasSuffix(name, ".json") && h.Size <= maxMetadata:
			b, err := io.ReadAll(io.LimitReader(tr, maxMetadata+1))
			if err != nil {
				return nil, fmt.Errorf("docker-archive: %s: %w", name, err)
			}
			files[name] = b
		}
	}
	get := func(name string) ([]byte, bool) {
		name = path.Clean(name)
		for range 8 { // a few hops of links at most
			if b, ok := files[name]; ok {
				return b, true
			}
			target, ok := links[name]
			if !ok {
				return nil, false
			}
			name = path.Clean(target)
		}
		return nil, false
	}
	mb, ok := get("manifest.json")
	if !ok {
		return nil, errors.New("docker-archive: no manifest.json: want a docker-archive, as make image writes (bin/enclave-signer-amd64.tar)")
	}
	var manifest []struct {
		Config string `json:"Config"`
	}
	if err := json.Unmarshal(mb, &manifest); err != nil {
		return nil, fmt.Errorf("docker-archive: manifest.json: %w", err)
	}
	if len(manifest) != 1 || manifest[0].Config == "" {
		return nil, fmt.Errorf("docker-archive: manifest.json lists %d images, want one with a Config", len(manifest))
	}
	cb, ok := get(manifest[0].Config)
	if !ok {
		return nil, fmt.Errorf("docker-archive: no config %s (or over %d bytes)", manifest[0].Config, maxMetadata)
	}
	var config struct {
		Config struct {
			Env []string `json:"Env"`
		} `json:"config"`
	}
	if err := json.Unmarshal(cb, &config); err != nil {
		return nil, fmt.Errorf("docker-archive: config %s: %w", manifest[0].Config, err)
	}
	sum := sha256.Sum256(cb)
	return &Image{ID: "sha256:" + hex.EncodeToString(sum[:]), Env: config.Config.Env, Pins: FromEnv(config.Config.Env)}, nil
}

package kmsemu

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/policy"
)

// stateVersion is the version of the state file format.
const stateVersion = 1

// state is everything the emulator keeps, as stored in the state file.
type state struct {
	Version int            `json:"version"`
	Keys    []*keyRecord   `json:"keys"`
	Aliases []*aliasRecord `json:"aliases"`
}

// material is a key's 32-byte AES-256 key. It is test state, not a project
// secret, but it is still kept out of logs.
type material []byte

func (material) String() string       { return "REDACTED" }
func (material) LogValue() slog.Value { return slog.StringValue("REDACTED") }

type keyRecord struct {
	ID           string    `json:"id"`
	Account      string    `json:"account"`
	Region       string    `json:"region"`
	CreationDate time.Time `json:"creation_date"`
	Description  string    `json:"description"`
	Policy       string    `json:"policy"`
	Tags         []Tag     `json:"tags,omitempty"`
	// KeySpec and KeyUsage are empty in state files older than
	// asymmetric keys: SYMMETRIC_DEFAULT and ENCRYPT_DECRYPT.
	KeySpec  string `json:"key_spec,omitempty"`
	KeyUsage string `json:"key_usage,omitempty"`
	// Material is the AES-256 key of a symmetric key, the PKCS#8 DER
	// private key of an ECC key.
	Material material `json:"material"`

	parsed  *policy.Policy    // Policy, parsed; set by loadState and on change
	private *ecdsa.PrivateKey // an ECC key's Material, parsed
}

// Tag is a key's tag, with KMS's member names.
type Tag struct {
	TagKey   string `json:"TagKey"`
	TagValue string `json:"TagValue"`
}

func (k *keyRecord) arn() string {
	return "arn:aws:kms:" + k.Region + ":" + k.Account + ":key/" + k.ID
}

type aliasRecord struct {
	Name            string    `json:"name"` // alias/NAME
	Account         string    `json:"account"`
	Region          string    `json:"region"`
	TargetKeyID     string    `json:"target_key_id"`
	CreationDate    time.Time `json:"creation_date"`
	LastUpdatedDate time.Time `json:"last_updated_date"`
}

func (a *aliasRecord) arn() string {
	return "arn:aws:kms:" + a.Region + ":" + a.Account + ":" + a.Name
}

// loadState reads the state file at path, creating an empty one if it does
// not exist. An empty path gives an empty in-memory state.
func loadState(path string) (*state, error) {
	st := &state{Version: stateVersion}
	if path == "" {
		return st, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := saveState(path, st); err != nil {
			return nil, err
		}
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kmsemu: reading state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("kmsemu: state file %s: %v", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("kmsemu: state file %s: version %d, want %d", path, st.Version, stateVersion)
	}
	ids := map[string]bool{}
	for i, k := range st.Keys {
		if k == nil || !isUUID(k.ID) || ids[k.ID] {
			return nil, fmt.Errorf("kmsemu: state file %s: keys[%d]: missing, duplicate or malformed id", path, i)
		}
		ids[k.ID] = true
		if err := k.loadMaterial(); err != nil {
			return nil, fmt.Errorf("kmsemu: state file %s: key %s: %v", path, k.ID, err)
		}
		if k.Account == "" || k.Region == "" {
			return nil, fmt.Errorf("kmsemu: state file %s: key %s: account and region must be set", path, k.ID)
		}
		p, err := policy.Parse([]byte(k.Policy))
		if err != nil {
			return nil, fmt.Errorf("kmsemu: state file %s: key %s: policy: %v", path, k.ID, err)
		}
		k.parsed = p
	}
	for i, a := range st.Aliases {
		if a == nil || !strings.HasPrefix(a.Name, "alias/") || !ids[a.TargetKeyID] {
			return nil, fmt.Errorf("kmsemu: state file %s: aliases[%d]: bad name or unknown target key", path, i)
		}
	}
	return st, nil
}

// saveState writes st to path atomically: a temporary file in the same
// directory, fsync, rename, then fsync of the directory. The file's mode
// is 0600.
func saveState(path string, st *state) (err error) {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("kmsemu: encoding state: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("kmsemu: writing state: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("kmsemu: writing state: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("kmsemu: writing state: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("kmsemu: writing state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("kmsemu: writing state: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("kmsemu: writing state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// update applies change to a copy of the state, saves the copy and only
// then makes it current, so a failed write leaves memory and file as they
// were. s.mu must be held.
func (s *Server) update(change func(st *state) error) error {
	next := &state{Version: stateVersion}
	for _, k := range s.st.Keys {
		c := *k
		c.Tags = slices.Clone(k.Tags)
		next.Keys = append(next.Keys, &c)
	}
	for _, a := range s.st.Aliases {
		c := *a
		next.Aliases = append(next.Aliases, &c)
	}
	if err := change(next); err != nil {
		return err
	}
	if s.StatePath != "" {
		if err := saveState(s.StatePath, next); err != nil {
			return err
		}
	}
	s.st = next
	return nil
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// keyByID finds a key by id in account and region. s.mu must be held.
func (s *Server) keyByID(account, region, id string) *keyRecord {
	for _, k := range s.st.Keys {
		if k.ID == id && k.Account == account && k.Region == region {
			return k
		}
	}
	return nil
}

func (s *Server) aliasByName(account, region, name string) *aliasRecord {
	for _, a := range s.st.Aliases {
		if a.Name == name && a.Account == account && a.Region == region {
			return a
		}
	}
	return nil
}

// resolved is a key named by a request's KeyId.
type resolved struct {
	key   *keyRecord
	alias string // the alias name used, if any
}

// resolveKey finds the key a KeyId names: a key id, key ARN, alias name or
// alias ARN (aliases only when allowAlias, as KMS allows them only for
// some operations). Key ids and alias names are looked up in the caller's
// account; ARNs may name another account (the key policy then decides).
// s.mu must be held.
func (s *Server) resolveKey(c *call, member, ref string, allowAlias bool) (resolved, error) {
	if ref == "" {
		return resolved{}, required(member)
	}
	account, region, name := c.account, c.region, ref
	if strings.HasPrefix(ref, "arn:") {
		parts := strings.SplitN(ref, ":", 6)
		if len(parts) != 6 || parts[2] != "kms" || parts[3] == "" || parts[4] == "" {
			return resolved{}, apiErr(CodeNotFound, "Invalid arn %s", ref)
		}
		if parts[3] != c.region {
			return resolved{}, apiErr(CodeNotFound, "Invalid arn %s: region %s is not the request's region %s", ref, parts[3], c.region)
		}
		account, name = parts[4], parts[5]
		if !strings.HasPrefix(name, "key/") && !strings.HasPrefix(name, "alias/") {
			return resolved{}, apiErr(CodeNotFound, "Invalid arn %s", ref)
		}
	}
	if aliasName, ok := strings.CutPrefix(name, "alias/"); ok {
		if !allowAlias {
			return resolved{}, apiErr(CodeNotFound, "%s takes a key id or key ARN in %s, not an alias (%s)", c.op, member, ref)
		}
		a := s.aliasByName(account, region, "alias/"+aliasName)
		if a == nil {
			return resolved{}, apiErr(CodeNotFound, "Alias arn:aws:kms:%s:%s:alias/%s is not found.", region, account, aliasName)
		}
		k := s.keyByID(account, region, a.TargetKeyID)
		if k == nil {
			return resolved{}, fmt.Errorf("alias %s targets missing key %s", a.arn(), a.TargetKeyID)
		}
		return resolved{key: k, alias: a.Name}, nil
	}
	id := strings.TrimPrefix(name, "key/")
	if strings.HasPrefix(ref, "arn:") != strings.HasPrefix(name, "key/") {
		// "key/ID" without an ARN is not a valid KeyId.
		return resolved{}, apiErr(CodeNotFound, "Invalid keyId %s", ref)
	}
	k := s.keyByID(account, region, id)
	if k == nil {
		return resolved{}, apiErr(CodeNotFound, "Key 'arn:aws:kms:%s:%s:key/%s' does not exist", region, account, id)
	}
	return resolved{key: k}, nil
}

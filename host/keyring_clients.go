package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
)

// The flags of `signer keyring new` that declare clients and per-key
// policy (docs/keyring.md). Every per-client or per-key setting is
// THING=VALUE, one flag per thing:
//
//	--audience NAME  --client ID  --client-rate ID=RATE  --client-secret-dir DIR
//	--allow KEY=CLIENT[,CLIENT]  --kinds KEY=KIND[,KIND]
//	--key-rate KEY=RATE  --max-message KEY=BYTES
//
// RATE is N/s or N/s,burst=B (keyring.ParseRate).

type clientFlags struct {
	audience, secretDir                string
	clients, clientRates               multiFlag
	allow, kinds, keyRates, maxMessage multiFlag
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	c := &clientFlags{}
	fs.StringVar(&c.audience, "audience", "", "the deployment's `NAME` ([A-Za-z0-9._:-], up to 64), which every client request repeats; needed with --client")
	fs.Var(&c.clients, "client", "declare a client `ID` and generate its secret, written to --client-secret-dir/ID.secret (mode 0600); repeatable; makes the keyring policed")
	fs.Var(&c.clientRates, "client-rate", "limit a client over all its keys: `ID=RATE`, RATE N/s or N/s,burst=B (e.g. app1=10/s,burst=20); repeatable")
	fs.StringVar(&c.secretDir, "client-secret-dir", "", "write each new client's secret to `DIR`/ID.secret (created mode 0700 if missing; existing files are never replaced)")
	fs.Var(&c.allow, "allow", "let clients use a key: `KEY=CLIENT[,CLIENT...]`; a key without --allow in a keyring with clients can't be used; repeatable")
	fs.Var(&c.kinds, "kinds", "the request kinds a key signs: `KEY=KIND[,KIND]` (message, digest); default every kind its algorithm signs; repeatable")
	fs.Var(&c.keyRates, "key-rate", "limit a key over all its clients: `KEY=RATE`, RATE N/s or N/s,burst=B (e.g. k1=5/s,burst=5); repeatable")
	fs.Var(&c.maxMessage, "max-message", "the largest message a key signs: `KEY=BYTES` (1 to 1048576); repeatable")
	return c
}

// policyGiven reports whether any per-key policy flag was given.
func (c *clientFlags) policyGiven() bool {
	return len(c.allow)+len(c.kinds)+len(c.keyRates)+len(c.maxMessage) > 0
}

// assignments splits THING=VALUE flags into a map, refusing unknown or
// repeated THINGs.
func assignments(flagName string, vals []string, known func(string) bool, what string) (map[string]string, error) {
	m := map[string]string{}
	for _, v := range vals {
		name, val, ok := strings.Cut(v, "=")
		if !ok || name == "" || val == "" {
			return nil, usageErrorf("keyring new: --%s %q: want %s=VALUE", flagName, v, strings.ToUpper(what))
		}
		if !known(name) {
			return nil, usageErrorf("keyring new: --%s %q: no %s %q in this keyring", flagName, v, what, name)
		}
		if _, dup := m[name]; dup {
			return nil, usageErrorf("keyring new: --%s: %s %q given twice, want one --%s per %s", flagName, what, name, flagName, what)
		}
		m[name] = val
	}
	return m, nil
}

// apply checks the flags against the keys (setting each key's policy) and
// returns the clients to declare, without secrets yet. hasID says whether
// the keyring is format 2 (--id and --version).
func (c *clientFlags) apply(specs []keyring.KeySpec, hasID bool) ([]keyring.ClientSpec, error) {
	switch {
	case len(c.clients) == 0 && c.policyGiven():
		return nil, usageErrorf("keyring new: --allow, --kinds, --key-rate and --max-message need --client: a keyring without clients is open, and anyone may use its keys")
	case len(c.clients) == 0 && (c.audience != "" || c.secretDir != "" || len(c.clientRates) > 0):
		return nil, usageErrorf("keyring new: --audience, --client-secret-dir and --client-rate need --client ID")
	case len(c.clients) == 0:
		return nil, nil
	case !hasID:
		return nil, usageErrorf("keyring new: --client needs --id ID and --version N: clients and policies live in format 2 keyrings (sign it with --sign-with so the host can't change them)")
	case c.audience == "":
		return nil, usageErrorf("keyring new: --client needs --audience NAME: the deployment's name, which every client request repeats (e.g. payments-prod)")
	case c.secretDir == "":
		return nil, usageErrorf("keyring new: --client needs --client-secret-dir DIR: where each new client's secret is written (DIR/ID.secret, mode 0600)")
	}
	if err := keyring.CheckAudience(c.audience); err != nil {
		return nil, usageErrorf("keyring new: --audience: %v", err)
	}
	var clients []keyring.ClientSpec
	for _, id := range c.clients {
		if err := keyring.CheckID(id); err != nil {
			return nil, usageErrorf("keyring new: --client %q: id: %v", id, err)
		}
		if slices.ContainsFunc(clients, func(s keyring.ClientSpec) bool { return s.ID == id }) {
			return nil, usageErrorf("keyring new: --client %q given twice: client ids must be unique (across every keyring loaded together)", id)
		}
		clients = append(clients, keyring.ClientSpec{ID: id})
	}
	isClient := func(id string) bool {
		return slices.ContainsFunc(clients, func(s keyring.ClientSpec) bool { return s.ID == id })
	}
	rates, err := assignments("client-rate", c.clientRates, isClient, "client")
	if err != nil {
		return nil, err
	}
	for i := range clients {
		if v, ok := rates[clients[i].ID]; ok {
			r, err := keyring.ParseRate(v)
			if err != nil {
				return nil, usageErrorf("keyring new: --client-rate %s: %v", clients[i].ID, err)
			}
			clients[i].Rate = &r
		}
	}
	if err := c.applyPolicies(specs, isClient); err != nil {
		return nil, err
	}
	return clients, nil
}

// applyPolicies sets each key's policy from --allow, --kinds, --key-rate
// and --max-message.
func (c *clientFlags) applyPolicies(specs []keyring.KeySpec, isClient func(string) bool) error {
	isKey := func(id string) bool {
		return slices.ContainsFunc(specs, func(s keyring.KeySpec) bool { return s.ID == id })
	}
	allow, err := assignments("allow", c.allow, isKey, "key")
	if err != nil {
		return err
	}
	others := map[string]map[string]string{}
	for _, f := range []struct {
		name string
		vals multiFlag
	}{{"kinds", c.kinds}, {"key-rate", c.keyRates}, {"max-message", c.maxMessage}} {
		m, err := assignments(f.name, f.vals, isKey, "key")
		if err != nil {
			return err
		}
		for k := range m {
			if _, ok := allow[k]; !ok {
				return usageErrorf("keyring new: --%s %s: key %q has no --allow: give --allow %s=CLIENT (a key no client may use needs no policy)", f.name, k, k, k)
			}
		}
		others[f.name] = m
	}
	for i := range specs {
		k := &specs[i]
		list, ok := allow[k.ID]
		if !ok {
			continue
		}
		p := &keyring.KeyPolicy{}
		for _, id := range strings.Split(list, ",") {
			switch {
			case !isClient(id):
				return usageErrorf("keyring new: --allow %s=%s: %q is not a --client of this keyring", k.ID, list, id)
			case slices.Contains(p.Clients, id):
				return usageErrorf("keyring new: --allow %s=%s: client %q listed twice", k.ID, list, id)
			}
			p.Clients = append(p.Clients, id)
		}
		if v, ok := others["kinds"][k.ID]; ok {
			for _, kind := range strings.Split(v, ",") {
				switch {
				case kind != keyring.KindMessage && kind != keyring.KindDigest:
					return usageErrorf("keyring new: --kinds %s=%s: unknown kind %q, want message or digest", k.ID, v, kind)
				case kind == keyring.KindDigest && k.Algorithm == keyring.Ed25519:
					return usageErrorf("keyring new: --kinds %s=%s: %s is ed25519, which signs whole messages only: drop digest", k.ID, v, k.ID)
				case slices.Contains(p.Kinds, kind):
					return usageErrorf("keyring new: --kinds %s=%s: kind %q listed twice", k.ID, v, kind)
				}
				p.Kinds = append(p.Kinds, kind)
			}
		}
		if v, ok := others["key-rate"][k.ID]; ok {
			r, err := keyring.ParseRate(v)
			if err != nil {
				return usageErrorf("keyring new: --key-rate %s: %v", k.ID, err)
			}
			p.Rate = &r
		}
		if v, ok := others["max-message"][k.ID]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > keyring.MaxMessageBytesLimit || strings.HasPrefix(v, "+") {
				return usageErrorf("keyring new: --max-message %s=%s: want a number of bytes from 1 to %d", k.ID, v, keyring.MaxMessageBytesLimit)
			}
			p.MaxMessageBytes = n
		}
		k.Policy = p
	}
	return nil
}

// secretPath is where a client's secret file goes.
func (c *clientFlags) secretPath(id string) string { return filepath.Join(c.secretDir, id+".secret") }

// refuseExistingSecrets fails if any client's secret file exists: a
// running client may be using it.
func (c *clientFlags) refuseExistingSecrets(clients []keyring.ClientSpec) error {
	for _, cl := range clients {
		p := c.secretPath(cl.ID)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists: not replacing a client secret (a client may be using it); remove it or choose another --client-secret-dir", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// generateSecrets gives each client a new secret; wipe clears them all.
func generateSecrets(clients []keyring.ClientSpec) (wipe func(), err error) {
	wipe = func() {
		for _, c := range clients {
			for _, s := range c.Secrets {
				clear(s)
			}
		}
	}
	for i := range clients {
		s, err := keyring.GenerateClientSecret()
		if err != nil {
			wipe()
			return nil, err
		}
		clients[i].Secrets = [][]byte{s}
	}
	return wipe, nil
}

// writeSecrets writes each client's secret file (64 hex digits and a
// newline, mode 0600), never over an existing file. On error it removes
// the files it wrote; remove does the same later, if what follows fails.
func (c *clientFlags) writeSecrets(clients []keyring.ClientSpec) (remove func(), err error) {
	if err := os.MkdirAll(c.secretDir, 0o700); err != nil {
		return nil, fmt.Errorf("--client-secret-dir: %w", err)
	}
	var written []string
	remove = func() {
		for _, p := range written {
			os.Remove(p)
		}
	}
	for _, cl := range clients {
		p := c.secretPath(cl.ID)
		if err := writeSecretFile(p, cl.Secrets[0]); err != nil {
			remove()
			return nil, err
		}
		written = append(written, p)
	}
	return remove, nil
}

func writeSecretFile(path string, secret []byte) (err error) {
	data, err := keyring.EncodeClientSecretFile(secret)
	if err != nil {
		return err
	}
	defer clear(data)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: not replacing a client secret", path)
		}
		return fmt.Errorf("writing client secret: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	// 0600 whatever the umask did; the secret goes in only then.
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

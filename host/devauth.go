//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
)

// signer dev --auth: signerd runs with --require-auth, and the shim loads
// keyring-auth.age, a policed keyring (docs/keyring.md), instead of
// keyring.age. Its clients' secrets are in DIR/clients/ID.secret (mode
// 0600), as signer keyring new --client writes them.
const (
	devAuthKeyringFile = "keyring-auth.age"
	devAuthKeyringID   = "dev-auth"
	devAudience        = "dev"
	devClientsDir      = "clients"
)

// devClients are the clients of keyring-auth.age.
var devClients = []string{"app1", "app2"}

// devAuthKey is a key of keyring-auth.age and who may use it.
type devAuthKey struct {
	id      string
	alg     keyring.Algorithm
	clients []string
	rate    *keyring.Rate
}

// devAuthKeys: the dev keyring's three keys for both clients (what signer
// bench --auth signs with), a key of each client's own, and a key limited
// to 5 signatures a second with a burst of 5.
var devAuthKeys = []devAuthKey{
	{"dev-ed25519", keyring.Ed25519, devClients, nil},
	{"dev-p256", keyring.ECDSAP256, devClients, nil},
	{"dev-secp256k1", keyring.ECDSASecp256k1, devClients, nil},
	{"dev-app1", keyring.Ed25519, []string{"app1"}, nil},
	{"dev-app2", keyring.ECDSAP256, []string{"app2"}, nil},
	{"dev-limited", keyring.Ed25519, devClients, &keyring.Rate{PerSecond: 5, Burst: 5}},
}

// keyringFile is the stack's own keyring: keyring.age, or with --auth
// keyring-auth.age.
func (s *devStack) keyringFile() string {
	if s.opts.Auth {
		return filepath.Join(s.dir, devAuthKeyringFile)
	}
	return filepath.Join(s.dir, "keyring.age")
}

// clientSecretFile is the secret file of dev client id.
func clientSecretFile(dir, id string) string {
	return filepath.Join(dir, devClientsDir, id+".secret")
}

// missingClientSecret names a dev client whose secret file is missing, "" when
// none is.
func (s *devStack) missingClientSecret() string {
	for _, id := range devClients {
		if _, err := os.Stat(clientSecretFile(s.dir, id)); err != nil {
			return clientSecretFile(s.dir, id)
		}
	}
	return ""
}

// makeAuthKeyring writes keyring-auth.age with new keys and new client
// secrets, the secret files, and the keyring's signature.
func (s *devStack) makeAuthKeyring(ctx context.Context, path, why string) error {
	r, err := age.ParseX25519Recipient(s.recipient)
	if err != nil {
		return fmt.Errorf("recipient.txt: %w", err)
	}
	clients := make([]keyring.ClientSpec, len(devClients))
	defer func() {
		for _, c := range clients {
			for _, sec := range c.Secrets {
				clear(sec)
			}
		}
	}()
	for i, id := range devClients {
		sec, err := keyring.GenerateClientSecret()
		if err != nil {
			return err
		}
		clients[i] = keyring.ClientSpec{ID: id, Secrets: [][]byte{sec}}
	}
	specs := make([]keyring.KeySpec, len(devAuthKeys))
	for i, k := range devAuthKeys {
		specs[i] = keyring.KeySpec{ID: k.id, Algorithm: k.alg, Policy: &keyring.KeyPolicy{Clients: k.clients, Rate: k.rate}}
	}
	ct, _, err := keyring.GenerateKeyring(keyring.GenerateOptions{
		Keys: specs, Recipients: []age.Recipient{r},
		KeyringID: devAuthKeyringID, KeyringVersion: 1,
		Audience: devAudience, Clients: clients,
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(s.dir, devClientsDir), 0o700); err != nil {
		return err
	}
	for _, c := range clients {
		if err := writeClientSecret(clientSecretFile(s.dir, c.ID), c.Secrets[0]); err != nil {
			return err
		}
	}
	if err := writeCiphertextFile(path, ct, true); err != nil {
		return err
	}
	what := devAuthKeyringFile + " (keys " + devAuthKeyIDs() + "; audience " + devAudience + ", clients " + strings.Join(devClients, ", ") + "; keyring " + devAuthKeyringID + " version 1)"
	if why != "" {
		what += " anew: " + why
	}
	s.created = append(s.created, what, devClientsDir+"/"+strings.Join(devClients, ".secret, ")+".secret (the clients' secrets, mode 0600)")
	return s.signKeyring(ctx, path, ct, devAuthKeyringID, 1, []string{s.recipient}, devAuthKeyringFile+".sig (its statement, signed by the keyring signer)")
}

func devAuthKeyIDs() string {
	ids := make([]string, len(devAuthKeys))
	for i, k := range devAuthKeys {
		ids[i] = k.id
	}
	return strings.Join(ids, ", ")
}

// writeClientSecret writes a client secret file (64 hex digits and a
// newline), mode 0600 from its first moment, replacing any.
func writeClientSecret(path string, secret []byte) (err error) {
	data, err := keyring.EncodeClientSecretFile(secret)
	if err != nil {
		return err
	}
	defer clear(data)
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// printAuthSummary is the summary's part for --auth.
func (s *devStack) printAuthSummary(e *env, curlEndpoint string) {
	w := e.stdout
	fmt.Fprintf(w, "Clients:        %s, audience %s; secrets %s (signerd --require-auth: every keyring must declare clients)\n",
		strings.Join(devClients, ", "), devAudience, clientSecretFile(s.dir, "ID"))
	for _, k := range devAuthKeys {
		rate := ""
		if k.rate != nil {
			rate = ", rate " + k.rate.String()
		}
		fmt.Fprintf(w, "  key %-14s %s, for %s%s\n", k.id, k.alg, strings.Join(k.clients, " and "), rate)
	}
	fmt.Fprintf(w, "Sign as a client:\n  signer sign --endpoint %s --client app1 --client-secret %s --key dev-app1 --message-file FILE\n",
		curlEndpoint, clientSecretFile(s.dir, "app1"))
	fmt.Fprintf(w, "  python3 docs/examples/sign.py %s app1 %s dev-app1 hello\n", s.httpURL, clientSecretFile(s.dir, "app1"))
}

//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// checkDevFiles refuses a directory whose files no longer belong together.
// The KMS key in kms-state.json sealed identity.enc; recipient.txt is the
// public half of the identity that identity.enc holds; keyring.age (and
// every --keyring) is encrypted to it. Making one of them anew beside the
// others (a new key, or a new identity overwriting recipient.txt) leaves
// keyrings that nothing can open, so signer dev stops instead, changing
// nothing, and says which files to remove together. keyring.age alone may
// be missing: signer dev makes a new one for the same identity.
func checkDevFiles(dir string) error {
	has := func(name string) bool {
		_, err := os.Lstat(filepath.Join(dir, name))
		return err == nil
	}
	present := func(names ...string) []string {
		var out []string
		for _, n := range names {
			if has(n) {
				out = append(out, n)
			}
		}
		return out
	}
	remove := func(names []string) string {
		paths := make([]string, len(names))
		for i, n := range names {
			paths[i] = filepath.Join(dir, n)
		}
		return fmt.Sprintf("remove %s together (rm %s), or rm -rf %s to start over", strings.Join(names, " and "), strings.Join(paths, " "), dir)
	}
	key, id, rec, kr := has("kms-state.json"), has("identity.enc"), has("recipient.txt"), has("keyring.age")
	switch {
	case !key && (id || rec || kr):
		p := present("identity.enc", "recipient.txt", "keyring.age")
		return fmt.Errorf("%s is missing: it held the KMS key that sealed identity.enc, and a new key could not open what is left (%s): %s",
			filepath.Join(dir, "kms-state.json"), strings.Join(p, ", "), remove(p))
	case !id && (rec || kr):
		p := present("recipient.txt", "keyring.age")
		return fmt.Errorf("%s is missing, but %s belong to the identity it held: a new identity could not open keyring.age, nor any --keyring encrypted to recipient.txt. Restore identity.enc, or %s",
			filepath.Join(dir, "identity.enc"), strings.Join(p, " and "), remove(p))
	case id && !rec:
		p := present("identity.enc", "keyring.age")
		return fmt.Errorf("%s is missing: it is the public half of the identity in identity.enc, to which keyrings are encrypted. Restore it, or %s",
			filepath.Join(dir, "recipient.txt"), remove(p))
	}
	if fi, err := os.Stat(filepath.Join(dir, "keyring.age")); err == nil && fi.Size() == 0 {
		return fmt.Errorf("%s is empty (0 bytes), so it holds no keys: remove it, and signer dev makes a new one with keys dev-ed25519, dev-p256 and dev-secp256k1", filepath.Join(dir, "keyring.age"))
	}
	return nil
}

// devKeyringFile is a --keyring of signer dev's.
func devKeyringFile(dir, path string) inputFile {
	return inputFile{cmd: "dev", arg: "--keyring", path: path,
		want: "an age-encrypted keyring, encrypted to " + filepath.Join(dir, "recipient.txt") + " (signer keyring new --recipient-file " + filepath.Join(dir, "recipient.txt") + " --out FILE makes one)"}
}

// devPolicyFile is signer dev's --policy.
func devPolicyFile(path string) inputFile {
	return inputFile{cmd: "dev", arg: "--policy", path: path,
		want: "a key policy's JSON, such as signer policy render writes"}
}

// checkExtraKeyrings checks the --keyring files before anything starts:
// each must exist and hold something (a keyring of 0 bytes holds no keys).
func checkExtraKeyrings(dir string, keyrings []string) error {
	rec := filepath.Join(dir, "recipient.txt")
	for _, k := range keyrings {
		f, err := devKeyringFile(dir, k).open()
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			return err
		}
		if fi.Size() == 0 {
			return fmt.Errorf("--keyring %s is empty (0 bytes), so it holds no keys: a keyring holds at least one key, age-encrypted to %s; make one with\n  signer keyring new --recipient-file %s --key ID:ecdsa-p256 --out %s\n(algorithms ed25519, ecdsa-p256, ecdsa-secp256k1; repeat --key for more keys)", k, rec, rec, k)
		}
	}
	return nil
}

// checkNoKeyNoFiles is checkDevFiles' rule for a kms-state.json that holds
// no key under the dev alias: a new key could not open identity.enc, so
// nothing sealed or encrypted by the old one may remain.
func checkNoKeyNoFiles(dir string) error {
	var present, paths []string
	for _, n := range []string{"identity.enc", "recipient.txt", "keyring.age"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			present = append(present, n)
			paths = append(paths, filepath.Join(dir, n))
		}
	}
	if len(present) == 0 {
		return nil
	}
	return fmt.Errorf("%s holds no key with alias %s, and a new key could not open what is left (%s): remove %s together (rm %s), or rm -rf %s to start over",
		filepath.Join(dir, "kms-state.json"), devKeyAlias, strings.Join(present, ", "), strings.Join(present, " and "), strings.Join(paths, " "), dir)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// runSeal is `signer seal --key-id ID [--encryption-context K=V]...
// [--out FILE] [--force] [--endpoint-url URL] [--region R]`: a new age
// X25519 identity, created in memory and sealed by KMS Encrypt; the
// ciphertext goes to --out, the recipient (age1…) to stdout. It replaces
// the operator guide's age-keygen, aws kms encrypt and shred: the identity
// is never written anywhere in the clear.
func runSeal(e *env) error {
	fs := newFlagSet(e, "seal")
	keyID := fs.String("key-id", "", "the KMS key to seal under: key `ID`, key ARN, alias/NAME or alias ARN (required)")
	var ctxFlags multiFlag
	fs.Var(&ctxFlags, "encryption-context", "bind the ciphertext to `K=V` (repeatable); decrypting then needs the same pairs")
	out := fs.String("out", "identity.enc", "where to write the sealed identity (the raw KMS CiphertextBlob)")
	force := fs.Bool("force", false, "replace an existing --out file (the identity in it is lost, and with it every keyring encrypted to it)")
	awsf := addAWSFlags(fs)
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return unexpectedArg("seal", pos[0], "")
	}
	if *keyID == "" {
		return usageErrorf("seal: --key-id is required: the KMS key id, key ARN or alias/NAME to seal under")
	}
	if *out == "" {
		return usageErrorf("seal: --out must name a file")
	}
	encCtx, err := parseEncryptionContext(ctxFlags)
	if err != nil {
		return usageErrorf("seal: --encryption-context: %v", err)
	}
	if err := awsf.validate("seal"); err != nil {
		return err
	}
	if !*force {
		if err := refuseExisting(*out); err != nil {
			return fmt.Errorf("seal: %w", err)
		}
	}
	// Before KMS Encrypt: an identity sealed and then not written would
	// be a KMS call for nothing.
	if err := checkOutput("seal", "--out", *out); err != nil {
		return err
	}
	conn, err := newKMSConn(e, awsf)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}

	id, err := age.GenerateX25519Identity()
	if err != nil {
		return fmt.Errorf("seal: generating the age identity: %v", err)
	}
	recipient := id.Recipient().String()
	keyFile := ageKeyFile(id, time.Now())
	res, err := kmsCall(e, conn, "Encrypt", func(ctx context.Context, c *kms.Client) (*kms.EncryptOutput, error) {
		return c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(*keyID), Plaintext: keyFile, EncryptionContext: encCtx})
	})
	clear(keyFile)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if len(res.CiphertextBlob) == 0 {
		return errors.New("seal: kms Encrypt answered no CiphertextBlob")
	}
	if err := writeCiphertextFile(*out, res.CiphertextBlob, *force); err != nil {
		return fmt.Errorf("seal: %w", err)
	}

	fmt.Fprintln(e.stdout, recipient)
	sealedUnder := aws.ToString(res.KeyId)
	if sealedUnder == "" {
		sealedUnder = *keyID
	}
	fmt.Fprintf(e.stderr, "signer: sealed a new age identity under %s into %s (%d bytes of KMS ciphertext)\n", sealedUnder, *out, len(res.CiphertextBlob))
	if len(encCtx) > 0 {
		fmt.Fprintf(e.stderr, "signer: encryption context %s: the enclave must send exactly these pairs to decrypt it\n", formatEncryptionContext(encCtx))
	}
	fmt.Fprintf(e.stderr, "signer: the recipient above is public: keep it (e.g. signer seal ... > recipient.txt) to encrypt keyrings to\n")
	fmt.Fprintf(e.stderr, "signer: next: signer keyring new --recipient %s --key ID:ALGORITHM --out keyring.age\n", recipient)
	fmt.Fprintf(e.stderr, "signer: the identity exists only inside %s: back it up; only an enclave the key policy admits can open it\n", *out)
	return nil
}

// ageKeyFile formats an identity as age-keygen writes a key file. The
// result is secret; the caller wipes it. (The identity's String is an
// immutable Go string and can't be wiped: see internal/keyring's documentation
// for the limits of wiping.)
func ageKeyFile(id *age.X25519Identity, now time.Time) []byte {
	created := "# created: " + now.UTC().Format(time.RFC3339) + "\n"
	pub := "# public key: " + id.Recipient().String() + "\n"
	secret := id.String()
	b := make([]byte, 0, len(created)+len(pub)+len(secret)+1)
	b = append(b, created...)
	b = append(b, pub...)
	b = append(b, secret...)
	return append(b, '\n')
}

// parseEncryptionContext reads K=V pairs. Keys must be unique and
// non-empty; a value may contain '='.
func parseEncryptionContext(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q: want KEY=VALUE with a non-empty key and value", p)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("key %q given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

func formatEncryptionContext(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}

// refuseExisting fails if path exists, before any work is done: a sealed
// identity or keyring being replaced by accident loses whatever depends on
// it.
func refuseExisting(path string) error {
	_, err := os.Lstat(path)
	if err == nil {
		return fmt.Errorf("%s already exists: not replacing it (pass --force to replace it)", path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeCiphertextFile writes data (ciphertext only: mode 0644) to path
// atomically: a temporary file in the same directory, synced, then linked
// into place, which fails if path exists unless replace is set (then
// renamed over it). Readers see either nothing, the old file, or the whole
// new one.
func writeCiphertextFile(path string, data []byte, replace bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
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
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if replace {
		if err = os.Rename(tmp, path); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	} else {
		if err = os.Link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s already exists: not replacing it (pass --force to replace it)", path)
			}
			return fmt.Errorf("writing %s: %w", path, err)
		}
		os.Remove(tmp)
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync() // best effort: make the new name durable
		d.Close()
	}
	return nil
}

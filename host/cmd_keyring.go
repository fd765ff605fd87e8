package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyringsig"
)

func runKeyring(e *env) error {
	return subcommand(e, "keyring", map[string]func(*env) error{
		"new":        runKeyringNew,
		"sign":       runKeyringSign,
		"signer-key": runKeyringSignerKey,
		"verify":     runKeyringVerify,
	})
}

// runKeyringNew is `signer keyring new --recipient age1… [--recipient-file
// FILE]... --key ID:ALGORITHM... --out FILE [--armor] [--force] [--id ID
// --version N [--sign-with SIGNER...] [window] [--audience NAME --client
// ID... --client-secret-dir DIR [--client-rate ID=RATE] [--allow
// KEY=CLIENT,...] [--kinds KEY=KIND,...] [--key-rate KEY=RATE]
// [--max-message KEY=BYTES]]]`: new keys generated in memory, written as a
// keyring encrypted with age to the recipients, and, with --sign-with,
// FILE.sig, the signed statement about it; each new client's secret goes
// to its own file (mode 0600); stdout gets only the public keys, as GET
// /v1/keys shows them.
func runKeyringNew(e *env) error {
	fs := newFlagSet(e, "keyring new")
	var recipients, recipientFiles, keySpecs multiFlag
	fs.Var(&recipients, "recipient", "encrypt to this age X25519 `RECIPIENT` (age1…, as signer seal prints it); repeatable")
	fs.Var(&recipientFiles, "recipient-file", "encrypt to each recipient in `FILE` (one per line, # comments); repeatable")
	fs.Var(&keySpecs, "key", "generate a key `ID:ALGORITHM` (algorithm ed25519, ecdsa-p256 or ecdsa-secp256k1); repeatable")
	out := fs.String("out", "", "write the age-encrypted keyring to `FILE` (required)")
	armored := fs.Bool("armor", false, "write an ASCII-armored age file (-----BEGIN AGE ENCRYPTED FILE-----) instead of binary")
	force := fs.Bool("force", false, "replace an existing --out file (and FILE.sig)")
	var signWith multiFlag
	fs.Var(&signWith, "sign-with", "sign the keyring with `SIGNER` (kms:KEY or file:PATH), writing FILE.sig next to it; repeatable; needs --id and --version")
	krID := fs.String("id", "", "the keyring's `ID`: makes a format 2 keyring naming it, as a signed keyring must")
	krVersion := fs.String("version", "", "the keyring's version `N` (with --id)")
	win := addWindowFlags(fs)
	awsf := addAWSFlags(fs)
	cf := addClientFlags(fs)
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if err := awsf.validate("keyring new"); err != nil {
		return err
	}
	var ver uint64
	switch {
	case len(signWith) > 0 && (*krID == "" || *krVersion == ""):
		return usageErrorf("keyring new: --sign-with needs --id ID and --version N: what the signed statement says the keyring is")
	case (*krID == "") != (*krVersion == ""):
		return usageErrorf("keyring new: give --id and --version together")
	case len(signWith) == 0 && win.given():
		return usageErrorf("keyring new: --not-before, --not-after and --valid-for are the signed statement's window: they need --sign-with")
	case *krID != "":
		if err := keyringsig.CheckID(*krID); err != nil {
			return usageErrorf("keyring new: --id: %v", err)
		}
		if ver, err = parseKeyringVersion("keyring new", *krVersion); err != nil {
			return err
		}
	}
	if len(pos) > 0 {
		return unexpectedArg("keyring new", pos[0], "give keys as --key ID:ALGORITHM")
	}
	if *out == "" {
		return usageErrorf("keyring new: --out FILE is required: where to write the encrypted keyring")
	}
	if len(keySpecs) == 0 {
		return usageErrorf("keyring new: want at least one --key ID:ALGORITHM (algorithm ed25519, ecdsa-p256 or ecdsa-secp256k1)")
	}
	specs := make([]keyring.KeySpec, 0, len(keySpecs))
	seen := map[string]bool{}
	for _, s := range keySpecs {
		id, alg, ok := strings.Cut(s, ":")
		if !ok {
			return usageErrorf("keyring new: --key %q: want ID:ALGORITHM, e.g. payments:ecdsa-secp256k1", s)
		}
		if err := keyring.CheckID(id); err != nil {
			return usageErrorf("keyring new: --key %q: id: %v", s, err)
		}
		a, err := keyring.ParseAlgorithm(alg)
		if err != nil {
			return usageErrorf("keyring new: --key %q: %v", s, err)
		}
		if seen[id] {
			return usageErrorf("keyring new: --key: id %q given twice: key ids must be unique (across every keyring loaded together)", id)
		}
		seen[id] = true
		specs = append(specs, keyring.KeySpec{ID: id, Algorithm: a})
	}
	clients, err := cf.apply(specs, *krID != "")
	if err != nil {
		return err
	}
	var rcpts []age.Recipient
	var rcptNames []string
	for i, r := range recipients {
		x, err := parseRecipient(r)
		if err != nil {
			return usageErrorf("keyring new: --recipient %d: %v", i+1, err)
		}
		rcpts, rcptNames = append(rcpts, x), append(rcptNames, x.String())
	}
	for _, f := range recipientFiles {
		b, err := recipientFile("keyring new", f).read(e, 64<<10)
		if err != nil {
			return err
		}
		xs, err := parseRecipientFile(b)
		clear(b) // in case someone pointed it at an identity file
		if err != nil {
			return usageErrorf("keyring new: --recipient-file %s: %v", f, err)
		}
		for _, x := range xs {
			rcpts, rcptNames = append(rcpts, x), append(rcptNames, x.String())
		}
	}
	if len(rcpts) == 0 {
		return usageErrorf("keyring new: want --recipient age1… or --recipient-file FILE: the sealed identity's recipient, as signer seal prints it")
	}
	if err := checkOutput("keyring new", "--out", *out); err != nil {
		return err
	}
	sigPath := *out + sigSuffix
	if !*force {
		if err := refuseExisting(*out); err != nil {
			return fmt.Errorf("keyring new: %w", err)
		}
	}
	if len(signWith) == 0 {
		// A signature file left from an older keyring would not match the
		// new one.
		if err := refuseExisting(sigPath); err != nil {
			return fmt.Errorf("keyring new: %s would not match the new keyring: remove it, or sign the new keyring (--sign-with)", sigPath)
		}
	} else if !*force {
		if err := refuseExisting(sigPath); err != nil {
			return fmt.Errorf("keyring new: %w", err)
		}
	}
	if err := cf.refuseExistingSecrets(clients); err != nil {
		return fmt.Errorf("keyring new: %w", err)
	}
	var nb, na time.Time
	if len(signWith) > 0 {
		if nb, na, err = win.window("keyring new", time.Now()); err != nil {
			return err
		}
	}
	var signers []keyringsig.Signer
	for _, spec := range signWith {
		sg, err := openSigner(e, "keyring new", "--sign-with", spec, awsf)
		if err != nil {
			return err
		}
		signers = append(signers, sg)
	}

	// The client secrets exist in memory, in the keyring's plaintext (wiped
	// by GenerateKeyring) and in their files only.
	wipe, err := generateSecrets(clients)
	if err != nil {
		return fmt.Errorf("keyring new: %w", err)
	}
	defer wipe()
	ct, infos, err := keyring.GenerateKeyring(keyring.GenerateOptions{Keys: specs, Recipients: rcpts, Armor: *armored, KeyringID: *krID, KeyringVersion: ver,
		Audience: cf.audience, Clients: clients})
	if err != nil {
		return fmt.Errorf("keyring new: %w", err)
	}
	// Signed before anything is written: a refused signature leaves no
	// keyring behind that signerd would refuse.
	var signed *keyringsig.Signed
	if len(signers) > 0 {
		st, err := keyringsig.NewStatement(*krID, ver, nb, na, rcptNames, ct)
		if err != nil {
			return fmt.Errorf("keyring new: %w", err)
		}
		if signed, err = keyringsig.NewSigned(st); err != nil {
			return fmt.Errorf("keyring new: %w", err)
		}
		for i, sg := range signers {
			if _, err := keyringsig.Sign(e.ctx, sg, signed); err != nil {
				return fmt.Errorf("keyring new: --sign-with %s: %w (nothing written)", signWith[i], err)
			}
		}
	}
	removeSecrets := func() {}
	if len(clients) > 0 {
		if removeSecrets, err = cf.writeSecrets(clients); err != nil {
			return fmt.Errorf("keyring new: %w (keyring not written)", err)
		}
	}
	wipe()
	if err := writeCiphertextFile(*out, ct, *force); err != nil {
		removeSecrets() // they would belong to no keyring
		return fmt.Errorf("keyring new: %w", err)
	}
	if signed != nil {
		if err := writeCiphertextFile(sigPath, signed.Marshal(), *force); err != nil {
			return fmt.Errorf("keyring new: %w", err)
		}
	}
	doc, err := json.MarshalIndent(struct {
		Keys []keyring.KeyInfo `json:"keys"`
	}{infos}, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\n", doc)
	fmt.Fprintf(e.stderr, "signer: wrote %s to %s, encrypted to %s\n", plural(len(infos), "new key"), *out, strings.Join(rcptNames, ", "))
	if signed != nil {
		st := signed.Statement
		fmt.Fprintf(e.stderr, "signer: signed it as keyring %s version %d, valid %s to %s, by %s: %s\n", st.KeyringID, st.Version,
			st.NotBefore.Format(time.RFC3339), st.NotAfter.Format(time.RFC3339), plural(len(signed.Signatures), "signer"), sigPath)
	}
	fmt.Fprintf(e.stderr, "signer: the private keys exist only inside %s: back it up; the public keys are above\n", *out)
	printClients(e, cf, clients, specs)
	return nil
}

// parseRecipient reads one age X25519 recipient. Post-quantum recipients
// (age1pq1…) are refused: the identities signer seal makes are X25519, and
// Debian's age 1.1 can't use them. A secret key given by mistake is never
// quoted.
func parseRecipient(s string) (*age.X25519Recipient, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(strings.ToUpper(s), "AGE-SECRET-KEY-"):
		return nil, fmt.Errorf("this is an age identity (a secret key), want its recipient (age1…, the public key); do not pass secret keys on the command line")
	case strings.HasPrefix(s, "age1pq1"):
		return nil, fmt.Errorf("post-quantum recipients (age1pq1…) are not supported, want an X25519 recipient (age1…) such as signer seal prints")
	case !strings.HasPrefix(s, "age1"):
		return nil, fmt.Errorf("%q is not an age recipient, want age1… (as signer seal prints it)", s)
	}
	x, err := age.ParseX25519Recipient(s)
	if err != nil {
		return nil, fmt.Errorf("%q: malformed age X25519 recipient (bad bech32 encoding or checksum)", s)
	}
	return x, nil
}

// parseRecipientFile reads recipients one per line, skipping blank lines
// and # comments, as age -R does.
func parseRecipientFile(b []byte) ([]*age.X25519Recipient, error) {
	var xs []*age.X25519Recipient
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		x, err := parseRecipient(line)
		if err != nil {
			if strings.HasPrefix(strings.ToUpper(line), "AGE-SECRET-KEY-") {
				return nil, fmt.Errorf("line %d: this is an age identity (a secret key), want recipients (age1…) only", n)
			}
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		xs = append(xs, x)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(xs) == 0 {
		return nil, fmt.Errorf("no recipients found, want lines of age1…")
	}
	return xs, nil
}

// printClients tells where each client's secret went and which keys no
// client may use.
func printClients(e *env, cf *clientFlags, clients []keyring.ClientSpec, specs []keyring.KeySpec) {
	if len(clients) == 0 {
		return
	}
	for _, c := range clients {
		fmt.Fprintf(e.stderr, "signer: client %s: secret written to %s (mode 0600): give it to that client only (--client %s --client-secret FILE)\n", c.ID, cf.secretPath(c.ID), c.ID)
	}
	for _, k := range specs {
		if k.Policy == nil {
			fmt.Fprintf(e.stderr, "signer: warning: key %s has no --allow: no client may use it\n", k.ID)
		}
	}
}

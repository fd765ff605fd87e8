package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyringsig"
)

// Signed keyrings (docs/keyring.md): signer keyring sign, signer-key and
// verify, and the signing part of keyring new. A keyring's signature file
// is KEYRING.sig, next to it.

// sigSuffix names a keyring's signature file: KEYRING.sig.
const sigSuffix = ".sig"

// maxKeyringFile bounds a keyring file read for signing or verifying: one
// provisioning carries at most 1 MiB in all.
const maxKeyringFile = 4 << 20

// defaultValidity is how long a statement is valid when neither
// --not-after nor --valid-for is given.
const defaultValidity = 90 * 24 * time.Hour

// notBeforeSkew is how far back --not-before defaults from now, so that
// a signer's clock a little ahead of the NSM's does not make a fresh
// keyring "not yet valid".
const notBeforeSkew = 10 * time.Minute

// windowFlags are the validity window's flags.
type windowFlags struct {
	notBefore, notAfter, validFor string
}

func addWindowFlags(fs interface {
	StringVar(p *string, name, value, usage string)
}) *windowFlags {
	w := &windowFlags{}
	fs.StringVar(&w.notBefore, "not-before", "", "the keyring is valid from `TIME` (RFC 3339, e.g. 2026-01-01T00:00:00Z); default now minus 10 minutes")
	fs.StringVar(&w.notAfter, "not-after", "", "the keyring is valid until `TIME` (RFC 3339), included; default --not-before plus --valid-for")
	fs.StringVar(&w.validFor, "valid-for", "", "the window's length, `DURATION` such as 90d or 720h, when --not-after is not given (default 90d)")
	return w
}

func (w *windowFlags) given() bool { return w.notBefore != "" || w.notAfter != "" || w.validFor != "" }

// window returns the window the flags ask for, as of now.
func (w *windowFlags) window(cmd string, now time.Time) (nb, na time.Time, err error) {
	nb = now.Add(-notBeforeSkew).Truncate(time.Second)
	if w.notBefore != "" {
		if nb, err = time.Parse(time.RFC3339, w.notBefore); err != nil {
			return nb, na, usageErrorf("%s: --not-before %q: want RFC 3339 time such as 2026-01-01T00:00:00Z", cmd, w.notBefore)
		}
	}
	if w.notAfter != "" && w.validFor != "" {
		return nb, na, usageErrorf("%s: give --not-after or --valid-for, not both", cmd)
	}
	if w.notAfter != "" {
		if na, err = time.Parse(time.RFC3339, w.notAfter); err != nil {
			return nb, na, usageErrorf("%s: --not-after %q: want RFC 3339 time such as 2026-04-01T00:00:00Z", cmd, w.notAfter)
		}
	} else {
		d := defaultValidity
		if w.validFor != "" {
			if d, err = parseValidity(w.validFor); err != nil {
				return nb, na, usageErrorf("%s: --valid-for %q: %v", cmd, w.validFor, err)
			}
		}
		na = nb.Add(d)
	}
	if !na.After(nb) {
		return nb, na, usageErrorf("%s: the window ends (%s) before it begins (%s)", cmd, na.UTC().Format(time.RFC3339), nb.UTC().Format(time.RFC3339))
	}
	return nb, na, nil
}

// parseValidity reads a Go duration or a number of days ("90d").
func parseValidity(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 100*365 {
			return 0, errors.New("want a positive number of days (90d) or a duration (720h)")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("want a positive number of days (90d) or a duration (720h)")
	}
	return d, nil
}

// keyringVersionFlag reads --version N.
func parseKeyringVersion(cmd, s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, usageErrorf("%s: --version %q: want an unsigned integer (the keyring's version: raise it with every new keyring of this id)", cmd, s)
	}
	return v, nil
}

// statementJSON is how sign and verify print a statement.
type statementJSON struct {
	Valid          *bool    `json:"valid,omitempty"`
	Keyring        string   `json:"keyring"`
	SignatureFile  string   `json:"signature_file"`
	KeyringID      string   `json:"keyring_id,omitempty"`
	KeyringVersion *uint64  `json:"keyring_version,omitempty"`
	NotBefore      string   `json:"not_before,omitempty"`
	NotAfter       string   `json:"not_after,omitempty"`
	Recipients     []string `json:"recipients,omitempty"`
	SHA256         string   `json:"sha256,omitempty"`
	Signatures     []string `json:"signatures"`
	Verified       []string `json:"verified_signers,omitempty"`
	Error          string   `json:"error,omitempty"`
}

func describeSigned(file, sigPath string, f *keyringsig.Signed) statementJSON {
	out := statementJSON{Keyring: file, SignatureFile: sigPath, Signatures: []string{}}
	if f == nil {
		return out
	}
	s := f.Statement
	v := s.Version
	out.KeyringID, out.KeyringVersion = s.KeyringID, &v
	out.NotBefore, out.NotAfter = s.NotBefore.UTC().Format(time.RFC3339), s.NotAfter.UTC().Format(time.RFC3339)
	out.Recipients, out.SHA256 = s.Recipients, hex.EncodeToString(s.FileSHA256[:])
	for _, sg := range f.Signatures {
		out.Signatures = append(out.Signatures, sg.Signer.String())
	}
	return out
}

func printJSON(e *env, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

// sigFile is a keyring's signature file, FILE.sig unless --sig names it.
func sigFile(cmd, path string) inputFile {
	return inputFile{cmd: cmd, arg: "signature file", path: path,
		want: "the keyring's signed statement, as signer keyring sign writes it next to the keyring (FILE.sig)"}
}

// keyringFile is the age-encrypted keyring a command reads.
func keyringFile(cmd, path string) inputFile {
	return inputFile{cmd: cmd, arg: "keyring FILE", path: path, stdin: true,
		want: "an age-encrypted keyring, as signer keyring new --out writes it"}
}

// recipientFile is a --recipient-file.
func recipientFile(cmd, path string) inputFile {
	return inputFile{cmd: cmd, arg: "--recipient-file", path: path, stdin: true,
		want: "age recipients, one age1… per line (# starts a comment), such as the recipient.txt that signer seal's output was saved to"}
}

// readSigned reads and parses a signature file; nil, nil if there is none.
func readSigned(e *env, cmd, path string) (*keyringsig.Signed, []byte, error) {
	b, err := sigFile(cmd, path).read(e, keyringsig.MaxSignedSize)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	f, err := keyringsig.ParseSigned(b)
	if err != nil {
		return nil, b, fmt.Errorf("%s: %w", path, err)
	}
	return f, b, nil
}

// checkStanzas checks that an age file is encrypted to as many X25519
// recipients as the statement names: age does not record which ones, so
// the count is what can be checked.
func checkStanzas(cmd, file string, ct []byte, recipients []string) error {
	types, err := keyring.RecipientTypes(ct)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", cmd, file, err)
	}
	for _, t := range types {
		if t != "X25519" {
			return fmt.Errorf("%s: %s is encrypted to a %s recipient; keyrings are encrypted to X25519 recipients (age1…) only", cmd, file, t)
		}
	}
	if len(types) != len(recipients) {
		return usageErrorf("%s: %s is encrypted to %s, and the statement would name %d (%s): name every recipient it is encrypted to, as given to age -r",
			cmd, file, plural(len(types), "recipient"), len(recipients), strings.Join(recipients, ", "))
	}
	return nil
}

// runKeyringSign is `signer keyring sign (--sign-with SIGNER... |
// --statement-only) --id ID --version N [--recipient R | --recipient-file
// F]... [window] [--force] FILE`: it writes FILE.sig, a statement about
// FILE signed by each signer. If FILE.sig already holds a statement about
// FILE, the signatures are added to it (co-signing for M-of-N): --id and
// --version must match it, and the recipients and window are taken from it
// unless given (then they must match too).
func runKeyringSign(e *env) error {
	const cmd = "keyring sign"
	fs := newFlagSet(e, cmd)
	var signWith, recipients, recipientFiles multiFlag
	fs.Var(&signWith, "sign-with", "sign with `SIGNER`: kms:KEY (a KMS ECC_NIST_P256 key: ARN, key id or alias) or file:PATH (a PKCS#8 PEM ed25519 or P-256 private key); repeatable")
	statementOnly := fs.Bool("statement-only", false, "write FILE.sig with the statement and no signature, to sign elsewhere (aws kms sign) and append the signature line")
	id := fs.String("id", "", "the keyring's `ID` (as keyring_id in its plaintext, format 2)")
	version := fs.String("version", "", "the keyring's version `N` (as keyring_version in its plaintext)")
	fs.Var(&recipients, "recipient", "the file is encrypted to this age `RECIPIENT` (age1…); repeatable")
	fs.Var(&recipientFiles, "recipient-file", "the file is encrypted to each recipient in `FILE` (as age -R reads it); repeatable")
	win := addWindowFlags(fs)
	force := fs.Bool("force", false, "replace FILE.sig even if it holds another statement")
	awsf := addAWSFlags(fs)
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("%s: want one FILE, the age-encrypted keyring", cmd)
	}
	if err := awsf.validate(cmd); err != nil {
		return err
	}
	file := pos[0]
	switch {
	case len(signWith) == 0 && !*statementOnly:
		return usageErrorf("%s: want --sign-with SIGNER (kms:KEY or file:PATH), or --statement-only", cmd)
	case len(signWith) > 0 && *statementOnly:
		return usageErrorf("%s: --statement-only writes no signature: drop --sign-with", cmd)
	case *id == "" || *version == "":
		return usageErrorf("%s: --id ID and --version N are required: what the keyring is, as its plaintext names it", cmd)
	}
	if err := keyringsig.CheckID(*id); err != nil {
		return usageErrorf("%s: --id: %v", cmd, err)
	}
	ver, err := parseKeyringVersion(cmd, *version)
	if err != nil {
		return err
	}
	rcpts, err := readRecipients(e, cmd, recipients, recipientFiles)
	if err != nil {
		return err
	}
	ct, err := keyringFile(cmd, file).read(e, maxKeyringFile)
	if err != nil {
		return err
	}
	sigPath := file + sigSuffix
	existing, _, err := readSigned(e, cmd, sigPath)
	if err != nil && !*force {
		return fmt.Errorf("%s: %w (--force replaces it)", cmd, err)
	}
	if *force {
		existing = nil
	}
	var signed *keyringsig.Signed
	if existing != nil {
		if err := matchExisting(cmd, sigPath, existing.Statement, ct, *id, ver, rcpts, win); err != nil {
			return err
		}
		signed = existing
	} else {
		if len(rcpts) == 0 {
			return usageErrorf("%s: want --recipient age1… or --recipient-file FILE: the recipients %s is encrypted to (the sealed identity's, as in recipient.txt, and any backup)", cmd, file)
		}
		if err := checkStanzas(cmd, file, ct, rcpts); err != nil {
			return err
		}
		nb, na, err := win.window(cmd, time.Now())
		if err != nil {
			return err
		}
		s, err := keyringsig.NewStatement(*id, ver, nb, na, rcpts, ct)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		if signed, err = keyringsig.NewSigned(s); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
	}
	var added []string
	for _, spec := range signWith {
		sg, err := openSigner(e, cmd, "--sign-with", spec, awsf)
		if err != nil {
			return err
		}
		k, err := keyringsig.Sign(e.ctx, sg, signed)
		if err != nil {
			return fmt.Errorf("%s: --sign-with %s: %w", cmd, spec, err)
		}
		added = append(added, k.String())
	}
	if existing != nil && len(added) == 0 {
		fmt.Fprintf(e.stderr, "signer: %s already holds this statement; nothing changed\n", sigPath)
	} else if err := writeCiphertextFile(sigPath, signed.Marshal(), true); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if err := printJSON(e, describeSigned(file, sigPath, signed)); err != nil {
		return err
	}
	s := signed.Statement
	fmt.Fprintf(e.stderr, "signer: %s: keyring %s version %d, valid %s to %s, %s\n", sigPath, s.KeyringID, s.Version,
		s.NotBefore.Format(time.RFC3339), s.NotAfter.Format(time.RFC3339), plural(len(signed.Signatures), "signature"))
	if *statementOnly {
		fmt.Fprintf(e.stderr, "signer: sign the statement elsewhere and append a line \"signature VALUE BASE64\" to %s (docs/keyring.md)\n", sigPath)
	}
	return nil
}

// matchExisting checks that what sign was asked for is the statement
// FILE.sig already holds, so that a second signer signs the same bytes.
func matchExisting(cmd, sigPath string, s *keyringsig.Statement, ct []byte, id string, ver uint64, rcpts []string, win *windowFlags) error {
	if h := sha256.Sum256(ct); h != s.FileSHA256 {
		return fmt.Errorf("%s: %s holds a statement about another file (sha256 %s, this one's %s): the keyring changed since; --force replaces the statement and its signatures",
			cmd, sigPath, hex.EncodeToString(s.FileSHA256[:]), hex.EncodeToString(h[:]))
	}
	if s.KeyringID != id || s.Version != ver {
		return fmt.Errorf("%s: %s states keyring %s version %d, not %s version %d: --force replaces the statement and its signatures", cmd, sigPath, s.KeyringID, s.Version, id, ver)
	}
	if len(rcpts) > 0 {
		sorted := slices.Clone(rcpts)
		slices.Sort(sorted)
		if !slices.Equal(sorted, s.Recipients) {
			return fmt.Errorf("%s: %s names the recipients %s, not %s: --force replaces the statement", cmd, sigPath, strings.Join(s.Recipients, ", "), strings.Join(sorted, ", "))
		}
	}
	if win.given() {
		nb, na, err := win.window(cmd, time.Now())
		if err != nil {
			return err
		}
		if win.notBefore != "" && !nb.Equal(s.NotBefore) || (win.notAfter != "" || win.validFor != "") && !na.Equal(s.NotAfter) {
			return fmt.Errorf("%s: %s states the window %s to %s, not what the flags give: leave the window flags out to co-sign it, or --force to replace it",
				cmd, sigPath, s.NotBefore.Format(time.RFC3339), s.NotAfter.Format(time.RFC3339))
		}
	}
	return nil
}

// readRecipients reads --recipient and --recipient-file values.
func readRecipients(e *env, cmd string, recipients, files []string) ([]string, error) {
	var out []string
	for i, r := range recipients {
		x, err := parseRecipient(r)
		if err != nil {
			return nil, usageErrorf("%s: --recipient %d: %v", cmd, i+1, err)
		}
		out = append(out, x.String())
	}
	for _, f := range files {
		b, err := recipientFile(cmd, f).read(e, 64<<10)
		if err != nil {
			return nil, err
		}
		xs, err := parseRecipientFile(b)
		clear(b)
		if err != nil {
			return nil, usageErrorf("%s: --recipient-file %s: %v", cmd, f, err)
		}
		for _, x := range xs {
			out = append(out, x.String())
		}
	}
	return out, nil
}

// runKeyringSignerKey is `signer keyring signer-key SIGNER`: the VALUE
// signerd pins (--keyring-signer) for the signer's public key.
func runKeyringSignerKey(e *env) error {
	const cmd = "keyring signer-key"
	fs := newFlagSet(e, cmd)
	awsf := addAWSFlags(fs)
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("%s: want one SIGNER: kms:KEY or file:PATH", cmd)
	}
	if err := awsf.validate(cmd); err != nil {
		return err
	}
	sg, err := openSigner(e, cmd, "SIGNER", pos[0], awsf)
	if err != nil {
		return err
	}
	k, err := keyringsig.NewSignerKey(sg.Public())
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	_, err = fmt.Fprintln(e.stdout, k.String())
	return err
}

// runKeyringVerify is `signer keyring verify --keyring-signer VALUE...
// [--keyring-threshold M] [--at TIME] [--recipient R]... FILE`: it checks
// FILE against FILE.sig as signerd does before decrypting, and prints the
// statement as JSON with valid true or false (exit 1).
func runKeyringVerify(e *env) error {
	const cmd = "keyring verify"
	fs := newFlagSet(e, cmd)
	var pins, recipients, recipientFiles multiFlag
	fs.Var(&pins, "keyring-signer", "a pinned keyring signer's `VALUE` (as signer keyring signer-key prints it); repeatable")
	threshold := fs.Int("keyring-threshold", 0, "how many distinct pinned signers must have signed, `M` (default 1)")
	at := fs.String("at", "", "check the validity window at `TIME` (RFC 3339) instead of now")
	fs.Var(&recipients, "recipient", "also require that the statement names this age `RECIPIENT` (the enclave identity's); repeatable, any one suffices")
	fs.Var(&recipientFiles, "recipient-file", "as --recipient, for each recipient in `FILE`")
	sigFlag := fs.String("sig", "", "the signature file (default FILE.sig)")
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("%s: want one FILE, the age-encrypted keyring", cmd)
	}
	if len(pins) == 0 {
		return usageErrorf("%s: want --keyring-signer VALUE: the signers signerd pins", cmd)
	}
	var keys []keyringsig.SignerKey
	for _, p := range pins {
		k, err := keyringsig.ParseSignerKey(strings.TrimSpace(p))
		if err != nil {
			return usageErrorf("%s: --keyring-signer: %v", cmd, err)
		}
		keys = append(keys, k)
	}
	policy, err := keyringsig.NewPolicy(keys, *threshold)
	if err != nil {
		return usageErrorf("%s: %v", cmd, err)
	}
	now := time.Now()
	if *at != "" {
		if now, err = time.Parse(time.RFC3339, *at); err != nil {
			return usageErrorf("%s: --at %q: want RFC 3339 time", cmd, *at)
		}
	}
	rcpts, err := readRecipients(e, cmd, recipients, recipientFiles)
	if err != nil {
		return err
	}
	file := pos[0]
	sigPath := *sigFlag
	if sigPath == "" {
		sigPath = file + sigSuffix
	}
	ct, err := keyringFile(cmd, file).read(e, maxKeyringFile)
	if err != nil {
		return err
	}
	// No signature file is a verdict (invalid), not an error.
	sigBytes, err := sigFile(cmd, sigPath).read(e, keyringsig.MaxSignedSize)
	if err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return err
	}
	parsed, _ := keyringsig.ParseSigned(sigBytes)
	out := describeSigned(file, sigPath, parsed)
	v, verr := policy.Verify(ct, sigBytes, now)
	if verr == nil && len(rcpts) > 0 {
		verr = keyringsig.CheckRecipients(v.Statement, rcpts)
	}
	valid := verr == nil
	out.Valid = &valid
	if verr != nil {
		out.Error = verr.Error()
		if len(sigBytes) == 0 {
			out.Error = fmt.Sprintf("no signature file %s: %v", sigPath, verr)
		}
	} else {
		for _, k := range v.Signers {
			out.Verified = append(out.Verified, k.String())
		}
	}
	if err := printJSON(e, out); err != nil {
		return err
	}
	if !valid {
		return errFailed
	}
	return nil
}

// openSigner opens a SIGNER, given by flag ("--sign-with" or the argument
// "SIGNER"): file:PATH or kms:KEY.
func openSigner(e *env, cmd, flag, spec string, awsf *awsFlags) (keyringsig.Signer, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case kind == "file" && arg != "":
		in := inputFile{cmd: cmd, arg: flag, path: arg, shown: spec,
			want: "a PKCS#8 PEM ed25519 or P-256 private key (openssl genpkey -algorithm ed25519 -out FILE makes one), or kms:KEY for a KMS key"}
		b, err := in.read(e, 64<<10)
		if err != nil {
			return nil, err
		}
		defer clear(b)
		s, err := keyringsig.ParsePrivateKeyPEM(b)
		if err != nil {
			return nil, in.explain(err)
		}
		return s, nil
	case kind == "kms" && arg != "":
		return openKMSSigner(e, cmd, arg, awsf)
	}
	return nil, usageErrorf("%s: %s %q: want kms:KEY (a KMS key's ARN, id or alias) or file:PATH (a PKCS#8 PEM private key)", cmd, flag, spec)
}

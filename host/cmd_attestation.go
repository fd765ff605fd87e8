package main

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

func runAttestation(e *env) error {
	return subcommand(e, "attestation", map[string]func(*env) error{
		"verify":   runAttestationVerify,
		"simulate": runAttestationSimulate,
	})
}

// verifyOutput is the JSON `signer attestation verify` prints
// (docs/attestation.md#signer-attestation-verify).
type verifyOutput struct {
	Valid     bool       `json:"valid"`
	Error     string     `json:"error,omitempty"`
	ModuleID  *string    `json:"module_id"`
	Digest    *string    `json:"digest"`
	Timestamp *int64     `json:"timestamp"`
	PCRs      pcr.HexMap `json:"pcrs"`
	PublicKey *string    `json:"public_key"`
	UserData  *string    `json:"user_data"`
	Nonce     *string    `json:"nonce"`
	DebugMode bool       `json:"debug_mode"`
	// UserDataMap is user_data read as signerd's map; null when it is not
	// one (a document from another enclave, or from an older signerd).
	UserDataMap *userDataMapJSON `json:"user_data_map"`
}

// userDataMapJSON renders attestation.UserData.
type userDataMapJSON struct {
	V      int      `json:"v"`
	KeySet string   `json:"keyset"`
	Pins   pinsJSON `json:"pins"`
	// Audit is the audit key's DER SubjectPublicKeyInfo, base64; null
	// from a signerd without an audit trail.
	Audit  *string `json:"audit"`
	Caller *string `json:"caller"`
}

type pinsJSON struct {
	KMSKeys          []string `json:"kms_keys"`
	KeyringSigners   []string `json:"keyring_signers"`
	KeyringThreshold uint64   `json:"keyring_threshold"`
	AuditOverflow    string   `json:"audit_overflow,omitempty"`
}

func renderUserDataMap(doc *attestation.Document) *userDataMapJSON {
	ud, err := doc.SignerdUserData()
	if err != nil {
		return nil
	}
	return &userDataMapJSON{
		V:      attestation.UserDataVersion,
		KeySet: hex.EncodeToString(ud.KeySet),
		Pins:   pinsJSON{KMSKeys: ud.Pins.KMSKeys, KeyringSigners: ud.Pins.KeyringSigners, KeyringThreshold: ud.Pins.KeyringThreshold, AuditOverflow: ud.Pins.AuditOverflow},
		Audit:  b64OrNull(ud.Audit),
		Caller: b64OrNull(ud.Caller),
	}
}

func b64OrNull(b []byte) *string {
	if b == nil {
		return nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s
}

func runAttestationVerify(e *env) error {
	fs := newFlagSet(e, "attestation verify")
	docPath := fs.String("doc", "", "the attestation document: raw COSE_Sign1 bytes or base64 of them (- for stdin)")
	rootPath := fs.String("root", "", "PEM file of the trusted root (default: the embedded AWS Nitro Enclaves root)")
	at := fs.String("at", "", "verify as of this RFC 3339 time (default: the document's own timestamp)")
	var expect multiFlag
	fs.Var(&expect, "expect-pcr", "N=HEX: require PCR N to have this value (repeatable)")
	keysPath := fs.String("expect-keys", "", "require the key set the document attests to be the one in `FILE`, what GET /v1/keys returned (needs --expect-pcr 0=HEX)")
	var nonce []byte
	fs.Func("expect-nonce", "require the document's nonce to be these `HEX` bytes", func(v string) error {
		b, err := hex.DecodeString(v)
		if err != nil || len(b) == 0 {
			return fmt.Errorf("want hex bytes, got %q", v)
		}
		nonce = b
		return nil
	})
	allowDebug := fs.Bool("allow-debug", false, "with --expect-keys, accept a debug-mode document (development only: any image can make one)")
	args, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return unexpectedArg("attestation verify", args[0], "give the document as --doc FILE")
	}
	if *docPath == "" {
		return usageErrorf("attestation verify: --doc FILE is required")
	}
	want, err := parsePCRFlags("attestation verify", expect, "--expect-pcr", 0, 31)
	if err != nil {
		return err
	}
	expectation := attestation.Expect{PCRs: want, Nonce: nonce, AllowDebug: *allowDebug}
	if *keysPath != "" {
		if _, ok := want[0]; !ok {
			return usageErrorf("attestation verify: --expect-keys needs --expect-pcr 0=HEX: a key set means nothing without the image that holds it (take PCR0 from your own build of the image)")
		}
		if *keysPath == "-" && *docPath == "-" {
			return usageErrorf("attestation verify: --doc and --expect-keys cannot both read stdin")
		}
		b, err := inputFile{cmd: "attestation verify", arg: "--expect-keys", path: *keysPath, stdin: true,
			want: "the JSON the shim's GET /v1/keys answered (signer keys > keys.json), or - for stdin"}.read(e, 1<<20)
		if err != nil {
			return err
		}
		if expectation.Keys, err = attestation.ParseKeyListJSON(b); err != nil {
			return usageErrorf("attestation verify: --expect-keys %s: %v", *keysPath, err)
		}
	} else if *allowDebug {
		return usageErrorf("attestation verify: --allow-debug applies only with --expect-keys (without it, pin PCR0 to the debug value yourself)")
	}
	var opts attestation.VerifyOptions
	if *rootPath != "" {
		pool, err := loadRoots(e, inputFile{cmd: "attestation verify", arg: "--root", path: *rootPath, want: rootWant})
		if err != nil {
			return err
		}
		opts.Roots = pool
	}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usageErrorf("attestation verify: --at: want an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", *at)
		}
		opts.CurrentTime = t
	}
	// A document is about 5 KB; 1 MiB leaves room for base64 and
	// certificate chains of any length seen.
	raw, err := inputFile{cmd: "attestation verify", arg: "--doc", path: *docPath, stdin: true,
		want: "an attestation document, raw COSE_Sign1 bytes or base64 of them (signer attest --out writes one), or - for stdin"}.read(e, 1<<20)
	if err != nil {
		return err
	}

	out := verifyOutput{}
	doc, err := attestation.Parse(decodeDocument(raw))
	if err == nil {
		out.ModuleID, out.Digest = &doc.ModuleID, &doc.Digest
		ts := doc.TimestampMillis()
		out.Timestamp = &ts
		out.PCRs = pcr.HexMap(doc.PCRs)
		out.PublicKey, out.UserData, out.Nonce = b64OrNull(doc.PublicKey), b64OrNull(doc.UserData), b64OrNull(doc.Nonce)
		out.DebugMode = doc.DebugMode()
		out.UserDataMap = renderUserDataMap(doc)
		if opts.CurrentTime.IsZero() {
			opts.CurrentTime = doc.Timestamp
		}
		err = doc.Verify(opts)
	}
	if err == nil {
		err = doc.Check(expectation)
	}
	out.Valid = err == nil
	if err != nil {
		out.Error = err.Error()
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if !out.Valid {
		return errFailed
	}
	return nil
}

// decodeDocument accepts raw COSE_Sign1 bytes or base64 of them.
func decodeDocument(b []byte) []byte {
	if len(b) > 0 && (b[0] == 0x84 || b[0] == 0xd2) {
		return b
	}
	s := strings.Join(strings.Fields(string(b)), "")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if d, err := enc.DecodeString(s); err == nil {
			return d
		}
	}
	return b // let the parser say what is wrong with it
}

// rootWant is what a --root or --trust-root file holds.
const rootWant = "the PEM certificate of an attestation root (signer dev's is DIR/ca/root.pem, signer attestation simulate's --ca-dir/root.pem)"

// loadRoots reads the certificates of a PEM file as a pool.
func loadRoots(e *env, in inputFile) (*x509.CertPool, error) {
	certs, err := readPEMCertificates(e, in)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// parsePCRFlags parses cmd's flagName values, N=HEX with N in [lo, hi].
func parsePCRFlags(cmd string, vals []string, flagName string, lo, hi int) (map[int][]byte, error) {
	want := fmt.Sprintf("N=HEX with N from %d to %d", lo, hi)
	if lo == hi {
		want = fmt.Sprintf("%d=HEX: %s takes PCR%d only", lo, cmd, lo)
	}
	m := map[int][]byte{}
	for _, v := range vals {
		idx, hexv, ok := strings.Cut(v, "=")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || n < lo || n > hi {
			return nil, usageErrorf("%s: %s %q: want %s", cmd, flagName, v, want)
		}
		val, err := pcr.ParseHex(hexv)
		if err != nil {
			return nil, usageErrorf("%s: %s %q: %v", cmd, flagName, v, err)
		}
		if _, dup := m[n]; dup {
			return nil, usageErrorf("%s: %s: PCR%d given twice", cmd, flagName, n)
		}
		m[n] = val
	}
	return m, nil
}

func runAttestationSimulate(e *env) error {
	fs := newFlagSet(e, "attestation simulate")
	out := fs.String("out", "", "where to write the document (raw COSE_Sign1 bytes)")
	caDir := fs.String("ca-dir", filepath.Join(".signer-dev", "ca"), "the development CA's directory (created on first use; root certificate at DIR/root.pem)")
	pubPath := fs.String("public-key", "", "DER or PEM SubjectPublicKeyInfo to put in public_key")
	userPath := fs.String("user-data", "", "file whose bytes go in user_data")
	nonceHex := fs.String("nonce", "", "hex bytes to put in nonce")
	debug := fs.Bool("debug-mode", false, "zero PCR0, 1, 2 and 8 as a debug-mode enclave's are")
	var pcrs multiFlag
	fs.Var(&pcrs, "pcr", "N=HEX: a PCR value, N from 0 to 15 (repeatable)")
	args, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return unexpectedArg("attestation simulate", args[0], "")
	}
	if *out == "" {
		return usageErrorf("attestation simulate: --out FILE is required")
	}
	pcrVals, err := parsePCRFlags("attestation simulate", pcrs, "--pcr", 0, 15)
	if err != nil {
		return err
	}
	if err := checkOutput("attestation simulate", "--out", *out); err != nil {
		return err
	}
	var req nsm.AttestRequest
	if *pubPath != "" {
		if req.PublicKey, err = readSPKI(e, inputFile{cmd: "attestation simulate", arg: "--public-key", path: *pubPath,
			want: "a DER or PEM SubjectPublicKeyInfo (openssl pkey -pubout writes one)"}); err != nil {
			return err
		}
	}
	if *userPath != "" {
		if req.UserData, err = (inputFile{cmd: "attestation simulate", arg: "--user-data", path: *userPath,
			want: "the bytes to put in the document's user_data"}).read(e, 1<<20); err != nil {
			return err
		}
	}
	if *nonceHex != "" {
		if req.Nonce, err = hex.DecodeString(*nonceHex); err != nil {
			return usageErrorf("attestation simulate: --nonce: want hex, got %q", *nonceHex)
		}
	}
	ca, err := nsmsim.LoadOrCreateCA(*caDir, time.Now())
	if err != nil {
		return err
	}
	sim, err := nsmsim.New(nsmsim.Options{CA: ca, PCRs: pcrVals, DebugMode: *debug})
	if err != nil {
		return err
	}
	doc, err := nsm.Attest(sim, req)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, doc, 0o644); err != nil {
		return fmt.Errorf("attestation simulate: --out: %w", err)
	}
	fmt.Fprintf(e.stderr, "wrote %s (%d bytes, module %s), signed under the simulator root %s\n", *out, len(doc), sim.ModuleID(), filepath.Join(*caDir, nsmsim.RootCertFile))
	return nil
}

// readSPKI reads a DER or PEM SubjectPublicKeyInfo and checks that it parses.
func readSPKI(e *env, in inputFile) ([]byte, error) {
	b, err := in.read(e, 1<<20)
	if err != nil {
		return nil, err
	}
	if block, _ := pem.Decode(b); block != nil {
		if block.Type != "PUBLIC KEY" {
			return nil, in.explain(fmt.Errorf("PEM block is %q, want PUBLIC KEY (a SubjectPublicKeyInfo)", block.Type))
		}
		b = block.Bytes
	}
	if _, err := x509.ParsePKIXPublicKey(b); err != nil {
		return nil, in.explain(fmt.Errorf("not a SubjectPublicKeyInfo: %w", err))
	}
	return b, nil
}

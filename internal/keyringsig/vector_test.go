package keyringsig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the test vector's golden files (the ECDSA signature changes: it is randomized)")

// The test vector of docs/keyring.md: fixed keys, a fixed statement, its
// exact bytes, and a signature file with one signature of each algorithm.
var (
	vectorFile       = []byte("an age file stands here; only its SHA-256 enters the statement\n")
	vectorRecipients = []string{
		"age1tnktyj5vnep8as7mea98rzy8pqp5lv8p28yh44tcf7m93244sqdq5c3e6y",
		"age1csmxdjqtacslaxdmc8jfkhle20tzcyyk5kkcv2e7jewzlsyn93tq4d9xmf",
	}
	vectorNotBefore = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	vectorNotAfter  = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	vectorAt        = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
)

const vectorDir = "testdata/vector"

// vectorKeys returns the vector's keys: the ed25519 seed 00 01 … 1f, and
// the P-256 scalar SHA-256("enclave-signer keyring test vector").
func vectorKeys(t testing.TB) (ed25519.PrivateKey, *ecdsa.PrivateKey) {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	d := sha256.Sum256([]byte("enclave-signer keyring test vector"))
	p, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		t.Fatal(err)
	}
	return ed25519.NewKeyFromSeed(seed), p
}

func vectorStatement(t testing.TB) *Statement {
	t.Helper()
	s, err := NewStatement("payments", 3, vectorNotBefore, vectorNotAfter, vectorRecipients, vectorFile)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatalf("%v (go test -run TestVector -update writes it)", err)
	}
	return b
}

func writeGolden(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(vectorDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVector(t *testing.T) {
	edKey, pKey := vectorKeys(t)
	s := vectorStatement(t)
	stmt, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	edSigner, pSigner := &fileSigner{key: edKey}, &fileSigner{key: pKey}
	if *update {
		f, err := NewSigned(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, sg := range []Signer{edSigner, pSigner} {
			if _, err := Sign(t.Context(), sg, f); err != nil {
				t.Fatal(err)
			}
		}
		for name, k := range map[string]any{"ed25519.pem": edKey, "p256.pem": pKey} {
			der, err := x509.MarshalPKCS8PrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			writeGolden(t, name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		}
		writeGolden(t, "statement.hex", []byte(hexLines(stmt)))
		writeGolden(t, "keyring.age.sig", f.Marshal())
		writeGolden(t, "file", vectorFile)
	}

	// The statement's exact bytes.
	if got, want := hexLines(stmt), string(readGolden(t, "statement.hex")); got != want {
		t.Errorf("statement bytes:\n%s\nwant:\n%s", got, want)
	}
	back, err := ParseStatement(stmt)
	if err != nil {
		t.Fatal(err)
	}
	if back.String() != s.String() {
		t.Errorf("ParseStatement(Marshal(s)) = %s, want %s", back, s)
	}

	// The private key files are the keys above, as openssl genpkey writes them.
	for name, want := range map[string]any{"ed25519.pem": edKey, "p256.pem": pKey} {
		sg, err := ParsePrivateKeyPEM(readGolden(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		gk, _ := NewSignerKey(sg.Public())
		wk, _ := NewSignerKey(want.(crypto.Signer).Public())
		if !gk.Equal(wk) {
			t.Errorf("%s holds %s, want %s", name, gk, wk)
		}
	}

	// The signature file parses, writes back identically, and verifies:
	// ed25519 is deterministic, so its signature is the one above exactly;
	// ECDSA is randomized, so the vector's must merely verify.
	sigFile := readGolden(t, "keyring.age.sig")
	f, err := ParseSigned(sigFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Marshal(), sigFile) {
		t.Errorf("Marshal(ParseSigned(file)) differs:\n%s\nwant:\n%s", f.Marshal(), sigFile)
	}
	if !bytes.Equal(f.StatementBytes(), stmt) {
		t.Error("the signature file's statement is not the vector's")
	}
	if len(f.Signatures) != 2 {
		t.Fatalf("%d signatures, want 2", len(f.Signatures))
	}
	edSig, _ := edSigner.Sign(t.Context(), stmt)
	if !bytes.Equal(f.Signatures[0].Sig, edSig) {
		t.Error("the ed25519 signature is not RFC 8032's over the statement")
	}
	edPin, _ := NewSignerKey(edKey.Public())
	pPin, _ := NewSignerKey(pKey.Public())
	p, err := NewPolicy([]SignerKey{pPin, edPin}, 2)
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Verify(readGolden(t, "file"), sigFile, vectorAt)
	if err != nil {
		t.Fatalf("the vector does not verify: %v", err)
	}
	if len(v.Signers) != 2 {
		t.Errorf("verified by %d signers, want 2", len(v.Signers))
	}

	// docs/keyring.md shows the same vector.
	doc, err := os.ReadFile("../../docs/keyring.md")
	if err != nil {
		t.Fatal(err)
	}
	pythonEncoder(t, string(doc), s, stmt)
	for _, want := range []string{string(readGolden(t, "statement.hex")), string(sigFile), string(readGolden(t, "ed25519.pem")), string(readGolden(t, "p256.pem")),
		edPin.String(), pPin.String(), hex.EncodeToString(s.FileSHA256[:])} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/keyring.md does not show the vector's:\n%s", want)
		}
	}
}

// pythonEncoder runs the independent encoder docs/keyring.md shows (the
// last python block) on the vector's inputs: it must give the same bytes.
func pythonEncoder(t *testing.T, doc string, s *Statement, want []byte) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 not on PATH; CI must have it")
		}
		t.Log("python3 not on PATH: the independent encoder is not run")
		return
	}
	start := strings.LastIndex(doc, "```python\n")
	if start < 0 {
		t.Fatal("docs/keyring.md has no python block")
	}
	code := doc[start+len("```python\n"):]
	code = code[:strings.Index(code, "```")]
	code += fmt.Sprintf("import sys\nsys.stdout.write(statement(%q, %d, %d, %d, [%q, %q], open(sys.argv[1], 'rb').read()).hex())\n",
		s.KeyringID, s.Version, s.NotBefore.Unix(), s.NotAfter.Unix(), vectorRecipients[0], vectorRecipients[1])
	out, err := exec.CommandContext(t.Context(), py, "-c", code, filepath.Join(vectorDir, "file")).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	if string(out) != hex.EncodeToString(want) {
		t.Errorf("the python encoder of docs/keyring.md gives\n%s\nwant\n%x", out, want)
	}
}

// hexLines writes b as lowercase hex, 32 bytes a line.
func hexLines(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		n := min(32, len(b))
		sb.WriteString(hex.EncodeToString(b[:n]))
		sb.WriteByte('\n')
		b = b[n:]
	}
	return sb.String()
}

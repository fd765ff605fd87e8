package cms

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Fixtures in testdata/ (see testdata/README.md).
const (
	enclaverEnvelopeFile = "kms-cms-enclaver-pkcs7-test-INPUT.b64"
	enclaverKeyFile      = "kms-cms-enclaver-pkcs7-test-PRIVATE_KEY.pem"
	sdkcEnvelopeFile     = "kms-cms-sdkc-cms_test-input_ber.b64"
	opensslKeyFile       = "openssl-test-key.pem"
	opensslStreamFile    = "openssl-stream.der"
	opensslNoStreamFile  = "openssl-nostream.der"
)

// goldenPlaintext is what the openssl golden envelopes decrypt to: 40 bytes,
// so three cipher blocks.
var goldenPlaintext = []byte("openssl cms golden envelope plaintext.\n\x00")

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".b64") {
		b, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return b
}

func parseKeyPEM(t testing.TB, pemBytes []byte) *rsa.PrivateKey {
	t.Helper()
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("no PEM block in key file")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("key is %T, want *rsa.PrivateKey", k)
	}
	return rk
}

func testKey(t testing.TB, name string) *rsa.PrivateKey {
	t.Helper()
	return parseKeyPEM(t, readTestdata(t, name))
}

func spkiOf(t testing.TB, k *rsa.PrivateKey) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// detRand is a deterministic random source for reproducible envelopes.
func detRand(seed byte) *rand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// wantClass fails unless err is of class want (nil: no error).
func wantClass(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error\n got: %v\nwant: nil", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("wrong error class\n got: %v\nwant: %v", err, want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not a *cms.Error", err)
	}
}

// parseClasses are the classes Parse can return; errors after Parse succeed
// are never of these classes.
var parseClasses = []error{ErrTooLarge, ErrMalformed, ErrContentType, ErrVersion, ErrRecipientCount, ErrRecipient, ErrAlgorithm}

func isParseClass(err error) bool {
	for _, c := range parseClasses {
		if errors.Is(err, c) {
			return true
		}
	}
	return false
}

// region classifies byte p of a parsed envelope's input.
type region int

const (
	regionStructure region = iota
	regionSKI
	regionEncryptedKey
	regionIV
	regionEarlyCiphertext // not in the last cipher block: malleable
	regionLastBlock
)

func (env *Envelope) region(p int) region {
	switch {
	case p >= env.skiOff && p < env.skiOff+len(env.SubjectKeyID):
		return regionSKI
	case p >= env.keyOff && p < env.keyOff+len(env.EncryptedKey):
		return regionEncryptedKey
	case p >= env.ivOff && p < env.ivOff+len(env.IV):
		return regionIV
	}
	idx := 0
	for _, s := range env.chunkSpans {
		if p >= s.off && p < s.off+s.len {
			if idx+p-s.off >= len(env.Ciphertext)-16 {
				return regionLastBlock
			}
			return regionEarlyCiphertext
		}
		idx += s.len
	}
	return regionStructure
}

// openssl returns the path of the openssl binary, or skips the test (fails
// it when CI=true).
func openssl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl is required in CI: %v", err)
		}
		t.Skip("openssl binary not found; install it to run the interop tests (they fail instead of skipping when CI=true)")
	}
	return p
}

func runOpenSSL(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// opensslRecipient makes an RSA key and a self-signed certificate whose
// subjectKeyIdentifier is SHA-256 of the key's SPKI, in dir (the OpenSSL
// recipe in testdata/README.md).
// It checks openssl's SPKI DER is the one Go marshals.
func opensslRecipient(t *testing.T, bin, dir string, bits int) (keyPath, certPath string, key *rsa.PrivateKey) {
	t.Helper()
	keyPath = filepath.Join(dir, "key.pem")
	certPath = filepath.Join(dir, "recip.pem")
	runOpenSSL(t, bin, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:"+strconv.Itoa(bits), "-out", keyPath)
	pemBytes, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	key = parseKeyPEM(t, pemBytes)
	spki := runOpenSSL(t, bin, "pkey", "-in", keyPath, "-pubout", "-outform", "DER")
	if !bytes.Equal(spki, spkiOf(t, key)) {
		t.Fatal("openssl's SubjectPublicKeyInfo DER differs from x509.MarshalPKIXPublicKey's")
	}
	ski := SubjectKeyIdentifier(spki)
	var hexSKI []string
	for _, c := range ski {
		hexSKI = append(hexSKI, fmt.Sprintf("%02X", c))
	}
	runOpenSSL(t, bin, "req", "-x509", "-new", "-key", keyPath, "-subj", "/CN=enclave-recipient", "-days", "1",
		"-addext", "subjectKeyIdentifier="+strings.Join(hexSKI, ":"), "-out", certPath)
	return keyPath, certPath, key
}

// opensslEncrypt runs openssl cms -encrypt with -keyid and the KMS
// algorithms; stream selects -stream (indefinite lengths, chunked content).
func opensslEncrypt(t *testing.T, bin, dir, certPath string, plaintext []byte, stream bool) []byte {
	t.Helper()
	in := filepath.Join(dir, "pt")
	out := filepath.Join(dir, "env.der")
	if err := os.WriteFile(in, plaintext, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"cms", "-encrypt", "-binary", "-in", in, "-recip", certPath, "-keyid", "-aes-256-cbc",
		"-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256",
		"-outform", "DER", "-out", out}
	if stream {
		args = append(args, "-stream")
	}
	runOpenSSL(t, bin, args...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func opensslDecrypt(t *testing.T, bin, dir, keyPath string, envelope []byte) []byte {
	t.Helper()
	in := filepath.Join(dir, "seal.der")
	if err := os.WriteFile(in, envelope, 0o600); err != nil {
		t.Fatal(err)
	}
	return runOpenSSL(t, bin, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", in, "-inkey", keyPath)
}

package keyringsig

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Cross-checks with openssl: private keys as openssl genpkey writes them
// sign, openssl verifies the signatures over the statement, and the pin
// value is the base64 of the DER public key openssl writes. The throwaway
// keys are written to t.TempDir() for openssl.

func needOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not found on PATH; CI must install it (apt-get install -y openssl)")
		}
		t.Skip("openssl not found on PATH; install it with apt-get install -y openssl")
	}
}

func openssl(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "openssl", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func TestOpenSSLKeys(t *testing.T) {
	needOpenSSL(t)
	dir := t.TempDir()
	stmt, err := vectorStatement(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	stmtPath := filepath.Join(dir, "statement")
	if err := os.WriteFile(stmtPath, stmt, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg     Algorithm
		genpkey []string
		verify  func(pub, sig string) []string
	}{
		{Ed25519, []string{"-algorithm", "ed25519"}, func(pub, sig string) []string {
			return []string{"pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", stmtPath, "-sigfile", sig}
		}},
		{ECDSAP256, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}, func(pub, sig string) []string {
			return []string{"dgst", "-sha256", "-verify", pub, "-signature", sig, stmtPath}
		}},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			keyPath := filepath.Join(dir, string(tc.alg)+".pem")
			openssl(t, append([]string{"genpkey", "-out", keyPath}, tc.genpkey...)...)
			pem, err := os.ReadFile(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParsePrivateKeyPEM(pem)
			if err != nil {
				t.Fatalf("ParsePrivateKeyPEM of openssl genpkey %s: %v", strings.Join(tc.genpkey, " "), err)
			}
			if got := fmt.Sprintf("%v %+v %#v", s, s, s); strings.Contains(got, "PRIVATE") || strings.Count(got, redacted) != 3 {
				t.Errorf("a signer key formats as %s", got)
			}
			pin, err := NewSignerKey(s.Public())
			if err != nil {
				t.Fatal(err)
			}
			der := openssl(t, "pkey", "-in", keyPath, "-pubout", "-outform", "DER")
			if want := string(tc.alg) + ":" + base64.StdEncoding.EncodeToString(der); pin.String() != want {
				t.Errorf("pin %s, want %s (openssl's DER public key)", pin, want)
			}
			pubPath := filepath.Join(dir, string(tc.alg)+".pub")
			openssl(t, "pkey", "-in", keyPath, "-pubout", "-out", pubPath)
			sig, err := s.Sign(t.Context(), stmt)
			if err != nil {
				t.Fatal(err)
			}
			sigPath := filepath.Join(dir, string(tc.alg)+".sig")
			if err := os.WriteFile(sigPath, sig, 0o644); err != nil {
				t.Fatal(err)
			}
			if out := openssl(t, tc.verify(pubPath, sigPath)...); !bytes.Contains(out, []byte("Verified OK")) && !bytes.Contains(out, []byte("Signature Verified Successfully")) {
				t.Errorf("openssl verify: %s", out)
			}
			// And openssl's own signature verifies with the pin.
			osig := filepath.Join(dir, string(tc.alg)+".osig")
			if tc.alg == Ed25519 {
				openssl(t, "pkeyutl", "-sign", "-inkey", keyPath, "-rawin", "-in", stmtPath, "-out", osig)
			} else {
				openssl(t, "dgst", "-sha256", "-sign", keyPath, "-out", osig, stmtPath)
			}
			ob, _ := os.ReadFile(osig)
			if !pin.Verify(stmt, ob) {
				t.Error("openssl's signature over the statement does not verify with the pin")
			}
		})
	}

	// Keys in other forms are refused, each with its fix.
	for _, tc := range []struct {
		name string
		make func(path string)
		msg  string
	}{
		{"SEC1", func(p string) { openssl(t, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p) }, "openssl pkcs8 -topk8 -nocrypt"},
		{"P-384", func(p string) {
			openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", p)
		}, "want P-256"},
		{"RSA", func(p string) {
			openssl(t, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", p)
		}, "want ed25519 or ECDSA P-256"},
		{"encrypted", func(p string) {
			openssl(t, "genpkey", "-algorithm", "ed25519", "-aes-128-cbc", "-pass", "pass:test", "-out", p)
		}, "is encrypted"},
		{"public key", func(p string) {
			openssl(t, "genpkey", "-algorithm", "ed25519", "-out", p+".key")
			openssl(t, "pkey", "-in", p+".key", "-pubout", "-out", p)
		}, `a PEM "PUBLIC KEY" block`},
	} {
		p := filepath.Join(dir, tc.name)
		tc.make(p)
		b, _ := os.ReadFile(p)
		if _, err := ParsePrivateKeyPEM(b); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: ParsePrivateKeyPEM = %v, want %q", tc.name, err, tc.msg)
		}
	}
	if _, err := ParsePrivateKeyPEM([]byte("not a key")); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("not PEM: %v", err)
	}
}

package cms

import (
	"bytes"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "regenerate the openssl golden files in testdata/ (needs openssl)")

// TestOpenSSLGolden opens envelopes that openssl cms -encrypt made (saved in
// testdata, so this runs without openssl) in both encryptedContent forms.
// With -update it first regenerates them, and the throwaway key, with
// openssl.
func TestOpenSSLGolden(t *testing.T) {
	if *update {
		bin := openssl(t)
		dir := t.TempDir()
		keyPath, certPath, _ := opensslRecipient(t, bin, dir, 2048)
		keyPEM, err := os.ReadFile(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{
			opensslKeyFile:      keyPEM,
			opensslStreamFile:   opensslEncrypt(t, bin, dir, certPath, goldenPlaintext, true),
			opensslNoStreamFile: opensslEncrypt(t, bin, dir, certPath, goldenPlaintext, false),
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	key := testKey(t, opensslKeyFile)
	for _, tc := range []struct {
		file    string
		chunked bool
	}{
		{opensslStreamFile, true},
		{opensslNoStreamFile, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b := readTestdata(t, tc.file)
			env, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := env.Chunks > 0; got != tc.chunked {
				t.Fatalf("encryptedContent form\n got: %d chunks\nwant: chunked=%v", env.Chunks, tc.chunked)
			}
			pt, err := env.Decrypt(key)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pt, goldenPlaintext) {
				t.Fatalf("plaintext\n got: %q\nwant: %q", pt, goldenPlaintext)
			}
		})
	}
}

// TestOpenSSLEncryptOpen: envelopes made now by openssl cms -encrypt -keyid
// with OAEP/SHA-256/MGF1-SHA-256/AES-256-CBC open with Open, with -stream
// (indefinite lengths, chunked [0]) and without (DER, primitive [0]).
func TestOpenSSLEncryptOpen(t *testing.T) {
	bin := openssl(t)
	dir := t.TempDir()
	_, certPath, key := opensslRecipient(t, bin, dir, 2048)
	for _, size := range []int{1, 12, 300, 2500} {
		pt := make([]byte, size)
		if _, err := rand.Read(pt); err != nil {
			t.Fatal(err)
		}
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("stream=%v/%d", stream, size), func(t *testing.T) {
				b := opensslEncrypt(t, bin, dir, certPath, pt, stream)
				env, err := Parse(b)
				if err != nil {
					t.Fatal(err)
				}
				if stream && env.Chunks == 0 {
					t.Fatal("openssl -stream gave the primitive [0] form, want constructed chunks")
				}
				if !stream && (env.Chunks != 0 || b[1] == 0x80) {
					t.Fatalf("openssl without -stream gave %d chunks (first length octet 0x%02x), want definite DER with a primitive [0]", env.Chunks, b[1])
				}
				if stream && b[1] != 0x80 {
					t.Fatalf("openssl -stream: first length octet 0x%02x, want indefinite 0x80", b[1])
				}
				got, err := Open(b, key)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatalf("plaintext differs: got %d bytes, want %d", len(got), len(pt))
				}
			})
		}
	}
}

// TestSealOpenSSLDecrypt: openssl cms -decrypt opens what Seal makes, for
// RSA-2048 and RSA-3072 recipients, one chunk and several.
func TestSealOpenSSLDecrypt(t *testing.T) {
	bin := openssl(t)
	for _, bits := range []int{2048, 3072} {
		dir := t.TempDir()
		keyPath, _, key := opensslRecipient(t, bin, dir, bits)
		spki := spkiOf(t, key)
		for _, size := range []int{0, 12, 999, 1000, 4500} {
			t.Run(fmt.Sprintf("RSA-%d/%d", bits, size), func(t *testing.T) {
				pt := make([]byte, size)
				if _, err := rand.Read(pt); err != nil {
					t.Fatal(err)
				}
				env, err := Seal(rand.Reader, pt, spki)
				if err != nil {
					t.Fatal(err)
				}
				got := opensslDecrypt(t, bin, dir, keyPath, env)
				if !bytes.Equal(got, pt) {
					t.Fatalf("openssl decrypted %d bytes, want the %d-byte plaintext", len(got), len(pt))
				}
			})
		}
	}
}

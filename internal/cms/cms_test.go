package cms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestEnclaverVector(t *testing.T) {
	b := readTestdata(t, enclaverEnvelopeFile)
	key := testKey(t, enclaverKeyFile)
	pt, err := Open(b, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(pt) != "Hello, World" {
		t.Fatalf("plaintext\n got: %q\nwant: %q", pt, "Hello, World")
	}
	env, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	// The SKI is SHA-256 of the SPKI, not RFC 5280's SHA-1
	// (docs/nitro-facts.md#ciphertextforrecipient-the-cms-envelope).
	if got, want := hex.EncodeToString(env.SubjectKeyID), "fb09e9af2940ddcf0d2bbf6358c983af46fc5fdcedbca251d54ceab4d069cd89"; got != want {
		t.Fatalf("subjectKeyIdentifier\n got: %s\nwant: %s", got, want)
	}
	if err := env.CheckRecipient(spkiOf(t, key)); err != nil {
		t.Fatal(err)
	}
	if env.Chunks != 1 || len(env.Ciphertext) != 16 {
		t.Fatalf("encryptedContent: %d chunks, %d bytes; want 1 chunk of 16", env.Chunks, len(env.Ciphertext))
	}
}

func TestSDKCVector(t *testing.T) {
	b := readTestdata(t, sdkcEnvelopeFile)
	env, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(env.SubjectKeyID) != 32 || len(env.EncryptedKey) != 256 || len(env.IV) != 16 || len(env.Ciphertext) != 48 || env.Chunks != 1 {
		t.Fatalf("structure\n got: SKI %d, encryptedKey %d, IV %d, ciphertext %d bytes in %d chunks\nwant: 32, 256, 16, 48 in 1",
			len(env.SubjectKeyID), len(env.EncryptedKey), len(env.IV), len(env.Ciphertext), env.Chunks)
	}
	pt, err := Open(b, testKey(t, enclaverKeyFile))
	wantClass(t, err, ErrKeyMismatch)
	if pt != nil {
		t.Fatal("plaintext not nil on error")
	}
	if !strings.Contains(err.Error(), hex.EncodeToString(env.SubjectKeyID)) {
		t.Fatalf("mismatch error does not name the envelope's subjectKeyIdentifier: %v", err)
	}
}

// kmsPrefix is the real KMS envelopes' bytes up to the
// subjectKeyIdentifier, for an RSA-2048 recipient (the layout of
// docs/nitro-facts.md#ciphertextforrecipient-the-cms-envelope).
const kmsPrefix = "3080" + "06092a864886f70d010703" + "a080" + "3080" + "020102" + "3182016b" + "30820167" + "020102" + "8020"

// kmsMiddle follows the SKI: keyEncryptionAlgorithm with explicit NULLs and
// the encryptedKey header.
const kmsMiddle = "303c06092a864886f70d010107302fa00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500" + "04820100"

// kmsECIHeader follows the encrypted key: EncryptedContentInfo up to the IV.
const kmsECIHeader = "3080" + "06092a864886f70d010701" + "301d060960864801650304012a0410"

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestSealKMSSkeleton: Seal's bytes have the real envelopes' layout, 445 +
// len(ciphertext) long for one short chunk, and equal to the real KMS
// envelopes everywhere except the random parts.
func TestSealKMSSkeleton(t *testing.T) {
	key := testKey(t, enclaverKeyFile)
	spki := spkiOf(t, key)
	for _, n := range []int{0, 12, 32, 95} {
		pt := bytes.Repeat([]byte{'a'}, n)
		b, err := Seal(detRand(1), pt, spki)
		if err != nil {
			t.Fatal(err)
		}
		ctLen := (n/16 + 1) * 16
		if len(b) != 445+ctLen {
			t.Fatalf("plaintext %d: length\n got: %d\nwant: %d", n, len(b), 445+ctLen)
		}
		var want []byte
		want = append(want, mustHex(kmsPrefix)...)
		want = append(want, SubjectKeyIdentifier(spki)...)
		want = append(want, mustHex(kmsMiddle)...)
		want = append(want, b[len(want):len(want)+256]...) // encrypted key
		want = append(want, mustHex(kmsECIHeader)...)
		want = append(want, b[len(want):len(want)+16]...) // IV
		want = append(want, 0xa0, 0x80, 0x04, byte(ctLen))
		want = append(want, b[len(want):len(want)+ctLen]...)
		want = append(want, make([]byte, 10)...)
		if !bytes.Equal(b, want) {
			t.Fatalf("plaintext %d: bytes\n got: %x\nwant: %x", n, b, want)
		}
	}

	// Against the real envelopes: same length and the same bytes outside the
	// encrypted key, the IV and the ciphertext (and the SKI for the SDK-C
	// one, whose key is unknown).
	for _, tc := range []struct {
		file string
		n    int
	}{{enclaverEnvelopeFile, 12}, {sdkcEnvelopeFile, 32}} {
		real := readTestdata(t, tc.file)
		renv, err := Parse(real)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := Seal(detRand(2), make([]byte, tc.n), spki)
		if err != nil {
			t.Fatal(err)
		}
		senv, err := Parse(sealed)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != len(real) {
			t.Fatalf("%s: Seal length %d, real %d", tc.file, len(sealed), len(real))
		}
		for p := range real {
			if r := renv.region(p); r != regionStructure {
				if sr := senv.region(p); sr != r && !(r >= regionEarlyCiphertext && sr >= regionEarlyCiphertext) {
					t.Fatalf("%s: byte %d is %v in the real envelope, %v in Seal's", tc.file, p, r, sr)
				}
				continue
			}
			if real[p] != sealed[p] {
				t.Fatalf("%s: structure byte %d\n got: %02x\nwant: %02x (real KMS)", tc.file, p, sealed[p], real[p])
			}
		}
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	key := testKey(t, enclaverKeyFile)
	spki := spkiOf(t, key)
	for _, n := range []int{0, 1, 15, 16, 17, 999, 1000, 1001, 5000, MaxSealPlaintext} {
		pt := make([]byte, n)
		if _, err := rand.Read(pt); err != nil {
			t.Fatal(err)
		}
		b, err := Seal(rand.Reader, pt, spki)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MaxEnvelopeSize {
			t.Fatalf("plaintext %d: envelope %d bytes is over MaxEnvelopeSize", n, len(b))
		}
		env, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		ctLen := (n/16 + 1) * 16
		if want := (ctLen + chunkSize - 1) / chunkSize; env.Chunks != want {
			t.Fatalf("plaintext %d: chunks\n got: %d\nwant: %d", n, env.Chunks, want)
		}
		got, err := env.Decrypt(key)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("plaintext %d: round trip differs", n)
		}
	}
}

func TestSealRejects(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	spki1024, err := x509.MarshalPKIXPublicKey(&rsa1024.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spkiEC, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	good := spkiOf(t, testKey(t, enclaverKeyFile))
	for _, tc := range []struct {
		name string
		spki []byte
		pt   []byte
		want error
	}{
		{"RSA-1024", spki1024, nil, ErrUnsupportedKey},
		{"P-256", spkiEC, nil, ErrUnsupportedKey},
		{"garbage SPKI", []byte{0x30, 0x03, 0x02, 0x01, 0x00}, nil, ErrUnsupportedKey},
		{"trailing data after SPKI", append(bytes.Clone(good), 0), nil, ErrUnsupportedKey},
		{"plaintext too large", good, make([]byte, MaxSealPlaintext+1), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Seal(rand.Reader, tc.pt, tc.spki)
			wantClass(t, err, tc.want)
			if b != nil {
				t.Fatal("envelope not nil on error")
			}
		})
	}
	t.Run("rand fails", func(t *testing.T) {
		b, err := Seal(iotest.ErrReader(errors.New("no entropy")), []byte("x"), good)
		if err == nil || b != nil || !strings.Contains(err.Error(), "no entropy") {
			t.Fatalf("got %v, %v; want the rand error and no envelope", b, err)
		}
	})
}

// baseFields is Seal's output for "Hello, World" to the enclaver key, with a
// fixed random stream; cek is the content-encryption key it used.
func baseFields(t *testing.T) (f *envelopeFields, cek []byte, key *rsa.PrivateKey) {
	t.Helper()
	key = testKey(t, enclaverKeyFile)
	f, err := sealFields(detRand(7), []byte("Hello, World"), spkiOf(t, key))
	if err != nil {
		t.Fatal(err)
	}
	cek = make([]byte, 32)
	if _, err := detRand(7).Read(cek); err != nil {
		t.Fatal(err)
	}
	return f, cek, key
}

func sha256AlgID(withNull bool) []byte {
	if withNull {
		return definite(tagSequence, definite(tagOID, oidSHA256), definite(tagNull))
	}
	return definite(tagSequence, definite(tagOID, oidSHA256))
}

var (
	oidSHA1          = []byte{0x2b, 0x0e, 0x03, 0x02, 0x1a}
	oidRSAEncryption = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01}
	oidAES128CBC     = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02}
	oidSignedData    = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
)

// oaepAlg builds an RSAES-OAEP AlgorithmIdentifier from parameter elements.
func oaepAlg(params ...[]byte) []byte {
	return definite(tagSequence, definite(tagOID, oidRSAESOAEP), definite(tagSequence, params...))
}

func hashParam(alg []byte) []byte { return definite(tagContext0C, alg) }

func mgfParam(hashAlg []byte) []byte {
	return definite(tagContext1C, definite(tagSequence, definite(tagOID, oidMGF1), hashAlg))
}

func labelParam(label []byte) []byte {
	return definite(tagContext2C, definite(tagSequence, definite(tagOID, oidPSpecified), definite(tagOctetString, label)))
}

// encryptContent encrypts already padded content with cek and a zero IV, and
// returns the contentEncryptionAlgorithm and encryptedContent elements.
func encryptContent(t *testing.T, cek, padded []byte) (alg, content []byte) {
	t.Helper()
	block, err := aes.NewCipher(cek)
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, 16)
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	return definite(tagSequence, definite(tagOID, oidAES256CBC), definite(tagOctetString, iv)),
		indefinite(tagContext0C, definite(tagOctetString, ct))
}

func splice(b []byte, at int, insert ...byte) []byte {
	out := append(bytes.Clone(b[:at]), insert...)
	return append(out, b[at:]...)
}

// TestNegative: each kind of damage or deviation from the KMS profile gives
// its own error class, and no plaintext.
func TestNegative(t *testing.T) {
	base, cek, key := baseFields(t)
	good := base.marshal()
	goodEnv, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := testKey(t, opensslKeyFile)
	ktri := func(version int, rid, alg []byte) []byte {
		return marshalKTRI(version, rid, alg, goodEnv.EncryptedKey)
	}
	ski := definite(tagContext0, goodEnv.SubjectKeyID)
	kmsAlg := kmsKeyEncryptionAlgorithm()
	with := func(mod func(f *envelopeFields)) []byte {
		f := *base
		f.recipientInfos = slices.Clone(base.recipientInfos)
		mod(&f)
		return f.marshal()
	}
	withKTRI := func(k []byte) []byte {
		return with(func(f *envelopeFields) { f.recipientInfos = [][]byte{k} })
	}
	withAlg := func(alg []byte) []byte { return withKTRI(ktri(2, ski, alg)) }
	flip := func(b []byte, p int) []byte { b = bytes.Clone(b); b[p] ^= 0x01; return b }
	wrapCEK := func(k []byte) []byte {
		ek, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &key.PublicKey, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		return marshalKTRI(2, ski, kmsAlg, ek)
	}
	padded := func(content []byte) func(f *envelopeFields) {
		return func(f *envelopeFields) { f.contentAlgorithm, f.encryptedContent = encryptContent(t, cek, content) }
	}
	ias := definite(tagSequence,
		definite(tagSequence, definite(tagSet, definite(tagSequence, definite(tagOID, []byte{0x55, 0x04, 0x03}), definite(0x0c, []byte("x"))))),
		definite(tagInteger, []byte{1}))
	deep := bytes.Repeat([]byte{0x30, 0x80}, 40)
	deep = append(deep, make([]byte, 80)...)

	tests := []struct {
		name  string
		input []byte
		key   *rsa.PrivateKey
		want  error
		plain string
	}{
		{"ok: Seal output", good, key, nil, "Hello, World"},
		{"ok: OpenSSL-style hash parameters absent", withAlg(oaepAlg(hashParam(sha256AlgID(false)), mgfParam(sha256AlgID(false)))), key, nil, "Hello, World"},
		{"ok: explicit empty label", withAlg(oaepAlg(hashParam(sha256AlgID(true)), mgfParam(sha256AlgID(true)), labelParam(nil))), key, nil, "Hello, World"},
		{"ok: primitive [0] encryptedContent", with(func(f *envelopeFields) {
			f.encryptedContent = definite(tagContext0, goodEnv.Ciphertext)
		}), key, nil, "Hello, World"},
		{"ok: one-byte chunks", with(func(f *envelopeFields) {
			var chunks []byte
			for _, c := range goodEnv.Ciphertext {
				chunks = appendDefinite(chunks, tagOctetString, []byte{c})
			}
			f.encryptedContent = indefinite(tagContext0C, chunks)
		}), key, nil, "Hello, World"},
		{"ok: non-minimal long-form length", with(func(f *envelopeFields) {
			f.encryptedContent = indefinite(tagContext0C, append([]byte{tagOctetString, 0x84, 0, 0, 0, 16}, goodEnv.Ciphertext...))
		}), key, nil, "Hello, World"},

		{"empty input", nil, key, ErrTruncated, ""},
		{"too large", make([]byte, MaxEnvelopeSize+1), key, ErrTooLarge, ""},
		{"trailing zero byte", append(bytes.Clone(good), 0), key, ErrTrailingData, ""},
		{"trailing end-of-contents", append(bytes.Clone(good), 0, 0), key, ErrTrailingData, ""},
		{"trailing element", append(bytes.Clone(good), 0x05, 0x00), key, ErrTrailingData, ""},
		{"nesting too deep", deep, key, ErrTooDeep, ""},
		{"nesting too deep inside encryptedContent", with(func(f *envelopeFields) { f.encryptedContent = append([]byte{0xa0, 0x80}, deep...) }), key, ErrTooDeep, ""},
		{"recipientInfos length past the end", func() []byte { b := bytes.Clone(good); b[22] = 0x7f; return b }(), key, ErrTruncated, ""},
		{"five length octets", slices.Concat(good[:20], []byte{0x31, 0x85, 0, 0, 0, 1, 0x6b}, good[24:]), key, ErrMalformed, ""},
		{"indefinite length on a primitive", with(func(f *envelopeFields) { f.encryptedContent = []byte{0x80, 0x80, 0, 0} }), key, ErrMalformed, ""},
		{"end-of-contents with a length", func() []byte { b := bytes.Clone(good); b[len(b)-1] = 1; return b }(), key, ErrMalformed, ""},
		{"high tag number", []byte{0x3f, 0x01, 0x80, 0x00}, key, ErrMalformed, ""},
		{"not a SEQUENCE", []byte{0x31, 0x00}, key, ErrMalformed, ""},

		{"ContentInfo signedData", with(func(f *envelopeFields) { f.contentInfoType = oidSignedData }), key, ErrContentType, ""},
		{"encrypted content not id-data", with(func(f *envelopeFields) { f.contentType = oidSignedData }), key, ErrContentType, ""},
		{"EnvelopedData version 0", with(func(f *envelopeFields) { f.version = 0 }), key, ErrVersion, ""},
		{"EnvelopedData version 3", with(func(f *envelopeFields) { f.version = 3 }), key, ErrVersion, ""},
		{"KeyTransRecipientInfo version 0", withKTRI(ktri(0, ski, kmsAlg)), key, ErrVersion, ""},
		{"originatorInfo", splice(good, 20, 0xa0, 0x00), key, ErrMalformed, ""},
		{"unprotectedAttrs", splice(good, len(good)-6, 0xa1, 0x00), key, ErrMalformed, ""},

		{"two recipients", with(func(f *envelopeFields) { f.recipientInfos = append(f.recipientInfos, f.recipientInfos[0]) }), key, ErrRecipientCount, ""},
		{"no recipients", with(func(f *envelopeFields) { f.recipientInfos = nil }), key, ErrRecipientCount, ""},
		{"issuerAndSerialNumber rid (openssl without -keyid)", with(func(f *envelopeFields) {
			f.version = 0
			f.recipientInfos = [][]byte{ktri(0, ias, kmsAlg)}
		}), key, ErrRecipient, ""},
		{"20-byte SHA-1 subjectKeyIdentifier", withKTRI(ktri(2, definite(tagContext0, make([]byte, 20)), kmsAlg)), key, ErrRecipient, ""},
		{"KeyAgreeRecipientInfo", with(func(f *envelopeFields) { f.recipientInfos = [][]byte{definite(tagContext1C)} }), key, ErrRecipient, ""},

		{"OAEP parameters absent (SHA-1 defaults)", withAlg(definite(tagSequence, definite(tagOID, oidRSAESOAEP))), key, ErrAlgorithm, ""},
		{"OAEP parameters NULL", withAlg(definite(tagSequence, definite(tagOID, oidRSAESOAEP), definite(tagNull))), key, ErrAlgorithm, ""},
		{"OAEP parameters empty (SHA-1 defaults)", withAlg(oaepAlg()), key, ErrAlgorithm, ""},
		{"OAEP hash SHA-1", withAlg(oaepAlg(hashParam(definite(tagSequence, definite(tagOID, oidSHA1), definite(tagNull))), mgfParam(sha256AlgID(true)))), key, ErrAlgorithm, ""},
		{"OAEP mask generation absent (MGF1-SHA-1)", withAlg(oaepAlg(hashParam(sha256AlgID(true)))), key, ErrAlgorithm, ""},
		{"MGF1 with SHA-1", withAlg(oaepAlg(hashParam(sha256AlgID(true)), mgfParam(definite(tagSequence, definite(tagOID, oidSHA1))))), key, ErrAlgorithm, ""},
		{"non-empty OAEP label", withAlg(oaepAlg(hashParam(sha256AlgID(true)), mgfParam(sha256AlgID(true)), labelParam([]byte("x")))), key, ErrAlgorithm, ""},
		{"SHA-256 parameters not NULL", withAlg(oaepAlg(hashParam(definite(tagSequence, definite(tagOID, oidSHA256), definite(tagOctetString))), mgfParam(sha256AlgID(true)))), key, ErrAlgorithm, ""},
		{"RSA PKCS#1 v1.5", withAlg(definite(tagSequence, definite(tagOID, oidRSAEncryption), definite(tagNull))), key, ErrAlgorithm, ""},
		{"AES-128-CBC", with(func(f *envelopeFields) {
			f.contentAlgorithm = definite(tagSequence, definite(tagOID, oidAES128CBC), definite(tagOctetString, goodEnv.IV))
		}), key, ErrAlgorithm, ""},
		{"8-byte IV", with(func(f *envelopeFields) {
			f.contentAlgorithm = definite(tagSequence, definite(tagOID, oidAES256CBC), definite(tagOctetString, goodEnv.IV[:8]))
		}), key, ErrMalformed, ""},
		{"encryptedContent absent", with(func(f *envelopeFields) { f.encryptedContent = nil }), key, ErrMalformed, ""},
		{"encryptedContent empty", with(func(f *envelopeFields) { f.encryptedContent = indefinite(tagContext0C) }), key, ErrMalformed, ""},
		{"ciphertext not whole blocks", with(func(f *envelopeFields) { f.encryptedContent = definite(tagContext0, goodEnv.Ciphertext[:15]) }), key, ErrMalformed, ""},
		{"constructed chunk", with(func(f *envelopeFields) {
			f.encryptedContent = indefinite(tagContext0C, indefinite(tagOctetString, definite(tagOctetString, goodEnv.Ciphertext)))
		}), key, ErrMalformed, ""},
		{"encryptedContent universal OCTET STRING", with(func(f *envelopeFields) { f.encryptedContent = definite(tagOctetString, goodEnv.Ciphertext) }), key, ErrMalformed, ""},

		{"wrong key", good, otherKey, ErrKeyMismatch, ""},
		{"nil key", good, nil, ErrUnsupportedKey, ""},
		{"flipped byte in encrypted key", flip(good, goodEnv.keyOff+100), key, ErrKeyDecrypt, ""},
		{"encrypted key one byte short", withKTRI(marshalKTRI(2, ski, kmsAlg, goodEnv.EncryptedKey[1:])), key, ErrKeyDecrypt, ""},
		{"16-byte content-encryption key", withKTRI(wrapCEK(cek[:16])), key, ErrKeyDecrypt, ""},
		{"flipped last ciphertext block", flip(good, goodEnv.chunkSpans[0].off+5), key, ErrPadding, ""},
		{"padding byte 0", with(padded(append([]byte("Hello, World"), 0, 0, 0, 0))), key, ErrPadding, ""},
		{"padding byte 17", with(padded(append([]byte("Hello, World!!!"), 17))), key, ErrPadding, ""},
		{"inconsistent padding bytes", with(padded(append([]byte("Hello, World"), 3, 4, 4, 4))), key, ErrPadding, ""},
		{"ok: full padding block", with(padded(append([]byte("0123456789abcdef"), bytes.Repeat([]byte{16}, 16)...))), key, nil, "0123456789abcdef"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := Open(tc.input, tc.key)
			wantClass(t, err, tc.want)
			if err != nil {
				if pt != nil {
					t.Fatal("plaintext not nil on error")
				}
				msg := err.Error()
				t.Log(msg)
				if strings.Contains(msg, "Hello") || strings.Contains(msg, hex.EncodeToString(cek)) || strings.Contains(msg, string(cek)) {
					t.Fatalf("error message leaks plaintext or key: %s", msg)
				}
				return
			}
			if string(pt) != tc.plain {
				t.Fatalf("plaintext\n got: %q\nwant: %q", pt, tc.plain)
			}
		})
	}
}

// TestTruncated: every proper prefix of every envelope fails with
// ErrTruncated (and so ErrMalformed), without panicking.
func TestTruncated(t *testing.T) {
	key := testKey(t, enclaverKeyFile)
	for _, file := range []string{enclaverEnvelopeFile, sdkcEnvelopeFile, opensslStreamFile, opensslNoStreamFile} {
		b := readTestdata(t, file)
		for n := range len(b) {
			pt, err := Open(b[:n], key)
			if !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrMalformed) || pt != nil {
				t.Fatalf("%s cut at %d of %d\n got: %v\nwant: %v", file, n, len(b), err, ErrTruncated)
			}
		}
	}
}

// TestFlips flips each byte (one bit, then all bits) of real and golden
// envelopes. Flips in the structure, the SKI and the encrypted key must fail
// with the class of that part; a flip in the last cipher block must fail or
// at least never yield the original plaintext. The IV and earlier blocks are
// malleable in CBC and not checked.
func TestFlips(t *testing.T) {
	sealKey := testKey(t, enclaverKeyFile)
	sealed, err := Seal(detRand(3), []byte("a plaintext of three AES blocks, 40 b."), spkiOf(t, sealKey))
	if err != nil {
		t.Fatal(err)
	}
	// Each flip of the encrypted key costs an RSA decryption: the enclaver
	// vector gets every byte, the others every keyStride-th.
	cases := []struct {
		name      string
		b         []byte
		key       *rsa.PrivateKey
		masks     []byte
		keyStride int
	}{
		{"enclaver", readTestdata(t, enclaverEnvelopeFile), sealKey, []byte{0x01, 0xff}, 1},
		{"openssl-stream", readTestdata(t, opensslStreamFile), testKey(t, opensslKeyFile), []byte{0x80}, 16},
		{"openssl-nostream", readTestdata(t, opensslNoStreamFile), testKey(t, opensslKeyFile), []byte{0x01}, 16},
		{"seal", sealed, sealKey, []byte{0x01}, 16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, err := Parse(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			orig, err := env.Decrypt(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			padErrs, lastOK := 0, 0
			for p := range tc.b {
				r := env.region(p)
				if r == regionIV || r == regionEarlyCiphertext || (r == regionEncryptedKey && (p-env.keyOff)%tc.keyStride != 0) {
					continue
				}
				masks := tc.masks
				if r == regionEncryptedKey {
					masks = masks[:1]
				}
				for _, m := range masks {
					b := bytes.Clone(tc.b)
					b[p] ^= m
					pt, err := Open(b, tc.key)
					if err != nil && pt != nil {
						t.Fatalf("byte %d mask %02x: plaintext not nil on error", p, m)
					}
					switch r {
					case regionStructure:
						if !isParseClass(err) {
							t.Fatalf("structure byte %d mask %02x\n got: %v\nwant: a parse error", p, m, err)
						}
					case regionSKI:
						if !errors.Is(err, ErrKeyMismatch) {
							t.Fatalf("SKI byte %d mask %02x\n got: %v\nwant: %v", p, m, err, ErrKeyMismatch)
						}
					case regionEncryptedKey:
						if !errors.Is(err, ErrKeyDecrypt) {
							t.Fatalf("encrypted key byte %d mask %02x\n got: %v\nwant: %v", p, m, err, ErrKeyDecrypt)
						}
					case regionLastBlock:
						switch {
						case errors.Is(err, ErrPadding):
							padErrs++
						case err == nil && !bytes.Equal(pt, orig):
							lastOK++ // valid padding by chance (about 1 in 256)
						default:
							t.Fatalf("last-block byte %d mask %02x\n got: %v (plaintext unchanged: %v)\nwant: %v or a different plaintext", p, m, err, bytes.Equal(pt, orig), ErrPadding)
						}
					}
				}
			}
			if padErrs == 0 {
				t.Fatal("no last-block flip gave ErrPadding")
			}
			t.Logf("last-block flips: %d padding errors, %d decrypted to other plaintext", padErrs, lastOK)
		})
	}
}

func TestDecryptKeySizes(t *testing.T) {
	env, err := Parse(readTestdata(t, enclaverEnvelopeFile))
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := env.Decrypt(small)
	wantClass(t, err, ErrUnsupportedKey)
	if pt != nil {
		t.Fatal("plaintext not nil on error")
	}
}

// TestDecryptHandBuilt: an Envelope not made by Parse is checked, not
// trusted.
func TestDecryptHandBuilt(t *testing.T) {
	key := testKey(t, enclaverKeyFile)
	env, err := Parse(readTestdata(t, enclaverEnvelopeFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(e *Envelope){
		"zero":               func(e *Envelope) { *e = Envelope{} },
		"short IV":           func(e *Envelope) { e.IV = e.IV[:8] },
		"partial block":      func(e *Envelope) { e.Ciphertext = e.Ciphertext[:10] },
		"empty ciphertext":   func(e *Envelope) { e.Ciphertext = nil },
		"short encryptedKey": func(e *Envelope) { e.EncryptedKey = e.EncryptedKey[:4] },
	} {
		t.Run(name, func(t *testing.T) {
			e := *env
			mod(&e)
			pt, err := e.Decrypt(key)
			if err == nil || pt != nil {
				t.Fatalf("got %q, %v; want an error", pt, err)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	_, err := Parse(append(readTestdata(t, enclaverEnvelopeFile), 0x42))
	if got, want := err.Error(), "cms: trailing data after ContentInfo: ContentInfo (at offset 461): 1 bytes after the end of the ContentInfo"; got != want {
		t.Fatalf("error text\n got: %s\nwant: %s", got, want)
	}
	b := readTestdata(t, enclaverEnvelopeFile)
	b[77] ^= 0x01 // last byte of the rsaesOaep OID
	_, err = Parse(b)
	if got, want := err.Error(), "cms: unsupported algorithm: keyEncryptionAlgorithm (at offset 67): OID 1.2.840.113549.1.1.6, want rsaesOaep (1.2.840.113549.1.1.7)"; got != want {
		t.Fatalf("error text\n got: %s\nwant: %s", got, want)
	}
}

func BenchmarkOpen(b *testing.B) {
	env := readTestdata(b, enclaverEnvelopeFile)
	key := testKey(b, enclaverKeyFile)
	for b.Loop() {
		if _, err := Open(env, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	env := readTestdata(b, enclaverEnvelopeFile)
	for b.Loop() {
		if _, err := Parse(env); err != nil {
			b.Fatal(err)
		}
	}
}

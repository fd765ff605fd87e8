package hd

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// englishSHA256 is the SHA-256 of bip-0039/english.txt in the BIP
// repository (github.com/bitcoin/bips, git blob
// 942040ed50f7205cafc465496229128ba4f78e75), the hash other BIP39
// implementations pin too (rust-bip39's wordlist test, among others). The
// go-bip39 module's copy of the list (github.com/tyler-smith/go-bip39
// v1.1.0, wordlists/english.go, which checks CRC-32 c1dbd296 of the same
// file) hashes to the same value; that module is not a dependency.
const englishSHA256 = "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"

func TestWordlistIsTheBIP39List(t *testing.T) {
	sum := sha256.Sum256([]byte(englishTxt))
	if got := hex.EncodeToString(sum[:]); got != englishSHA256 {
		t.Fatalf("english.txt SHA-256 = %s, want %s (the published bip-0039/english.txt)", got, englishSHA256)
	}
	if len(englishWords) != 2048 || len(englishIndex) != 2048 {
		t.Fatalf("%d words, %d distinct; want 2048", len(englishWords), len(englishIndex))
	}
	if !slices.IsSorted(englishWords) {
		t.Error("the word list is not sorted")
	}
	prefixes := map[string]bool{}
	for _, w := range englishWords {
		p := w[:min(4, len(w))]
		if prefixes[p] {
			t.Errorf("prefix %q is shared; BIP39 says the first four letters identify a word", p)
		}
		prefixes[p] = true
	}
}

// trezorVectors is the layout of the Trezor reference vectors
// (testdata/bip39-vectors.json): entropy, mnemonic, seed with the
// passphrase "TREZOR", and the BIP32 master xprv of that seed.
type trezorVectors struct {
	English  [][4]string `json:"english"`
	Japanese [][4]string `json:"japanese"`
}

func TestBIP39Vectors(t *testing.T) {
	var v trezorVectors
	readJSON(t, "bip39-vectors.json", &v)
	if len(v.English) != 24 {
		t.Fatalf("%d English vectors, want the published 24", len(v.English))
	}
	for i, vec := range v.English {
		entropy, mnemonic, seed := unhex(t, vec[0]), vec[1], vec[2]
		m, err := NewMnemonic(entropy)
		if err != nil || string(m) != mnemonic {
			t.Errorf("vector %d: NewMnemonic = %q, %v; want %q", i, m, err, mnemonic)
		}
		e, err := MnemonicToEntropy([]byte(mnemonic))
		if err != nil || !bytes.Equal(e, entropy) {
			t.Errorf("vector %d: MnemonicToEntropy = %x, %v; want %x", i, e, err, entropy)
		}
		s, err := SeedFromMnemonic([]byte(mnemonic), []byte("TREZOR"))
		if err != nil || hex.EncodeToString(s) != seed {
			t.Errorf("vector %d: SeedFromMnemonic = %x, %v; want %s", i, s, err, seed)
		}
		m0, err := NewMasterKey(Secp256k1, s)
		if err != nil {
			t.Fatal(err)
		}
		if x, err := m0.XPrv(); err != nil || string(x) != vec[3] {
			t.Errorf("vector %d: master xprv %s, %v; want %s", i, x, err, vec[3])
		}
	}
}

// TestBIP39NFKDJapanese runs the seed function on the published Japanese
// vectors: their words are separated by U+3000 IDEOGRAPHIC SPACE and
// written with precomposed kana, both of which only NFKD turns into what
// BIP39 hashes. (The word list of this package is English only; these
// vectors test the normalization, not the words.)
func TestBIP39NFKDJapanese(t *testing.T) {
	var v trezorVectors
	readJSON(t, "bip39-vectors.json", &v)
	if len(v.Japanese) != 24 {
		t.Fatalf("%d Japanese vectors, want 24", len(v.Japanese))
	}
	for i, vec := range v.Japanese {
		if !strings.Contains(vec[1], "\u3000") {
			t.Fatalf("vector %d has no ideographic space; the test data changed", i)
		}
		if got := hex.EncodeToString(bip39Seed([]byte(vec[1]), []byte("TREZOR"))); got != vec[2] {
			t.Errorf("Japanese vector %d: seed %s, want %s", i, got, vec[2])
		}
		if err := ValidateMnemonic([]byte(vec[1])); !errors.Is(err, ErrMnemonicWord) {
			t.Errorf("Japanese vector %d: ValidateMnemonic = %v, want ErrMnemonicWord (English only)", i, err)
		}
	}
}

// TestPassphraseNFKD: a passphrase in composed, decomposed or full-width
// form gives the same seed, as NFKD makes them the same text.
func TestPassphraseNFKD(t *testing.T) {
	m := []byte("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
	seed := func(p string) string {
		s, err := SeedFromMnemonic(m, []byte(p))
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(s)
	}
	const trezor = "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
	if got := seed("ＴＲＥＺＯＲ"); got != trezor {
		t.Errorf("full-width TREZOR: %s, want the TREZOR vector's seed", got)
	}
	if a, b := seed("caf\u00e9"), seed("cafe\u0301"); a != b {
		t.Errorf("composed and decomposed é differ: %s, %s", a, b)
	}
	if a, b := seed("café"), seed("cafe"); a == b {
		t.Error("é and e give the same seed; the passphrase is being folded beyond NFKD")
	}
	if _, err := SeedFromMnemonic(m, []byte{0xff}); !errors.Is(err, ErrPassphraseEncoding) {
		t.Errorf("invalid UTF-8 passphrase: %v, want ErrPassphraseEncoding", err)
	}
}

// TestMnemonicLeniency: case, extra white space and full-width letters
// give the seed of the canonical mnemonic (each is refused by the
// reference implementation, so no valid mnemonic changes meaning), and the
// caller's bytes are left as they were.
func TestMnemonicLeniency(t *testing.T) {
	canon := "legal winner thank year wave sausage worth useful legal winner thank yellow"
	want, err := SeedFromMnemonic([]byte(canon), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		"Legal WINNER thank year wave sausage worth useful legal winner thank yellow",
		"  legal\twinner thank year wave sausage worth useful legal winner thank yellow\n",
		"legal　winner thank year wave sausage worth useful legal winner thank ｙｅｌｌｏｗ",
	} {
		b := []byte(in)
		got, err := SeedFromMnemonic(b, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q: %x, %v; want the canonical seed", in, got, err)
		}
		if string(b) != in {
			t.Errorf("%q: the caller's mnemonic was changed to %q", in, b)
		}
	}
}

func TestMnemonicErrors(t *testing.T) {
	const valid = "legal winner thank year wave sausage worth useful legal winner thank yellow"
	for _, c := range []struct {
		name, in string
		want     error
		text     string
	}{
		{"11 words", "legal winner thank year wave sausage worth useful legal winner thank", ErrMnemonicWordCount, "has 11 words"},
		{"13 words", valid + " legal", ErrMnemonicWordCount, "has 13 words"},
		{"empty", "", ErrMnemonicWordCount, "has 0 words"},
		{"typo", "legal winner thank year wave sausage worth usefull legal winner thank yellow", ErrMnemonicWord, "word 8 of 12"},
		{"prefix only", "lega winner thank year wave sausage worth useful legal winner thank yellow", ErrMnemonicWord, "word 1 of 12"},
		{"checksum", "legal winner thank year wave sausage worth useful legal winner yellow thank", ErrMnemonicChecksum, "checksum of the 12 words"},
		{"checksum 24", strings.Repeat("zoo ", 23) + "zoo", ErrMnemonicChecksum, "24 words"},
		{"not UTF-8", "legal winner \xff", ErrMnemonicEncoding, "not valid UTF-8"},
		{"too long", strings.Repeat("legal ", 200), ErrMnemonicTooLong, "1200 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateMnemonic([]byte(c.in))
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("ValidateMnemonic = %v, want %v saying %q", err, c.want, c.text)
			}
			for _, w := range strings.Fields(c.in) {
				if len(w) >= 4 && strings.Contains(err.Error(), w) {
					t.Errorf("the error %q repeats the mnemonic's word %q", err, w)
				}
			}
			if s, err2 := SeedFromMnemonic([]byte(c.in), nil); s != nil || !errors.Is(err2, c.want) {
				t.Errorf("SeedFromMnemonic = %x, %v; want no seed and %v", s, err2, c.want)
			}
			if e, err2 := MnemonicToEntropy([]byte(c.in)); e != nil || !errors.Is(err2, c.want) {
				t.Errorf("MnemonicToEntropy = %x, %v; want no entropy and %v", e, err2, c.want)
			}
		})
	}
}

func TestNewMnemonicLengths(t *testing.T) {
	for n := 0; n <= 40; n++ {
		m, err := NewMnemonic(make([]byte, n))
		valid := n >= 16 && n <= 32 && n%4 == 0
		if valid != (err == nil) {
			t.Errorf("%d bytes: %v", n, err)
			continue
		}
		if !valid {
			if !errors.Is(err, ErrEntropyLength) {
				t.Errorf("%d bytes: %v, want ErrEntropyLength", n, err)
			}
			continue
		}
		if got, want := len(strings.Fields(string(m))), (n*8+n/4)/11; got != want {
			t.Errorf("%d bytes: %d words, want %d", n, got, want)
		}
	}
	// Random entropy round-trips through the mnemonic.
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		e := make([]byte, 16+4*r.IntN(5))
		for i := range e {
			e[i] = byte(r.Uint32())
		}
		m, err := NewMnemonic(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := MnemonicToEntropy(m)
		if err != nil || !bytes.Equal(got, e) {
			t.Fatalf("round trip of %x: %x, %v", e, got, err)
		}
	}
}

func TestPBKDF2MatchesTheStandardLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, iter := range []int{1, 2, 3, 2048} {
		p, s := make([]byte, r.IntN(200)), make([]byte, r.IntN(200))
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		want, err := pbkdf2.Key(sha512.New, string(p), s, iter, 64)
		if err != nil {
			t.Fatal(err)
		}
		if got := pbkdf2SHA512(p, s, iter); !bytes.Equal(got, want) {
			t.Errorf("%d iterations: %x, want %x", iter, got, want)
		}
	}
}

// FuzzMnemonic: any input is either refused with one of the mnemonic
// errors or is a mnemonic whose entropy encodes back to its canonical
// form; nothing panics.
func FuzzMnemonic(f *testing.F) {
	f.Add([]byte("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"))
	f.Add([]byte("legal winner thank year wave sausage worth useful legal winner thank yellow"))
	f.Add([]byte("ＬＥＧＡＬ winner thank year wave sausage worth useful legal winner thank yellow"))
	f.Add([]byte("zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, in []byte) {
		canon, entropy, err := parseMnemonic(in)
		if err != nil {
			for _, kind := range []error{ErrMnemonicTooLong, ErrMnemonicEncoding, ErrMnemonicWordCount, ErrMnemonicWord, ErrMnemonicChecksum} {
				if errors.Is(err, kind) {
					return
				}
			}
			t.Fatalf("unexpected error kind: %v", err)
		}
		m, err := NewMnemonic(entropy)
		if err != nil || !bytes.Equal(m, canon) {
			t.Fatalf("entropy %x encodes to %q, %v; the canonical input was %q", entropy, m, err, canon)
		}
	})
}

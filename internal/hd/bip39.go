package hd

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	_ "embed"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// english.txt is bip-0039/english.txt of the BIP repository, byte for byte
// (2048 words, one per line, LF-terminated); TestWordlistIsTheBIP39List
// checks its SHA-256 against the published one.
//
//go:embed english.txt
var englishTxt string

var (
	englishWords = strings.Split(strings.TrimSuffix(englishTxt, "\n"), "\n")
	englishIndex = indexWords(englishWords)
)

func indexWords(words []string) map[string]uint16 {
	if len(words) != 2048 {
		panic("hd: the embedded BIP39 word list does not have 2048 words")
	}
	m := make(map[string]uint16, len(words))
	for i, w := range words {
		m[w] = uint16(i)
	}
	return m
}

const (
	// pbkdf2Iterations and the "mnemonic" salt prefix are BIP39's.
	pbkdf2Iterations = 2048
	// maxMnemonicBytes bounds the input before normalization: 24 words of
	// at most 8 letters are 215 ASCII bytes; the rest is room for extra
	// spaces and for full-width forms, which NFKD folds to ASCII.
	maxMnemonicBytes = 1024
	// SeedLen is the length of a BIP39 seed.
	SeedLen = 64
)

// Wipe zeroes b. Callers wipe what this package hands them (seeds,
// mnemonics, private keys) once they are done with it.
func Wipe(b []byte) { clear(b) }

// NewMnemonic encodes entropy of 16, 20, 24, 28 or 32 bytes as a BIP39
// English mnemonic of 12, 15, 18, 21 or 24 words separated by single
// spaces. The caller wipes the result.
func NewMnemonic(entropy []byte) ([]byte, error) {
	n := len(entropy)
	if n < 16 || n > 32 || n%4 != 0 {
		return nil, errorf(ErrEntropyLength, "%d bytes of entropy; BIP39 takes 16, 20, 24, 28 or 32 bytes (128 to 256 bits in steps of 32)", n)
	}
	sum := sha256.Sum256(entropy)
	defer clear(sum[:])
	words := (n*8 + n/4) / 11
	out := make([]byte, 0, words*9)
	for w := range words {
		if w > 0 {
			out = append(out, ' ')
		}
		var idx int
		for b := w * 11; b < w*11+11; b++ {
			idx = idx<<1 | bitAt(entropy, sum[:], b)
		}
		out = append(out, englishWords[idx]...)
	}
	return out, nil
}

// bitAt returns bit b (0 is the most significant) of entropy || checksum.
func bitAt(entropy, checksum []byte, b int) int {
	src := entropy
	if b >= len(entropy)*8 {
		src, b = checksum, b-len(entropy)*8
	}
	return int(src[b/8]>>(7-b%8)) & 1
}

// ValidateMnemonic checks a mnemonic as SeedFromMnemonic reads it: valid
// UTF-8, NFKD-normalized, split on white space, each word lower-cased and
// found in the English list, 12 to 24 words in steps of 3, and the
// checksum right.
func ValidateMnemonic(mnemonic []byte) error {
	canon, entropy, err := parseMnemonic(mnemonic)
	clear(canon)
	clear(entropy)
	return err
}

// MnemonicToEntropy returns the entropy a valid mnemonic encodes. The
// caller wipes it.
func MnemonicToEntropy(mnemonic []byte) ([]byte, error) {
	canon, entropy, err := parseMnemonic(mnemonic)
	clear(canon)
	return entropy, err
}

// SeedFromMnemonic validates the mnemonic and returns its 64-byte BIP39
// seed: PBKDF2-HMAC-SHA512 with 2048 iterations of the NFKD form of the
// mnemonic (its words joined by single spaces) under the salt "mnemonic"
// followed by the NFKD form of the passphrase (any valid UTF-8, empty for
// none). The caller wipes the seed.
func SeedFromMnemonic(mnemonic, passphrase []byte) ([]byte, error) {
	canon, entropy, err := parseMnemonic(mnemonic)
	clear(entropy)
	defer clear(canon)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(passphrase) {
		return nil, errorf(ErrPassphraseEncoding, "the passphrase is not valid UTF-8; BIP39 passphrases are Unicode text")
	}
	return bip39Seed(canon, passphrase), nil
}

// bip39Seed is BIP39's seed function on text as given: both mnemonic and
// passphrase are NFKD-normalized first (canonical mnemonics already are;
// the normalization is idempotent). It checks no words, so that tests can
// run it on the published vectors of other languages.
func bip39Seed(mnemonic, passphrase []byte) []byte {
	nm := norm.NFKD.Append(nil, mnemonic...)
	salt := append([]byte("mnemonic"), passphrase...)
	nsalt := norm.NFKD.Append(nil, salt...)
	defer clear(nm)
	defer clear(salt)
	defer clear(nsalt)
	return pbkdf2SHA512(nm, nsalt, pbkdf2Iterations)
}

// pbkdf2SHA512 is PBKDF2 (RFC 8018) with HMAC-SHA512 for one 64-byte
// block, which is all BIP39 asks for. It takes the password as bytes (the
// standard library's crypto/pbkdf2 takes a string, a copy nobody can
// wipe); TestPBKDF2MatchesTheStandardLibrary compares the two.
func pbkdf2SHA512(password, salt []byte, iter int) []byte {
	mac := hmac.New(sha512.New, password)
	mac.Write(salt)
	mac.Write([]byte{0, 0, 0, 1})
	u := mac.Sum(nil)
	t := bytes.Clone(u)
	for i := 1; i < iter; i++ {
		mac.Reset()
		mac.Write(u)
		u = mac.Sum(u[:0])
		subtle.XORBytes(t, t, u)
	}
	clear(u)
	return t
}

// parseMnemonic normalizes and checks a mnemonic. It returns the
// canonical form (NFKD, lower case, single spaces), which is what BIP39
// hashes, and the entropy; both are the caller's to wipe. Errors name the
// position of a bad word, never the word.
func parseMnemonic(mnemonic []byte) (canon, entropy []byte, err error) {
	if len(mnemonic) > maxMnemonicBytes {
		return nil, nil, errorf(ErrMnemonicTooLong, "the mnemonic is %d bytes; a BIP39 mnemonic of 24 words is at most about 215 bytes (limit %d)", len(mnemonic), maxMnemonicBytes)
	}
	if !utf8.Valid(mnemonic) {
		return nil, nil, errorf(ErrMnemonicEncoding, "the mnemonic is not valid UTF-8; write its words in plain letters a-z separated by spaces")
	}
	// Append into nil always copies (Bytes may return its input), so that
	// lower-casing and wiping touch our copy, never the caller's bytes.
	nfkd := norm.NFKD.Append(nil, mnemonic...)
	defer clear(nfkd)
	words := bytes.FieldsFunc(nfkd, unicode.IsSpace)
	switch len(words) {
	case 12, 15, 18, 21, 24:
	default:
		return nil, nil, errorf(ErrMnemonicWordCount, "the mnemonic has %d words; BIP39 mnemonics have 12, 15, 18, 21 or 24 words separated by spaces", len(words))
	}
	idx := make([]uint16, len(words))
	defer clear(idx)
	for i, w := range words {
		for j, c := range w {
			if 'A' <= c && c <= 'Z' {
				w[j] = c + 'a' - 'A'
			}
		}
		v, ok := englishIndex[string(w)]
		if !ok {
			return nil, nil, errorf(ErrMnemonicWord, "word %d of %d is not in the BIP39 English word list; check its spelling (each word is 3 to 8 letters a-z, and its first four letters identify it)", i+1, len(words))
		}
		idx[i] = v
	}
	entropy, err = mnemonicEntropy(idx)
	if err != nil {
		return nil, nil, err
	}
	canon = make([]byte, 0, len(nfkd))
	for i, w := range words {
		if i > 0 {
			canon = append(canon, ' ')
		}
		canon = append(canon, w...)
	}
	return canon, entropy, nil
}

// mnemonicEntropy unpacks 11 bits per word index into entropy and
// checksum, and checks the checksum (the first len/32 bits of SHA-256 of
// the entropy).
func mnemonicEntropy(idx []uint16) ([]byte, error) {
	bits := len(idx) * 11
	csBits := bits / 33
	buf := make([]byte, (bits+7)/8)
	defer clear(buf)
	for i, v := range idx {
		for j := range 11 {
			if v>>(10-j)&1 == 1 {
				b := i*11 + j
				buf[b/8] |= 1 << (7 - b%8)
			}
		}
	}
	entLen := (bits - csBits) / 8
	entropy := bytes.Clone(buf[:entLen])
	sum := sha256.Sum256(entropy)
	defer clear(sum[:])
	want, got := sum[0]>>(8-csBits), buf[entLen]>>(8-csBits)
	if subtle.ConstantTimeByteEq(want, got) != 1 {
		clear(entropy)
		return nil, errorf(ErrMnemonicChecksum, "the checksum of the %d words does not match: a word is wrong or out of order (every word can be in the list and still not form a valid mnemonic)", len(idx))
	}
	return entropy, nil
}

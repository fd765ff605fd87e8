package cms

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"testing"
)

// FuzzOpen: Parse and Open never panic and return nil values with an error;
// an envelope that opens is addressed to the key that opened it; and for an
// envelope that opens, a flip (mask at pos) in the structure, the
// subjectKeyIdentifier or the encrypted key errors, and one in the last
// cipher block errors or at least changes the plaintext (a random last block
// has valid PKCS#7 padding about once in 256). Flips in the IV and earlier
// blocks are not checked: AES-CBC is malleable there.
//
// Seeds: the real KMS envelopes, the openssl golden envelopes (both
// encryptedContent forms) and a multi-block Seal envelope.
func FuzzOpen(f *testing.F) {
	keys := []*rsa.PrivateKey{testKey(f, enclaverKeyFile), testKey(f, opensslKeyFile)}
	sealed, err := Seal(detRand(9), bytes.Repeat([]byte("fuzz"), 300), spkiOf(f, keys[0]))
	if err != nil {
		f.Fatal(err)
	}
	for i, seed := range [][]byte{
		readTestdata(f, enclaverEnvelopeFile),
		readTestdata(f, sdkcEnvelopeFile),
		readTestdata(f, opensslStreamFile),
		readTestdata(f, opensslNoStreamFile),
		sealed,
	} {
		f.Add(seed, uint16(0), byte(0))
		f.Add(seed, uint16(40+i), byte(0x01))         // SKI
		f.Add(seed, uint16(300+i), byte(0x80))        // encrypted key
		f.Add(seed, uint16(len(seed)-13), byte(0x04)) // last block or trailer
	}
	f.Fuzz(func(t *testing.T, data []byte, pos uint16, mask byte) {
		env, perr := Parse(data)
		if (perr == nil) == (env == nil) {
			t.Fatalf("Parse returned %v and %v", env, perr)
		}
		if perr != nil && !isParseClass(perr) && !errors.Is(perr, ErrTooLarge) {
			t.Fatalf("Parse error of a non-parse class: %v", perr)
		}
		for _, key := range keys {
			pt, err := Open(data, key)
			if err != nil {
				if pt != nil {
					t.Fatalf("Open returned plaintext with error %v", err)
				}
				var pe *Error
				if perr != nil && (!errors.As(perr, &pe) || !errors.Is(err, pe.Class)) {
					t.Fatalf("Open error %v, Parse error %v", err, perr)
				}
				continue
			}
			if perr != nil {
				t.Fatalf("Open succeeded where Parse failed: %v", perr)
			}
			if err := env.CheckRecipient(spkiOf(t, key)); err != nil {
				t.Fatalf("opened with a key the envelope is not addressed to: %v", err)
			}
			if mask == 0 || len(data) == 0 {
				continue
			}
			p := int(pos) % len(data)
			r := env.region(p)
			if r == regionIV || r == regionEarlyCiphertext {
				continue
			}
			flipped := bytes.Clone(data)
			flipped[p] ^= mask
			pt2, err := Open(flipped, key)
			switch {
			case err != nil && pt2 != nil:
				t.Fatalf("Open returned plaintext with error %v", err)
			case err == nil && r != regionLastBlock:
				t.Fatalf("flip of byte %d (region %d) with %02x still opens", p, r, mask)
			case err == nil && bytes.Equal(pt2, pt):
				t.Fatalf("flip of last-block byte %d with %02x gives the same plaintext", p, mask)
			}
		}
	})
}

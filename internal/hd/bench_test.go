package hd

import (
	"bytes"
	"testing"
)

// Cold derivation: from the 64-byte seed through the master key to a key
// five steps down, as the enclave does for a path not in its cache. The
// Weierstrass curves use BIP44's Ethereum path (three hardened steps, two
// normal ones); ed25519, hardened only, the same path all hardened.
func BenchmarkColdDerivation(b *testing.B) {
	seed := bytes.Repeat([]byte{0x42}, SeedLen)
	for _, c := range []struct {
		curve Curve
		path  string
	}{
		{Secp256k1, "m/44'/60'/0'/0/7"},
		{P256, "m/44'/60'/0'/0/7"},
		{Ed25519, "m/44'/60'/0'/0'/7'"},
	} {
		path, err := ParsePath(c.path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.curve.String(), func(b *testing.B) {
			for b.Loop() {
				m, err := NewMasterKey(c.curve, seed)
				if err != nil {
					b.Fatal(err)
				}
				k, err := m.Derive(path)
				if err != nil {
					b.Fatal(err)
				}
				m.Destroy()
				k.Destroy()
			}
		})
	}
}

// BenchmarkPublicChild: one non-hardened step from an extended public key,
// what a host does per deposit address.
func BenchmarkPublicChild(b *testing.B) {
	for _, curve := range []Curve{Secp256k1, P256} {
		m, _ := NewMasterKey(curve, bytes.Repeat([]byte{0x42}, SeedLen))
		p, _ := m.Public()
		b.Run(curve.String(), func(b *testing.B) {
			var i uint32
			for b.Loop() {
				if _, err := p.Child(i % HardenedOffset); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkSeedFromMnemonic: BIP39's 2048 PBKDF2 iterations, paid once
// per mnemonic entry (the seed is what a cache keeps).
func BenchmarkSeedFromMnemonic(b *testing.B) {
	m := []byte("legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title")
	for b.Loop() {
		s, err := SeedFromMnemonic(m, []byte("TREZOR"))
		if err != nil {
			b.Fatal(err)
		}
		Wipe(s)
	}
}

func BenchmarkXPub(b *testing.B) {
	m, _ := NewMasterKey(Secp256k1, bytes.Repeat([]byte{0x42}, SeedLen))
	k, _ := m.Derive(Path{44 | HardenedOffset, 60 | HardenedOffset, HardenedOffset})
	p, _ := k.Public()
	b.Run("serialize", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.XPub(); err != nil {
				b.Fatal(err)
			}
		}
	})
	s, _ := p.XPub()
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			if _, err := ParseXPub(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

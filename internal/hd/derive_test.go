package hd

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/elliptic"
	"errors"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestPublicDerivationMatchesPrivate: for random seeds and random
// non-hardened tails, deriving from the xpub gives the public key, chain
// code, fingerprints and depth that deriving from the private key gives.
func TestPublicDerivationMatchesPrivate(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, curve := range []Curve{Secp256k1, P256} {
		for range 20 {
			m, err := NewMasterKey(curve, randBytes(r, 16+r.IntN(49)))
			if err != nil {
				t.Fatal(err)
			}
			account, err := m.Derive(Path{44 | HardenedOffset, r.Uint32()})
			if err != nil {
				t.Fatal(err)
			}
			tail := Path{r.Uint32N(HardenedOffset), r.Uint32N(HardenedOffset), r.Uint32N(20)}
			priv, err := account.Derive(tail)
			if err != nil {
				t.Fatal(err)
			}
			ap, _ := account.Public()
			pub, err := ap.Derive(tail)
			if err != nil {
				t.Fatal(err)
			}
			pp, _ := priv.Public()
			if pp.meta != pub.meta || pp.chainCode != pub.chainCode {
				t.Fatalf("%v %v: private derivation %v, public %v", curve, tail, pp, pub)
			}
		}
	}
}

// TestPublicKeysMatchTheLibraries: the public key derived with each
// private key is the one crypto/ecdh, decred's secp256k1 and crypto/ed25519
// compute from it independently.
func TestPublicKeysMatchTheLibraries(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 30 {
		for _, curve := range []Curve{Secp256k1, P256, Ed25519} {
			m, _ := NewMasterKey(curve, randBytes(r, 32))
			k, err := m.Derive(Path{r.Uint32() | HardenedOffset, r.Uint32() | HardenedOffset})
			if err != nil {
				t.Fatal(err)
			}
			priv, _ := k.PrivateKey()
			var want []byte
			switch curve {
			case Secp256k1:
				want = secp256k1.PrivKeyFromBytes(priv).PubKey().SerializeCompressed()
			case P256:
				e, err := ecdh.P256().NewPrivateKey(priv)
				if err != nil {
					t.Fatal(err)
				}
				x, y := elliptic.Unmarshal(elliptic.P256(), e.PublicKey().Bytes()) //lint:ignore SA1019 test: decoding an uncompressed point to compare.
				want = elliptic.MarshalCompressed(elliptic.P256(), x, y)
			case Ed25519:
				want = ed25519.NewKeyFromSeed(priv).Public().(ed25519.PublicKey)
			}
			if !bytes.Equal(k.PublicKey(), want) {
				t.Fatalf("%v: PublicKey %x, want %x", curve, k.PublicKey(), want)
			}
		}
	}
}

// TestP256ScalarsMatchBigInt checks the limb arithmetic against math/big,
// at the edges (0, 1, n-1, n, 2^256-1, sums of exactly n) and at random.
func TestP256ScalarsMatchBigInt(t *testing.T) {
	n := elliptic.P256().Params().N
	r := rand.New(rand.NewPCG(9, 10))
	edge := []*big.Int{big.NewInt(0), big.NewInt(1), new(big.Int).Sub(n, big.NewInt(1)), n, new(big.Int).Add(n, big.NewInt(1)),
		new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))}
	vals := append([]*big.Int{}, edge...)
	for range 500 {
		vals = append(vals, new(big.Int).SetBytes(randBytes(r, 32)))
	}
	for _, k := range vals {
		kb := fixed(k)
		if got, want := p256ValidScalar(&kb), k.Sign() > 0 && k.Cmp(n) < 0; got != want {
			t.Errorf("valid(%x) = %v", k, got)
		}
		if k.Sign() == 0 || k.Cmp(n) >= 0 {
			continue
		}
		// il = n - k makes the sum exactly n = 0 mod n: invalid.
		ils := append([]*big.Int{new(big.Int).Sub(n, k)}, vals[r.IntN(len(vals))], vals[r.IntN(len(vals))])
		for _, il := range ils {
			ilb := fixed(il)
			var out [32]byte
			ok := p256AddScalars(&ilb, &kb, &out)
			sum := new(big.Int).Mod(new(big.Int).Add(il, k), n)
			wantOK := il.Cmp(n) < 0 && sum.Sign() != 0
			if ok != wantOK || (ok && new(big.Int).SetBytes(out[:]).Cmp(sum) != 0) || (!ok && out != [32]byte{}) {
				t.Errorf("add(%x, %x) = %x, %v; want %x, %v", il, k, out, ok, sum, wantOK)
			}
		}
	}
}

func fixed(v *big.Int) [32]byte {
	var b [32]byte
	v.FillBytes(b[:])
	return b
}

// TestSecp256k1ScalarEdges: I_L of n or above, and a sum of 0, are
// invalid child keys (the branches SLIP-10 retries; no published vector
// reaches them on secp256k1, where they have probability below 2^-127).
func TestSecp256k1ScalarEdges(t *testing.T) {
	n, _ := new(big.Int).SetString("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", 16) // SEC 2
	k := fixed(big.NewInt(12345))
	for _, c := range []struct {
		il   *big.Int
		want bool
	}{
		{n, false},
		{new(big.Int).Add(n, big.NewInt(1)), false},
		{new(big.Int).Sub(n, big.NewInt(12345)), false},
		{new(big.Int).Sub(n, big.NewInt(12344)), true},
		{big.NewInt(0), true},
	} {
		il := fixed(c.il)
		var out [32]byte
		if got := secp256k1AddScalars(&il, &k, &out); got != c.want {
			t.Errorf("add(%x, 12345) valid = %v, want %v", c.il, got, c.want)
		}
	}
	for _, c := range []struct {
		k    *big.Int
		want bool
	}{{big.NewInt(0), false}, {big.NewInt(1), true}, {new(big.Int).Sub(n, big.NewInt(1)), true}, {n, false}} {
		b := fixed(c.k)
		if secp256k1ValidScalar(&b) != c.want {
			t.Errorf("valid(%x) != %v", c.k, c.want)
		}
	}
}

func TestDerivationErrors(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	ed, _ := NewMasterKey(Ed25519, seed)
	k1, _ := NewMasterKey(Secp256k1, seed)
	edPub, _ := ed.Public()
	k1Pub, _ := k1.Public()
	p256, _ := NewMasterKey(P256, seed)
	p256Pub, _ := p256.Public()
	deep := k1.clone()
	deep.depth = 255
	deepPub, _ := deep.Public()
	for _, c := range []struct {
		name string
		err  error
		want error
		text string
	}{
		{"ed25519 normal child", second(ed.Child(0)), ErrHardenedOnly, "hardened children only; write the step as 0'"},
		{"ed25519 normal step in a path", second(ed.Derive(Path{HardenedOffset, 5})), ErrHardenedOnly, "step 2"},
		{"ed25519 public child", second(edPub.Child(0)), ErrHardenedOnly, "no public derivation"},
		{"hardened public child", second(k1Pub.Child(HardenedOffset + 3)), ErrHardenedChild, "3' (hardened)"},
		{"hardened public P-256 path", second(p256Pub.Derive(Path{1, HardenedOffset})), ErrHardenedChild, "step 2"},
		{"depth 255", second(deep.Child(0)), ErrDepth, "depth 255"},
		{"depth 255 public", second(deepPub.Child(0)), ErrDepth, "depth 255"},
		{"path too deep", second(k1.Derive(make(Path, MaxPathDepth+1))), ErrPathTooDeep, "at most 32"},
		{"short seed", second(NewMasterKey(Secp256k1, make([]byte, 15))), ErrSeedLength, "15 bytes"},
		{"long seed", second(NewMasterKey(P256, make([]byte, 65))), ErrSeedLength, "65 bytes"},
		{"unknown curve", second(NewMasterKey(Curve(9), seed)), ErrCurve, "Curve(9)"},
		{"xpub of P-256", second(p256Pub.XPub()), ErrUnsupported, "secp256k1 keys only"},
		{"xprv of ed25519", second(ed.XPrv()), ErrUnsupported, "secp256k1 keys only"},
		{"ed25519 parts", second(NewExtendedPublicKey(Ed25519, make([]byte, 32), make([]byte, 32))), ErrUnsupported, "only secp256k1 and P-256"},
		{"short chain code", second(NewExtendedPublicKey(P256, p256.PublicKey(), make([]byte, 31))), ErrChainCode, "31 bytes"},
		{"uncompressed key", second(NewExtendedPublicKey(P256, make([]byte, 65), make([]byte, 32))), ErrPublicKey, "65 bytes"},
		{"zero ExtendedKey", second((&ExtendedKey{}).Child(HardenedOffset)), ErrCurve, "zero ExtendedKey"},
		{"zero ExtendedPublicKey", second((&ExtendedPublicKey{}).Child(0)), ErrCurve, "zero ExtendedPublicKey"},
		{"corrupt parent point", second((&ExtendedPublicKey{meta: meta{curve: P256}}).Child(0)), ErrPublicKey, "not a point"},
		{"corrupt secp256k1 parent point", second((&ExtendedPublicKey{meta: meta{curve: Secp256k1}}).Child(0)), ErrPublicKey, "not a point"},
		{"off-curve key", second(NewExtendedPublicKey(Secp256k1, append([]byte{2}, bytes.Repeat([]byte{0xff}, 32)...), make([]byte, 32))), ErrPublicKey, "not a compressed SEC1 point"},
	} {
		if !errors.Is(c.err, c.want) || !strings.Contains(c.err.Error(), c.text) {
			t.Errorf("%s: %v; want %v saying %q", c.name, c.err, c.want, c.text)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestNewExtendedPublicKey: a P-256 key rebuilt from its public key and
// chain code derives the same children as the original.
func TestNewExtendedPublicKey(t *testing.T) {
	m, _ := NewMasterKey(P256, bytes.Repeat([]byte{1}, 64))
	acct, _ := m.Derive(Path{44 | HardenedOffset, 0})
	ap, _ := acct.Public()
	rebuilt, err := NewExtendedPublicKey(P256, ap.PublicKey(), ap.ChainCode())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ap.Derive(Path{3, 9})
	b, _ := rebuilt.Derive(Path{3, 9})
	if !bytes.Equal(a.PublicKey(), b.PublicKey()) || !bytes.Equal(a.ChainCode(), b.ChainCode()) {
		t.Error("the rebuilt key derives other children")
	}
}

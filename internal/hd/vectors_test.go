package hd

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// bip32Vectors is testdata/bip32-vectors.json: BIP32's test vectors 1 to
// 4 (seed and, per chain, the path and both serializations) and the
// invalid extended keys of test vector 5 with BIP32's reason for each.
type bip32Vectors struct {
	Vectors []struct {
		Name   string `json:"name"`
		Seed   string `json:"seed"`
		Chains []struct {
			Path string `json:"path"`
			XPub string `json:"xpub"`
			XPrv string `json:"xprv"`
		} `json:"chains"`
	} `json:"vectors"`
	Invalid []struct {
		Key    string `json:"key"`
		Reason string `json:"reason"`
	} `json:"invalid"`
}

func TestBIP32Vectors(t *testing.T) {
	var v bip32Vectors
	readJSON(t, "bip32-vectors.json", &v)
	chains, public := 0, 0
	for _, vec := range v.Vectors {
		master, err := NewMasterKey(Secp256k1, unhex(t, vec.Seed))
		if err != nil {
			t.Fatalf("%s: %v", vec.Name, err)
		}
		for _, c := range vec.Chains {
			chains++
			path, err := ParsePath(c.Path)
			if err != nil {
				t.Fatalf("%s %s: %v", vec.Name, c.Path, err)
			}
			k, err := master.Derive(path)
			if err != nil {
				t.Fatalf("%s %s: %v", vec.Name, c.Path, err)
			}
			checkXKeys(t, vec.Name+" "+c.Path, k, c.XPub, c.XPrv)
			// The same key read back from its serializations.
			pk, err := ParseXPrv([]byte(c.XPrv))
			if err != nil {
				t.Fatalf("%s %s: ParseXPrv: %v", vec.Name, c.Path, err)
			}
			checkXKeys(t, vec.Name+" "+c.Path+" (parsed)", pk, c.XPub, c.XPrv)
			pub, err := ParseXPub(c.XPub)
			if err != nil {
				t.Fatalf("%s %s: ParseXPub: %v", vec.Name, c.Path, err)
			}
			if s, _ := pub.XPub(); s != c.XPub {
				t.Errorf("%s %s: xpub read and written back: %s", vec.Name, c.Path, s)
			}
			// A non-hardened last step also from the parent's xpub.
			if n := len(path); n > 0 && !Hardened(path[n-1]) {
				public++
				parent, err := master.Derive(path[:n-1])
				if err != nil {
					t.Fatal(err)
				}
				pp, _ := parent.Public()
				child, err := pp.Child(path[n-1])
				if err != nil {
					t.Fatalf("%s %s: public derivation: %v", vec.Name, c.Path, err)
				}
				if s, _ := child.XPub(); s != c.XPub {
					t.Errorf("%s %s: xpub by public derivation %s, want %s", vec.Name, c.Path, s, c.XPub)
				}
			}
		}
	}
	if len(v.Vectors) != 4 || chains != 17 || public != 6 {
		t.Errorf("ran %d vectors with %d chains, %d by public derivation; BIP32 publishes 4 with 17 (6+6+2+3), 6 ending in a normal step", len(v.Vectors), chains, public)
	}
}

func checkXKeys(t *testing.T, name string, k *ExtendedKey, wantPub, wantPrv string) {
	t.Helper()
	prv, err := k.XPrv()
	if err != nil || string(prv) != wantPrv {
		t.Errorf("%s: xprv %s, %v; want %s", name, prv, err, wantPrv)
	}
	p, err := k.Public()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := p.XPub(); err != nil || s != wantPub {
		t.Errorf("%s: xpub %s, %v; want %s", name, s, err, wantPub)
	}
}

// TestBIP32InvalidKeys runs test vector 5 through both parsers: every key
// is refused by both, and the parser of its own kind refuses it for the
// reason BIP32 gives.
func TestBIP32InvalidKeys(t *testing.T) {
	var v bip32Vectors
	readJSON(t, "bip32-vectors.json", &v)
	want := map[string]error{
		"pubkey version / prvkey mismatch":            ErrXKeyKeyData,
		"prvkey version / pubkey mismatch":            ErrXKeyKeyData,
		"invalid pubkey prefix 04":                    ErrXKeyKeyData,
		"invalid prvkey prefix 04":                    ErrXKeyKeyData,
		"invalid pubkey prefix 01":                    ErrXKeyKeyData,
		"invalid prvkey prefix 01":                    ErrXKeyKeyData,
		"zero depth with non-zero parent fingerprint": ErrXKeyZeroDepth,
		"zero depth with non-zero index":              ErrXKeyZeroDepth,
		"unknown extended key version":                ErrXKeyVersion,
		"private key 0 not in 1..n-1":                 ErrXKeyKeyData,
		"private key n not in 1..n-1":                 ErrXKeyKeyData,
		"invalid pubkey 020000000000000000000000000000000000000000000000000000000000000007": ErrXKeyKeyData,
		"invalid checksum": ErrXKeyChecksum,
	}
	if len(v.Invalid) != 16 {
		t.Fatalf("%d invalid keys; BIP32 test vector 5 lists 16", len(v.Invalid))
	}
	for _, c := range v.Invalid {
		kind, ok := want[c.Reason]
		if !ok {
			t.Fatalf("no expected error for %q", c.Reason)
		}
		_, errPub := ParseXPub(c.Key)
		_, errPrv := ParseXPrv([]byte(c.Key))
		if errPub == nil || errPrv == nil {
			t.Errorf("%s (%s): ParseXPub %v, ParseXPrv %v; want both refused", c.Key, c.Reason, errPub, errPrv)
			continue
		}
		own := errPub
		if strings.HasPrefix(c.Key, "xprv") {
			own = errPrv
		}
		if !errors.Is(own, kind) {
			t.Errorf("%s (%s): %v; want %v", c.Key, c.Reason, own, kind)
		}
		for _, err := range []error{errPub, errPrv} {
			if strings.Contains(err.Error(), c.Key[4:20]) {
				t.Errorf("the error %q repeats the key", err)
			}
		}
	}
}

// slip10Vectors is testdata/slip10-vectors.json: SLIP-10's test vectors
// 1 and 2 for secp256k1, nist256p1 and ed25519 and the two P-256 retry
// vectors. fingerprint is the parent's; public is ser_P.
type slip10Vectors struct {
	Vectors []struct {
		Name   string `json:"name"`
		Curve  string `json:"curve"`
		Seed   string `json:"seed"`
		Chains []struct {
			Path        string `json:"path"`
			Fingerprint string `json:"fingerprint"`
			ChainCode   string `json:"chain_code"`
			Private     string `json:"private"`
			Public      string `json:"public"`
		} `json:"chains"`
	} `json:"vectors"`
}

var slip10Curves = map[string]Curve{"secp256k1": Secp256k1, "nist256p1": P256, "ed25519": Ed25519}

func TestSLIP10Vectors(t *testing.T) {
	var v slip10Vectors
	readJSON(t, "slip10-vectors.json", &v)
	chains, public := map[Curve]int{}, 0
	for _, vec := range v.Vectors {
		curve := slip10Curves[vec.Curve]
		master, err := NewMasterKey(curve, unhex(t, vec.Seed))
		if err != nil {
			t.Fatalf("%s: %v", vec.Name, err)
		}
		for _, c := range vec.Chains {
			chains[curve]++
			name := vec.Name + " " + c.Path
			path, err := ParsePath(c.Path)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			k, err := master.Derive(path)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			checkSLIP10(t, name, k, c.Fingerprint, c.ChainCode, c.Private, c.Public)
			if n := len(path); n > 0 && !Hardened(path[n-1]) {
				public++
				parent, _ := master.Derive(path[:n-1])
				pp, _ := parent.Public()
				child, err := pp.Child(path[n-1])
				if err != nil {
					t.Fatalf("%s: public derivation: %v", name, err)
				}
				if got := hex.EncodeToString(child.pub[:]); got != c.Public {
					t.Errorf("%s: public derivation gives %s, want %s", name, got, c.Public)
				}
				if got := hex.EncodeToString(child.ChainCode()); got != c.ChainCode {
					t.Errorf("%s: public derivation chain code %s, want %s", name, got, c.ChainCode)
				}
			}
		}
	}
	// 2 vectors of 6 chains per curve, and the retry vectors of P-256 (3
	// chains for the derivation retry, 1 for the seed retry).
	if chains[Secp256k1] != 12 || chains[Ed25519] != 12 || chains[P256] != 16 || public != 13 {
		t.Errorf("ran %v chains and %d public derivations; want 12 secp256k1, 16 P-256, 12 ed25519, 13 public (3 per secp256k1 and P-256 vector, 1 in the retry vector)", chains, public)
	}
}

func checkSLIP10(t *testing.T, name string, k *ExtendedKey, fp, chain, priv, pub string) {
	t.Helper()
	pfp := k.ParentFingerprint()
	priv2, _ := k.PrivateKey()
	p, _ := k.Public()
	for _, c := range []struct{ what, got, want string }{
		{"parent fingerprint", hex.EncodeToString(pfp[:]), fp},
		{"chain code", hex.EncodeToString(p.ChainCode()), chain},
		{"private key", hex.EncodeToString(priv2), priv},
		{"public key", hex.EncodeToString(k.pub[:]), pub},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s %s, want %s", name, c.what, c.got, c.want)
		}
	}
	if k.curve == Ed25519 {
		// PublicKey is the RFC 8032 key of the private key (the seed).
		want := ed25519.NewKeyFromSeed(priv2).Public().(ed25519.PublicKey)
		if !bytes.Equal(k.PublicKey(), want) {
			t.Errorf("%s: PublicKey %x, want %x", name, k.PublicKey(), want)
		}
	}
}

// TestRootCommitment recomputes the documented formula by hand for the
// ed25519 master key of SLIP-10's test vector 1 (its published public key
// and chain code).
func TestRootCommitment(t *testing.T) {
	m, err := NewMasterKey(Ed25519, unhex(t, "000102030405060708090a0b0c0d0e0f"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := m.Public()
	var msg []byte
	msg = append(msg, "enclave-signer/hd/root-commitment/v1\x00ed25519\x00"...)
	msg = append(msg, unhex(t, "00a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed")...)
	msg = append(msg, unhex(t, "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb")...)
	if got, want := p.RootCommitment(), sha256Sum(msg); got != want {
		t.Errorf("RootCommitment %x, want %x", got, want)
	}
	// Another curve of the same seed commits to something else.
	k, _ := NewMasterKey(P256, unhex(t, "000102030405060708090a0b0c0d0e0f"))
	kp, _ := k.Public()
	if kp.RootCommitment() == p.RootCommitment() {
		t.Error("P-256 and ed25519 roots have the same commitment")
	}
}

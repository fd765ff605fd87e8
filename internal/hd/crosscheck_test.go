package hd

import (
	"encoding/hex"
	"fmt"
	"testing"

	ethcrypto "github.com/ethereum/go-ethereum/crypto"
)

// independentDerivations is testdata/independent-derivations.json: keys
// derived by implementations that share no code with this package (see
// testdata/README.md): Ethereum addresses at m/44'/60'/0'/0/i and ed25519
// public keys at m/44'/501'/i'/0', P-256 public keys and chain codes at
// m/44'/0'/0'/0/i, from BIP39 mnemonics.
type independentDerivations struct {
	Ethereum []struct {
		Mnemonic   string   `json:"mnemonic"`
		Passphrase string   `json:"passphrase"`
		PathPrefix string   `json:"path_prefix"`
		Addresses  []string `json:"addresses"`
	} `json:"ethereum"`
	Ed25519 []struct {
		Mnemonic   string `json:"mnemonic"`
		Passphrase string `json:"passphrase"`
		Keys       []struct {
			Path      string `json:"path"`
			PublicKey string `json:"public_key"`
		} `json:"keys"`
	} `json:"ed25519"`
	P256 []struct {
		Mnemonic   string `json:"mnemonic"`
		Passphrase string `json:"passphrase"`
		Keys       []struct {
			Path      string `json:"path"`
			ChainCode string `json:"chain_code"`
			PublicKey string `json:"public_key"`
		} `json:"keys"`
	} `json:"p256"`
}

// TestEthereumAddressesCrossCheck derives m/44'/60'/0'/0/i for i in
// 0..19 from two BIP39 mnemonics (the first of the Trezor vectors with no
// passphrase, the last with "TREZOR"), turns each public key into an
// address with go-ethereum (crypto.PubkeyToAddress, EIP-55 checksummed),
// and compares with the addresses @scure/bip32 and ethers computed. The
// account key's xpub derives the same 20 addresses without the private key.
func TestEthereumAddressesCrossCheck(t *testing.T) {
	var v independentDerivations
	readJSON(t, "independent-derivations.json", &v)
	n := 0
	for _, run := range v.Ethereum {
		seed, err := SeedFromMnemonic([]byte(run.Mnemonic), []byte(run.Passphrase))
		if err != nil {
			t.Fatal(err)
		}
		master, err := NewMasterKey(Secp256k1, seed)
		if err != nil {
			t.Fatal(err)
		}
		chain, err := ParsePath(run.PathPrefix[:len(run.PathPrefix)-1])
		if err != nil {
			t.Fatal(err)
		}
		account, err := master.Derive(chain)
		if err != nil {
			t.Fatal(err)
		}
		accountPub, _ := account.Public()
		for i, want := range run.Addresses {
			path, err := ParsePath(fmt.Sprintf("%s%d", run.PathPrefix, i))
			if err != nil {
				t.Fatal(err)
			}
			k, err := master.Derive(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := ethAddress(t, k.PublicKey()); got != want {
				t.Errorf("%v (passphrase %q): %s, want %s", path, run.Passphrase, got, want)
			}
			p, err := accountPub.Child(uint32(i))
			if err != nil {
				t.Fatal(err)
			}
			if got := ethAddress(t, p.PublicKey()); got != want {
				t.Errorf("%v from the account xpub: %s, want %s", path, got, want)
			}
			n++
		}
	}
	if n != 40 {
		t.Errorf("checked %d addresses, want 40", n)
	}
}

func ethAddress(t *testing.T, compressed []byte) string {
	t.Helper()
	pub, err := ethcrypto.DecompressPubkey(compressed)
	if err != nil {
		t.Fatal(err)
	}
	return ethcrypto.PubkeyToAddress(*pub).Hex()
}

// TestEd25519CrossCheck compares ed25519 keys at m/44'/501'/i'/0' with
// those of the ed25519-hd-key package, another SLIP-10 implementation.
func TestEd25519CrossCheck(t *testing.T) {
	var v independentDerivations
	readJSON(t, "independent-derivations.json", &v)
	n := 0
	for _, run := range v.Ed25519 {
		seed, err := SeedFromMnemonic([]byte(run.Mnemonic), []byte(run.Passphrase))
		if err != nil {
			t.Fatal(err)
		}
		master, _ := NewMasterKey(Ed25519, seed)
		for _, c := range run.Keys {
			path, err := ParsePath(c.Path)
			if err != nil {
				t.Fatal(err)
			}
			k, err := master.Derive(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(k.PublicKey()); got != c.PublicKey {
				t.Errorf("%s: %s, want %s", c.Path, got, c.PublicKey)
			}
			n++
		}
	}
	if n != 20 {
		t.Errorf("checked %d ed25519 keys, want 20", n)
	}
}

// TestP256CrossCheck compares P-256 keys and chain codes at
// m/44'/0'/0'/0/i with those of SLIP-10's reference implementation
// (slip-0010/testvectors.py), privately and from the account's public key.
func TestP256CrossCheck(t *testing.T) {
	var v independentDerivations
	readJSON(t, "independent-derivations.json", &v)
	n := 0
	for _, run := range v.P256 {
		seed, err := SeedFromMnemonic([]byte(run.Mnemonic), []byte(run.Passphrase))
		if err != nil {
			t.Fatal(err)
		}
		master, _ := NewMasterKey(P256, seed)
		account, err := master.Derive(Path{44 | HardenedOffset, HardenedOffset, HardenedOffset, 0})
		if err != nil {
			t.Fatal(err)
		}
		accountPub, _ := account.Public()
		for i, c := range run.Keys {
			path, err := ParsePath(c.Path)
			if err != nil {
				t.Fatal(err)
			}
			k, err := master.Derive(path)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := k.Public()
			fromPub, err := accountPub.Child(uint32(i))
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range []*ExtendedPublicKey{p, fromPub} {
				if hex.EncodeToString(got.PublicKey()) != c.PublicKey || hex.EncodeToString(got.ChainCode()) != c.ChainCode {
					t.Errorf("%s: public key %x chain code %x, want %s %s", c.Path, got.PublicKey(), got.ChainCode(), c.PublicKey, c.ChainCode)
				}
			}
			n++
		}
	}
	if n != 10 {
		t.Errorf("checked %d P-256 keys, want 10", n)
	}
}

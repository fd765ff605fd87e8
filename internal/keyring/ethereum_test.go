package keyring_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	ethcrypto "github.com/ethereum/go-ethereum/crypto"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyring/keyringtest"
)

// go-ethereum (a test-only dependency) is the reference for what Ethereum
// tooling expects: addresses, r‖s‖v, recovery and low S.

func TestEthereumAddressMatchesGoEthereum(t *testing.T) {
	var fs []fixture
	for i := range 20 {
		fs = append(fs, secp256k1Fixture(fmt.Sprintf("k%d", i), "sec1"))
	}
	fs = append(fs, secp256k1FixtureFromScalar("one", "sec1", big.NewInt(1).FillBytes(make([]byte, 32))))
	kr, err := keyring.ParseKeyring("eth", keyringJSON(fs...))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range kr.Keys() {
		priv, err := ethcrypto.ToECDSA(fs[i].scalar)
		if err != nil {
			t.Fatal(err)
		}
		want := ethcrypto.PubkeyToAddress(priv.PublicKey).Hex()
		if got := k.EthereumAddress(); got != want {
			t.Errorf("key %s: ethereum_address\n got %s\nwant %s (go-ethereum)", k.ID(), got, want)
		}
	}
}

func TestSecp256k1AgainstGoEthereum(t *testing.T) {
	f := secp256k1Fixture("eth-signer", "pkcs8")
	kr, err := keyring.ParseKeyring("eth", keyringJSON(f))
	if err != nil {
		t.Fatal(err)
	}
	k := kr.Keys()[0]
	priv, err := ethcrypto.ToECDSA(f.scalar)
	if err != nil {
		t.Fatal(err)
	}
	addr := ethcrypto.PubkeyToAddress(priv.PublicKey)
	pub := k.Public().(*secp256k1.PublicKey)

	const n = 300
	var v0, v1, highS int
	halfN := new(big.Int).Rsh(secp256k1.Params().N, 1)
	for i := range n {
		digest := ethcrypto.Keccak256(fmt.Appendf(nil, "tx %d", i))
		sig, err := k.SignDigest(digest)
		if err != nil {
			t.Fatal(err)
		}
		keyringtest.CheckSecp256k1(t, pub, digest, sig)
		if new(big.Int).SetBytes(sig.RSV[32:64]).Cmp(halfN) > 0 {
			highS++
		}
		switch sig.RecoveryID {
		case 0:
			v0++
		case 1:
			v1++
		}
		// go-ethereum's own signer gives the same bytes (both RFC 6979).
		want, err := ethcrypto.Sign(digest, priv)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sig.RSV, want) {
			t.Fatalf("digest %x: RSV\n got %x\nwant %x (go-ethereum crypto.Sign)", digest, sig.RSV, want)
		}
		rec, err := ethcrypto.SigToPub(digest, sig.RSV)
		if err != nil {
			t.Fatalf("SigToPub: %v", err)
		}
		if got := ethcrypto.PubkeyToAddress(*rec); got != addr || got.Hex() != k.EthereumAddress() {
			t.Fatalf("recovered address %s, want %s (%s)", got.Hex(), addr.Hex(), k.EthereumAddress())
		}
		// VerifySignature rejects high S, so this also checks low S.
		if !ethcrypto.VerifySignature(ethcrypto.FromECDSAPub(&priv.PublicKey), digest, sig.RSV[:64]) {
			t.Fatalf("go-ethereum VerifySignature rejects %x", sig.RSV)
		}
	}
	t.Logf("%d signatures: recovery id 0: %d, 1: %d; high S: %d", n, v0, v1, highS)
	if highS != 0 {
		t.Errorf("%d of %d signatures have high S", highS, n)
	}
	// Both recovery ids occur (each has probability 1/2; failing by chance
	// has probability 2^-299).
	if v0 == 0 || v1 == 0 {
		t.Errorf("recovery ids 0: %d, 1: %d; want both", v0, v1)
	}

	// SignMessage signs SHA-256 of the message.
	msg := []byte("hello")
	sig, err := k.SignMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(msg)
	want, _ := ethcrypto.Sign(h[:], priv)
	if !bytes.Equal(sig.RSV, want) {
		t.Errorf("SignMessage RSV %s, want go-ethereum's over SHA-256(msg) %s", hex.EncodeToString(sig.RSV), hex.EncodeToString(want))
	}
}

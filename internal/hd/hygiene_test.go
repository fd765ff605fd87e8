package hd

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// secretForms lists the ways a secret could leak into text: hex both
// cases, base64, the raw bytes, and the decimal or hex of its first bytes
// as fmt prints a byte array.
func secretForms(b []byte) []string {
	h := hex.EncodeToString(b)
	return []string{h, strings.ToUpper(h), base64.StdEncoding.EncodeToString(b), string(b),
		h[:16], fmt.Sprint(b[:6])[1:12]}
}

func assertNoSecret(t *testing.T, what, text string, secrets map[string][]byte) {
	t.Helper()
	for name, s := range secrets {
		for _, f := range secretForms(s) {
			if strings.Contains(text, f) {
				t.Errorf("%s shows the %s (%q): %s", what, name, f, text)
			}
		}
	}
}

// TestNoSecretInText: fmt in every verb, slog and errors show no private
// key, chain code or seed of an ExtendedKey; an ExtendedPublicKey's String
// shows no chain code either (it is public, but String is a summary).
func TestNoSecretInText(t *testing.T) {
	seed := bytes.Repeat([]byte{0x5a, 0xc3}, 32)
	for _, curve := range []Curve{Secp256k1, P256, Ed25519} {
		m, _ := NewMasterKey(curve, seed)
		k, err := m.Derive(Path{HardenedOffset + 1, HardenedOffset + 2})
		if err != nil {
			t.Fatal(err)
		}
		priv, _ := k.PrivateKey()
		p, _ := k.Public()
		secrets := map[string][]byte{"private key": priv, "chain code": p.ChainCode(), "seed": seed}
		var texts []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			texts = append(texts, fmt.Sprintf(verb, k), fmt.Sprintf(verb, *k), fmt.Sprintf(verb, []*ExtendedKey{k}))
		}
		var logged bytes.Buffer
		slog.New(slog.NewJSONHandler(&logged, nil)).Info("derived", "key", k)
		texts = append(texts, logged.String(), p.String())
		for _, txt := range texts {
			assertNoSecret(t, curve.String()+" text", txt, secrets)
		}
		if !strings.Contains(k.String(), "depth 2 index 2'") {
			t.Errorf("String() = %q, want the key's place", k.String())
		}
	}
}

// TestNoSecretInErrors: the errors of parsing an xprv and of a mnemonic
// never carry the input.
func TestNoSecretInErrors(t *testing.T) {
	m, _ := NewMasterKey(Secp256k1, bytes.Repeat([]byte{9}, 32))
	x, _ := m.XPrv()
	priv, _ := m.PrivateKey()
	for i := range x {
		bad := bytes.Clone(x)
		bad[i] = '0' // not in the alphabet
		_, err := ParseXPrv(bad)
		if !errors.Is(err, ErrXKeyEncoding) {
			t.Fatalf("character %d: %v", i, err)
		}
		assertNoSecret(t, "ParseXPrv error", err.Error(), map[string][]byte{"xprv": x[4:40], "private key": priv})
		bad[i] = x[(i+1)%len(x)] // another alphabet character: a checksum error, mostly
		if _, err := ParseXPrv(bad); err != nil {
			assertNoSecret(t, "ParseXPrv error", err.Error(), map[string][]byte{"xprv": x[4:40], "private key": priv})
		}
	}
}

// TestDestroy: Destroy zeroes the private key and the chain code, and
// every later use of the secret half fails with ErrDestroyed; Derive
// leaves its receiver intact and destroys the keys it walks through.
func TestDestroy(t *testing.T) {
	m, _ := NewMasterKey(Secp256k1, bytes.Repeat([]byte{3}, 32))
	before := *m
	leaf, err := m.Derive(Path{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if m.key != before.key || m.chainCode != before.chainCode || m.destroyed {
		t.Fatal("Derive changed its receiver")
	}
	leaf.Destroy()
	leaf.Destroy() // idempotent
	if leaf.key != [32]byte{} || leaf.chainCode != [32]byte{} {
		t.Errorf("Destroy left key %x chain code %x", leaf.key, leaf.chainCode)
	}
	for name, err := range map[string]error{
		"Child":      second(leaf.Child(0)),
		"Derive":     second(leaf.Derive(Path{0})),
		"PrivateKey": second(leaf.PrivateKey()),
		"XPrv":       second(leaf.XPrv()),
		"Public":     second(leaf.Public()),
	} {
		if !errors.Is(err, ErrDestroyed) {
			t.Errorf("%s after Destroy: %v, want ErrDestroyed", name, err)
		}
	}
	// The public part stays readable after Destroy (it is not secret).
	if len(leaf.PublicKey()) != 33 || leaf.Depth() != 3 {
		t.Errorf("public part after Destroy: %x depth %d", leaf.PublicKey(), leaf.Depth())
	}
	// Wipe zeroes.
	b := []byte{1, 2, 3}
	Wipe(b)
	if !bytes.Equal(b, []byte{0, 0, 0}) {
		t.Errorf("Wipe left %v", b)
	}
}

// FuzzParseXKey: both parsers refuse or accept any text without panicking,
// and what they accept is written back exactly.
func FuzzParseXKey(f *testing.F) {
	var v bip32Vectors
	readJSON(f, "bip32-vectors.json", &v)
	for _, vec := range v.Vectors {
		for _, c := range vec.Chains {
			f.Add(c.XPub)
			f.Add(c.XPrv)
		}
	}
	for _, c := range v.Invalid {
		f.Add(c.Key)
	}
	f.Add("1111")
	f.Add("0OIl")
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParseXPub(s); err == nil {
			if out, err := p.XPub(); err != nil || out != s {
				t.Fatalf("xpub %q written back as %q, %v", s, out, err)
			}
		}
		if k, err := ParseXPrv([]byte(s)); err == nil {
			if out, err := k.XPrv(); err != nil || string(out) != s {
				t.Fatalf("xprv written back differently: %v", err)
			}
		}
	})
}

// FuzzBase58: decode(encode(b)) == b for any bytes.
func FuzzBase58(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 1, 2})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 200 {
			return
		}
		got, err := base58Decode(base58Encode(b))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("round trip of %x: %x, %v", b, got, err)
		}
	})
}

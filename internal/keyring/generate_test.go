package keyring_test

import (
	"bytes"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyring/keyringtest"
)

// generatedJSON wraps generated PEMs into keyring plaintext, one key each.
func generatedJSON(alg keyring.Algorithm, pems ...[]byte) []byte {
	var fs []fixture
	for i, p := range pems {
		fs = append(fs, fixture{id: fmt.Sprintf("k%d", i), alg: alg, pem: string(p)})
	}
	return keyringJSON(fs...)
}

func TestGenerateParsesAndSigns(t *testing.T) {
	for _, alg := range keyring.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			const n = 4
			var pems [][]byte
			for range n {
				p, err := keyring.Generate(alg)
				if err != nil {
					t.Fatalf("Generate(%s): %v", alg, err)
				}
				// Byte for byte what encoding/pem writes for the same DER,
				// and PKCS#8 as openssl genpkey writes it.
				b, rest := pem.Decode(p)
				if b == nil || len(rest) != 0 || b.Type != "PRIVATE KEY" || len(b.Headers) != 0 {
					t.Fatalf("Generate(%s) is not one PEM PRIVATE KEY block without headers (%d trailing bytes)", alg, len(rest))
				}
				if want := pem.EncodeToMemory(b); !bytes.Equal(p, want) {
					t.Fatalf("Generate(%s) PEM layout differs from encoding/pem's for the same DER (%d vs %d bytes)", alg, len(p), len(want))
				}
				pems = append(pems, p)
			}
			kr, err := keyring.ParseKeyring("generated", generatedJSON(alg, pems...))
			if err != nil {
				t.Fatalf("ParseKeyring of generated %s keys: %v", alg, err)
			}
			defer kr.Destroy()
			seen := map[string]bool{}
			for _, k := range kr.Keys() {
				if k.Algorithm() != alg {
					t.Errorf("key %s: algorithm %s, want %s", k.ID(), k.Algorithm(), alg)
				}
				if seen[k.PublicKeyPEM()] {
					t.Errorf("key %s: public key repeats an earlier generated key", k.ID())
				}
				seen[k.PublicKeyPEM()] = true
				if (alg == keyring.ECDSASecp256k1) != (k.EthereumAddress() != "") {
					t.Errorf("key %s: ethereum address %q for %s", k.ID(), k.EthereumAddress(), alg)
				}
				keyringtest.TestSigner(t, k)
			}
		})
	}
}

// TestGenerateOpenSSL has openssl read every generated key from stdin (the
// keys never touch disk) and derive the same public key.
func TestGenerateOpenSSL(t *testing.T) {
	needTool(t, "openssl", "openssl")
	for _, alg := range keyring.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			p, err := keyring.Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			defer clear(p)
			pub := run(t, p, "openssl", "pkey", "-pubout")
			text := run(t, p, "openssl", "pkey", "-noout", "-text")
			wantText := map[keyring.Algorithm]string{
				keyring.Ed25519:        "ED25519 Private-Key",
				keyring.ECDSAP256:      "NIST CURVE: P-256",
				keyring.ECDSASecp256k1: "ASN1 OID: secp256k1",
			}[alg]
			if !bytes.Contains(text, []byte(wantText)) {
				t.Errorf("openssl pkey -text does not name %q for %s", wantText, alg)
			}
			kr, err := keyring.ParseKeyring("generated", generatedJSON(alg, p))
			if err != nil {
				t.Fatal(err)
			}
			defer kr.Destroy()
			if got := kr.Keys()[0].PublicKeyPEM(); got != string(pub) {
				t.Errorf("public key of generated %s key:\n keyring %q\n openssl %q", alg, got, pub)
			}
		})
	}
}

func TestGenerateUnknownAlgorithm(t *testing.T) {
	for _, a := range []keyring.Algorithm{"", "rsa", "ECDSA-P256", "secp256k1"} {
		p, err := keyring.Generate(a)
		if err == nil || p != nil || !strings.Contains(err.Error(), "want one of ed25519, ecdsa-p256, ecdsa-secp256k1") {
			t.Errorf("Generate(%q) = %d bytes, %v\n want an error listing the algorithms", a, len(p), err)
		}
	}
	if a, err := keyring.ParseAlgorithm("ecdsa-secp256k1"); err != nil || a != keyring.ECDSASecp256k1 {
		t.Errorf("ParseAlgorithm(ecdsa-secp256k1) = %q, %v", a, err)
	}
}

func TestCheckID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"payments", true}, {"a.b-c_D9", true}, {strings.Repeat("x", 64), true},
		{"", false}, {strings.Repeat("x", 65), false}, {"has space", false}, {"a/b", false}, {"é", false},
	} {
		if err := keyring.CheckID(tc.id); (err == nil) != tc.ok {
			t.Errorf("CheckID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}

func TestGenerateKeyring(t *testing.T) {
	_, id, rcpt := newIdentity(t)
	_, other, _ := newIdentity(t)
	specs := []keyring.KeySpec{
		{ID: "edge", Algorithm: keyring.Ed25519},
		{ID: "web.p256", Algorithm: keyring.ECDSAP256},
		{ID: "payments", Algorithm: keyring.ECDSASecp256k1},
	}
	for _, armored := range []bool{false, true} {
		t.Run(fmt.Sprintf("armor=%v", armored), func(t *testing.T) {
			ct, infos, err := keyring.GenerateKeyring(keyring.GenerateOptions{Keys: specs, Recipients: []age.Recipient{rcpt}, Armor: armored})
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.HasPrefix(ct, []byte("-----BEGIN AGE ENCRYPTED FILE-----\n")); got != armored {
				t.Errorf("armored header present = %v, want %v", got, armored)
			}
			if !armored && !bytes.HasPrefix(ct, []byte("age-encryption.org/v1\n")) {
				t.Errorf("binary age file does not start with the age header: %q", ct[:min(len(ct), 24)])
			}
			if len(infos) != len(specs) {
				t.Fatalf("%d key infos, want %d", len(infos), len(specs))
			}
			set, err := keyring.Load(id, keyring.File{Name: "keyring.age", Ciphertext: ct})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer set.Destroy()
			for i, s := range specs {
				k, err := set.Key(s.ID)
				if err != nil {
					t.Fatalf("key %s: %v", s.ID, err)
				}
				if infos[i].ID != s.ID || infos[i].Algorithm != s.Algorithm || infos[i].PublicKeyPEM != k.PublicKeyPEM() || infos[i].EthereumAddress != k.EthereumAddress() {
					t.Errorf("info %d:\n got  %+v\n want the loaded key's %+v", i, infos[i], k.Info())
				}
				keyringtest.TestSigner(t, k)
			}
			if _, err := keyring.Load(other, keyring.File{Name: "keyring.age", Ciphertext: ct}); !errors.Is(err, age.ErrIncorrectIdentity) && !strings.Contains(fmt.Sprint(err), "no identity matched") {
				t.Errorf("Load with another identity: %v, want no identity matched", err)
			}
		})
	}
}

func TestGenerateKeyringFormat2(t *testing.T) {
	_, id, rcpt := newIdentity(t)
	for _, o := range []keyring.GenerateOptions{
		{KeyringID: "payments", KeyringVersion: 7},
		{KeyringID: "p", KeyringVersion: 1<<64 - 1, Armor: true},
		{},
	} {
		o.Keys, o.Recipients = []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519}}, []age.Recipient{rcpt}
		ct, _, err := keyring.GenerateKeyring(o)
		if err != nil {
			t.Fatal(err)
		}
		kr, err := keyring.DecryptKeyring(id, "k.age", ct)
		if err != nil {
			t.Fatal(err)
		}
		want := keyring.Format2
		if o.KeyringID == "" {
			want = keyring.Format1
		}
		if kr.FormatVersion() != want || kr.KeyringID() != o.KeyringID || kr.KeyringVersion() != o.KeyringVersion {
			t.Errorf("generated with %q %d: format %d, %q %d", o.KeyringID, o.KeyringVersion, kr.FormatVersion(), kr.KeyringID(), kr.KeyringVersion())
		}
		kr.Destroy()
	}
}

func TestGenerateKeyringErrors(t *testing.T) {
	_, _, r := newIdentity(t)
	rcpt := []age.Recipient{r}
	ed := []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519}}
	cl := []keyring.ClientSpec{{ID: "c", Secrets: [][]byte{scalar("c")}}}
	for _, tc := range []struct {
		name string
		o    keyring.GenerateOptions
		want string
	}{
		{"no keys", keyring.GenerateOptions{Recipients: rcpt}, "no keys requested"},
		{"no recipients", keyring.GenerateOptions{Keys: []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519}}}, "no recipients"},
		{"duplicate", keyring.GenerateOptions{Recipients: rcpt, Keys: []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519}, {ID: "a", Algorithm: keyring.ECDSAP256}}}, `key id "a" requested twice`},
		{"bad id", keyring.GenerateOptions{Recipients: rcpt, Keys: []keyring.KeySpec{{ID: "a b", Algorithm: keyring.Ed25519}}}, "key 0: id: invalid character at position 2"},
		{"bad algorithm", keyring.GenerateOptions{Recipients: rcpt, Keys: []keyring.KeySpec{{ID: "a", Algorithm: "rsa"}}}, `unknown algorithm "rsa"`},
		{"bad keyring id", keyring.GenerateOptions{Recipients: rcpt, Keys: []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519}}, KeyringID: "pay\"ments"}, "keyring id: invalid character at position 4"},
		{"version without id", keyring.GenerateOptions{Recipients: rcpt, Keys: []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519}}, KeyringVersion: 3}, "a keyring version without a keyring id"},
		{"clients in format 1", keyring.GenerateOptions{Recipients: rcpt, Keys: ed, Audience: "p", Clients: cl}, "clients and an audience need a format 2 keyring"},
		{"clients without audience", keyring.GenerateOptions{Recipients: rcpt, Keys: ed, KeyringID: "k", Clients: cl}, "give an audience and clients together"},
		{"audience without clients", keyring.GenerateOptions{Recipients: rcpt, Keys: ed, KeyringID: "k", Audience: "p"}, "give an audience and clients together"},
		{"bad audience", keyring.GenerateOptions{Recipients: rcpt, Keys: ed, KeyringID: "k", Audience: `p"`, Clients: cl}, "audience: invalid character at position 2"},
		{"bad client id", keyring.GenerateOptions{Recipients: rcpt, Keys: ed, KeyringID: "k", Audience: "p", Clients: []keyring.ClientSpec{{ID: `c"`, Secrets: cl[0].Secrets}}}, "client 1: id: invalid character"},
		{"no secret", keyring.GenerateOptions{Recipients: rcpt, Keys: ed, KeyringID: "k", Audience: "p", Clients: []keyring.ClientSpec{{ID: "c"}}}, `client "c": 0 secrets, want 1 or 2`},
		{"short secret", keyring.GenerateOptions{Recipients: rcpt, Keys: ed, KeyringID: "k", Audience: "p", Clients: []keyring.ClientSpec{{ID: "c", Secrets: [][]byte{make([]byte, 31)}}}}, "a secret of 31 bytes, want 32"},
		{"client rate", keyring.GenerateOptions{Recipients: rcpt, Keys: ed, KeyringID: "k", Audience: "p", Clients: []keyring.ClientSpec{{ID: "c", Secrets: cl[0].Secrets, Rate: &keyring.Rate{PerSecond: 0.0001, Burst: 1}}}}, "per_second 0.0001 has more than 3 digits"},
		{"policy undeclared client", keyring.GenerateOptions{Recipients: rcpt, KeyringID: "k", Audience: "p", Clients: cl, Keys: []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519, Policy: &keyring.KeyPolicy{Clients: []string{"d"}}}}}, `policy.clients[0]: client "d" is not declared`},
		{"policy bad kind", keyring.GenerateOptions{Recipients: rcpt, KeyringID: "k", Audience: "p", Clients: cl, Keys: []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519, Policy: &keyring.KeyPolicy{Clients: []string{"c"}, Kinds: []string{`x"`}}}}}, `key "a": policy: kind 1: unknown request kind`},
		{"policy digest on ed25519", keyring.GenerateOptions{Recipients: rcpt, KeyringID: "k", Audience: "p", Clients: cl, Keys: []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519, Policy: &keyring.KeyPolicy{Clients: []string{"c"}, Kinds: []string{"digest"}}}}}, `ed25519 keys can't sign kind "digest"`},
		{"policy rate", keyring.GenerateOptions{Recipients: rcpt, KeyringID: "k", Audience: "p", Clients: cl, Keys: []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519, Policy: &keyring.KeyPolicy{Clients: []string{"c"}, Rate: &keyring.Rate{PerSecond: 1}}}}}, "policy: rate: burst is 0, want 1 to 1000000"},
		{"policy without keyring clients", keyring.GenerateOptions{Recipients: rcpt, KeyringID: "k", Keys: []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519, Policy: &keyring.KeyPolicy{Clients: []string{"c"}}}}}, "a policy on a key of a keyring that declares no clients"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, infos, err := keyring.GenerateKeyring(tc.o)
			if err == nil || ct != nil || infos != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("GenerateKeyring: %d bytes, %v\n want error containing %q", len(ct), err, tc.want)
			}
			if strings.Contains(err.Error(), "a bug") || strings.Contains(err.Error(), hex.EncodeToString(scalar("c"))[:16]) {
				t.Errorf("error %v", err)
			}
		})
	}
}

func TestRecipientTypes(t *testing.T) {
	_, _, r1 := newIdentity(t)
	_, _, r2 := newIdentity(t)
	for _, armored := range []bool{false, true} {
		ct, _, err := keyring.GenerateKeyring(keyring.GenerateOptions{Keys: []keyring.KeySpec{{ID: "a", Algorithm: keyring.Ed25519}}, Recipients: []age.Recipient{r1, r2}, Armor: armored})
		if err != nil {
			t.Fatal(err)
		}
		types, err := keyring.RecipientTypes(ct)
		if err != nil || strings.Join(types, ",") != "X25519,X25519" {
			t.Errorf("armor=%v: RecipientTypes = %v, %v; want two X25519", armored, types, err)
		}
		if _, err := keyring.RecipientTypes(ct[:30]); err == nil {
			t.Errorf("armor=%v: a truncated header parsed", armored)
		}
	}
	for _, bad := range []string{"", "hello\n", "age-encryption.org/v1\n--- x\n", "age-encryption.org/v1\n-> \n--- x\n"} {
		if _, err := keyring.RecipientTypes([]byte(bad)); err == nil {
			t.Errorf("RecipientTypes(%q) succeeded", bad)
		}
	}
}

// A policed keyring: clients with their secrets and rates, keys with
// policies, parsed back as written.
func TestGenerateKeyringPolicy(t *testing.T) {
	_, id, r := newIdentity(t)
	s1, s2, s3 := scalar("s1"), scalar("s2"), scalar("s3")
	o := keyring.GenerateOptions{
		Recipients: []age.Recipient{r}, KeyringID: "pay", KeyringVersion: 7, Audience: "payments-prod",
		Clients: []keyring.ClientSpec{
			{ID: "app1", Secrets: [][]byte{s1, s2}, Rate: &keyring.Rate{PerSecond: 0.125, Burst: 3}},
			{ID: "app2", Secrets: [][]byte{s3}},
		},
		Keys: []keyring.KeySpec{
			{ID: "ed", Algorithm: keyring.Ed25519, Policy: &keyring.KeyPolicy{Clients: []string{"app1"}, Rate: &keyring.Rate{PerSecond: 5, Burst: 5}, MaxMessageBytes: 4096}},
			{ID: "k1", Algorithm: keyring.ECDSASecp256k1, Policy: &keyring.KeyPolicy{Clients: []string{"app2", "app1"}, Kinds: []string{"digest"}}},
			{ID: "spare", Algorithm: keyring.ECDSAP256},
		},
	}
	ct, infos, err := keyring.GenerateKeyring(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 3 {
		t.Fatalf("%d keys", len(infos))
	}
	for _, sec := range [][]byte{s1, s2, s3} {
		if bytes.Equal(sec, make([]byte, 32)) {
			t.Fatal("GenerateKeyring wiped a caller's secret")
		}
	}
	set, err := keyring.Load(id, keyring.File{Name: "pay.age", Ciphertext: ct})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Destroy()
	c1, ok := set.Client("app1")
	if !ok || c1.Audience != "payments-prod" || *c1.Rate != (keyring.Rate{PerSecond: 0.125, Burst: 3}) ||
		len(c1.Secrets()) != 2 || !bytes.Equal(c1.Secrets()[0], s1) || !bytes.Equal(c1.Secrets()[1], s2) {
		t.Errorf("app1 = %v", c1)
	}
	if c2, ok := set.Client("app2"); !ok || c2.Rate != nil || len(c2.Secrets()) != 1 || !bytes.Equal(c2.Secrets()[0], s3) {
		t.Errorf("app2 = %v", c2)
	}
	ed, _ := set.Key("ed")
	if p := ed.Policy(); p == nil || !slices.Equal(p.Clients, []string{"app1"}) || !slices.Equal(p.Kinds, []string{"message"}) || *p.Rate != (keyring.Rate{PerSecond: 5, Burst: 5}) || p.MaxMessageBytes != 4096 {
		t.Errorf("ed policy %+v", p)
	}
	k1, _ := set.Key("k1")
	if p := k1.Policy(); p == nil || !slices.Equal(p.Clients, []string{"app2", "app1"}) || !slices.Equal(p.Kinds, []string{"digest"}) || p.Rate != nil || p.MaxMessageBytes != 0 {
		t.Errorf("k1 policy %+v", p)
	}
	spare, _ := set.Key("spare")
	if !spare.Policed() || spare.Policy() != nil {
		t.Errorf("spare: Policed %v, policy %+v", spare.Policed(), spare.Policy())
	}
	if !set.Policed() || len(set.OpenKeyrings()) != 0 {
		t.Errorf("set Policed %v, open %v", set.Policed(), set.OpenKeyrings())
	}
}

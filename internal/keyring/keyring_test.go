package keyring_test

import (
	"bytes"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyring/keyringtest"
)

func TestParseKeyringAllForms(t *testing.T) {
	fs := allFixtures()
	kr, err := keyring.ParseKeyring("all.age", keyringJSON(fs...))
	if err != nil {
		t.Fatalf("ParseKeyring: %v", err)
	}
	defer kr.Destroy()
	keys := kr.Keys()
	if len(keys) != len(fs) {
		t.Fatalf("got %d keys, want %d", len(keys), len(fs))
	}
	for i, k := range keys {
		if k.ID() != fs[i].id || k.Algorithm() != fs[i].alg || k.Keyring() != "all.age" {
			t.Errorf("keys[%d] = %s/%s from %q, want %s/%s from all.age", i, k.ID(), k.Algorithm(), k.Keyring(), fs[i].id, fs[i].alg)
		}
	}
	for _, k := range keys {
		t.Run(k.ID(), func(t *testing.T) { keyringtest.TestSigner(t, k) })
	}
}

// The same scalar in every encoding gives the same public key.
func TestEncodingsAgree(t *testing.T) {
	for _, forms := range [][]fixture{
		{p256Fixture("p", "sec1"), p256Fixture("p", "sec1+params"), p256Fixture("p", "pkcs8")},
		{secp256k1Fixture("k", "sec1"), secp256k1Fixture("k", "sec1+params"), secp256k1Fixture("k", "sec1-nocurve+params"), secp256k1Fixture("k", "pkcs8")},
	} {
		var want string
		for i, f := range forms {
			kr, err := keyring.ParseKeyring("k", keyringJSON(f))
			if err != nil {
				t.Fatalf("form %d: %v", i, err)
			}
			got := kr.Keys()[0].PublicKeyPEM()
			if i == 0 {
				want = got
			} else if got != want {
				t.Errorf("%s form %d public key:\n%s\nwant:\n%s", f.alg, i, got, want)
			}
		}
	}
}

func TestEthereumAddressKnownAnswer(t *testing.T) {
	for _, tc := range []struct {
		d    int64
		want string
	}{
		// The well-known address of private key 1 (go-ethereum agrees, see
		// TestEthereumAddressMatchesGoEthereum).
		{1, "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"},
		{2, "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"},
	} {
		d := big.NewInt(tc.d).FillBytes(make([]byte, 32))
		kr, err := keyring.ParseKeyring("kat", keyringJSON(secp256k1FixtureFromScalar("kat", "sec1", d)))
		if err != nil {
			t.Fatal(err)
		}
		if got := kr.Keys()[0].EthereumAddress(); got != tc.want {
			t.Errorf("private key %d: ethereum_address\n got %s\nwant %s", tc.d, got, tc.want)
		}
	}
}

func TestKeyInfoJSON(t *testing.T) {
	kr, err := keyring.ParseKeyring("k", keyringJSON(secp256k1Fixture("b", "sec1"), ed25519Fixture("a")))
	if err != nil {
		t.Fatal(err)
	}
	s, err := keyring.NewSet(kr)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(map[string]any{"keys": s.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Keys) != 2 || got.Keys[0]["id"] != "a" || got.Keys[1]["id"] != "b" {
		t.Fatalf("keys not sorted by id: %s", out)
	}
	if _, ok := got.Keys[0]["ethereum_address"]; ok {
		t.Errorf("ed25519 key has ethereum_address: %s", out)
	}
	for _, field := range []string{"id", "algorithm", "public_key_pem", "ethereum_address"} {
		if got.Keys[1][field] == "" {
			t.Errorf("secp256k1 key lacks %q: %s", field, out)
		}
	}
	if len(got.Keys[1]) != 4 {
		t.Errorf("secp256k1 key has fields %v, want exactly id, algorithm, public_key_pem, ethereum_address", got.Keys[1])
	}
}

func TestSetLookupAndDuplicates(t *testing.T) {
	a, err := keyring.ParseKeyring("a.age", keyringJSON(ed25519Fixture("one"), p256Fixture("two", "sec1")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := keyring.ParseKeyring("b.age", keyringJSON(secp256k1Fixture("three", "pkcs8")))
	if err != nil {
		t.Fatal(err)
	}
	s, err := keyring.NewSet(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 3 || strings.Join(s.Keyrings(), ",") != "a.age,b.age" {
		t.Errorf("Len %d, Keyrings %v; want 3, [a.age b.age]", s.Len(), s.Keyrings())
	}
	k, err := s.Key("three")
	if err != nil || k.Algorithm() != keyring.ECDSASecp256k1 || k.Keyring() != "b.age" {
		t.Errorf("Key(three) = %v, %v", k, err)
	}
	_, err = s.Key("nope")
	if !errors.Is(err, keyring.ErrUnknownKey) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Key(nope) error = %v, want ErrUnknownKey naming the id", err)
	}
	var nilSet *keyring.Set
	if _, err := nilSet.Key("one"); !errors.Is(err, keyring.ErrUnknownKey) || nilSet.Len() != 0 || nilSet.Keys() != nil {
		t.Errorf("nil set: Key error %v, Len %d", err, nilSet.Len())
	}

	c, err := keyring.ParseKeyring("c.age", keyringJSON(secp256k1Fixture("two", "sec1")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = keyring.NewSet(a, b, c)
	var dup *keyring.DuplicateKeyError
	if !errors.As(err, &dup) || dup.ID != "two" || dup.First != "a.age" || dup.Second != "c.age" {
		t.Fatalf("NewSet with a duplicate id: error = %v, want DuplicateKeyError{two, a.age, c.age}", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"a.age"`) || !strings.Contains(msg, `"c.age"`) {
		t.Errorf("duplicate error %q doesn't name both keyrings", msg)
	}
}

func TestLoad(t *testing.T) {
	_, id, rcpt := newIdentity(t)
	fs := allFixtures()
	files := []keyring.File{
		{Name: "binary.age", Ciphertext: encrypt(t, rcpt, keyringJSON(fs[:4]...), false)},
		{Name: "armored.age", Ciphertext: encrypt(t, rcpt, keyringJSON(fs[4:]...), true)},
	}
	if !bytes.HasPrefix(files[1].Ciphertext, []byte("-----BEGIN AGE ENCRYPTED FILE-----")) {
		t.Fatalf("armored fixture isn't armored")
	}
	s, err := keyring.Load(id, files...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer s.Destroy()
	if s.Len() != len(fs) {
		t.Fatalf("Len = %d, want %d", s.Len(), len(fs))
	}
	for _, f := range fs {
		k, err := s.Key(f.id)
		if err != nil {
			t.Fatal(err)
		}
		want := "binary.age"
		if f.alg == keyring.ECDSASecp256k1 {
			want = "armored.age"
		}
		if k.Keyring() != want {
			t.Errorf("key %s from %q, want %q", f.id, k.Keyring(), want)
		}
	}

	// A duplicate across files fails the whole load.
	dupFile := keyring.File{Name: "dup.age", Ciphertext: encrypt(t, rcpt, keyringJSON(fs[0]), false)}
	if _, err := keyring.Load(id, append(files, dupFile)...); !errors.As(err, new(*keyring.DuplicateKeyError)) {
		t.Errorf("Load with a duplicate: %v, want DuplicateKeyError", err)
	}
}

func TestDecryptErrors(t *testing.T) {
	_, id, rcpt := newIdentity(t)
	_, _, other := newIdentity(t)
	good := encrypt(t, rcpt, keyringJSON(ed25519Fixture("a")), false)

	t.Run("wrong identity", func(t *testing.T) {
		_, err := keyring.DecryptKeyring(id, "other.age", encrypt(t, other, keyringJSON(ed25519Fixture("a")), false))
		if !errors.Is(err, age.ErrIncorrectIdentity) || !strings.Contains(err.Error(), `keyring "other.age"`) {
			t.Errorf("error = %v, want age.ErrIncorrectIdentity naming the keyring", err)
		}
	})
	t.Run("not age", func(t *testing.T) {
		_, err := keyring.DecryptKeyring(id, "plain.json", keyringJSON(ed25519Fixture("a")))
		if err == nil || !strings.Contains(err.Error(), `keyring "plain.json": decrypt:`) {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("tampered payload", func(t *testing.T) {
		bad := bytes.Clone(good)
		bad[len(bad)-20] ^= 1
		if _, err := keyring.DecryptKeyring(id, "x.age", bad); err == nil || !strings.Contains(err.Error(), "decrypt") {
			t.Errorf("error = %v, want a decrypt error", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		if _, err := keyring.DecryptKeyring(id, "x.age", good[:len(good)-1]); err == nil {
			t.Error("truncated ciphertext decrypted")
		}
	})
	t.Run("too large", func(t *testing.T) {
		big := append(keyringJSON(ed25519Fixture("a")), bytes.Repeat([]byte(" "), keyring.MaxPlaintextSize)...)
		_, err := keyring.DecryptKeyring(id, "big.age", encrypt(t, rcpt, big, false))
		if !errors.Is(err, keyring.ErrTooLarge) {
			t.Errorf("error = %v, want ErrTooLarge", err)
		}
	})
	t.Run("exactly the limit", func(t *testing.T) {
		doc := keyringJSON(ed25519Fixture("a"))
		pt := append(doc, bytes.Repeat([]byte(" "), keyring.MaxPlaintextSize-len(doc))...)
		kr, err := keyring.DecryptKeyring(id, "max.age", encrypt(t, rcpt, pt, true))
		if err != nil || len(kr.Keys()) != 1 {
			t.Errorf("a %d-byte keyring: %v", len(pt), err)
		}
	})
	t.Run("parse error", func(t *testing.T) {
		_, err := keyring.DecryptKeyring(id, "v3.age", encrypt(t, rcpt, []byte(`{"version":3,"keys":[]}`), false))
		var pe *keyring.ParseError
		if !errors.As(err, &pe) || pe.Keyring != "v3.age" || pe.Field != "version" {
			t.Errorf("error = %v, want a ParseError on version of v3.age", err)
		}
	})
	t.Run("nil identity", func(t *testing.T) {
		if _, err := keyring.DecryptKeyring(nil, "x.age", good); err == nil {
			t.Error("decrypted without an identity")
		}
	})
}

func TestParseIdentity(t *testing.T) {
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	y, _ := age.GenerateX25519Identity()
	file := "# created: 2026-01-01T00:00:00Z\r\n# public key: " + x.Recipient().String() + "\r\n\r\n" + x.String() + "\r\n" + y.String()
	id, err := keyring.ParseIdentity([]byte(file))
	if err != nil {
		t.Fatalf("ParseIdentity: %v", err)
	}
	if got := id.Recipients(); len(got) != 2 || got[0] != x.Recipient().String() || got[1] != y.Recipient().String() {
		t.Errorf("Recipients = %v, want [%s %s]", got, x.Recipient(), y.Recipient())
	}
	// Either identity decrypts.
	if _, err := keyring.DecryptKeyring(id, "y.age", encrypt(t, y.Recipient(), keyringJSON(ed25519Fixture("a")), false)); err != nil {
		t.Errorf("second identity: %v", err)
	}

	secret := x.String()
	flipped := secret[:len(secret)-1] + map[bool]string{true: "Q", false: "P"}[secret[len(secret)-1] == 'P']
	for _, tc := range []struct {
		name, file, want string
	}{
		{"empty", "", "no identities found"},
		{"comments only", "# public key: age1xyz\n", "no identities found"},
		{"bad checksum", "# c\n" + flipped + "\n", "line 2: malformed X25519 secret key"},
		{"recipient", x.Recipient().String() + "\n", "line 1: this is a recipient"},
		{"post-quantum", "AGE-SECRET-KEY-PQ-1QQQQ\n", "line 1: post-quantum"},
		{"ssh key", "-----BEGIN OPENSSH PRIVATE KEY-----\n", "line 1: not an age X25519 identity"},
		{"invalid utf8", "\xff\xfe\n", "line 1: invalid UTF-8"},
		{"too large", strings.Repeat("#", keyring.MaxIdentityFileSize+1), "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keyring.ParseIdentity([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(strings.ToUpper(err.Error()), secret[16:32]) {
				t.Errorf("error %q quotes the identity", err)
			}
		})
	}
}

func TestDestroy(t *testing.T) {
	kr, err := keyring.ParseKeyring("d", keyringJSON(ed25519Fixture("ed"), p256Fixture("p", "sec1"), secp256k1Fixture("k", "sec1")))
	if err != nil {
		t.Fatal(err)
	}
	s, err := keyring.NewSet(kr)
	if err != nil {
		t.Fatal(err)
	}
	keys := kr.Keys()
	// Sign concurrently while the set is destroyed: every call either
	// succeeds with a valid signature or fails with ErrDestroyed.
	var wg sync.WaitGroup
	start := make(chan struct{})
	var mu sync.Mutex
	var ok, destroyed int
	for _, k := range keys {
		for range 3 {
			wg.Go(func() {
				<-start
				for range 20 {
					sig, err := k.SignMessage([]byte("m"))
					mu.Lock()
					switch {
					case err == nil && len(sig.Signature) > 0:
						ok++
					case errors.Is(err, keyring.ErrDestroyed):
						destroyed++
					default:
						t.Errorf("key %s: unexpected result %v", k.ID(), err)
					}
					mu.Unlock()
				}
			})
		}
	}
	close(start)
	s.Destroy()
	wg.Wait()
	s.Destroy() // idempotent
	t.Logf("%d signatures before destroy, %d refused after", ok, destroyed)
	for _, k := range keys {
		if _, err := k.SignMessage([]byte("m")); !errors.Is(err, keyring.ErrDestroyed) {
			t.Errorf("key %s after Destroy: error = %v, want ErrDestroyed", k.ID(), err)
		}
		// The public half stays usable.
		if k.PublicKeyPEM() == "" {
			t.Errorf("key %s lost its public key", k.ID())
		}
	}
}

func TestParseKeyringErrors(t *testing.T) {
	ed := ed25519Fixture("ed")
	p := p256Fixture("p", "sec1")
	pPKCS8 := p256Fixture("p", "pkcs8")
	k1 := secp256k1Fixture("k", "sec1")
	k1PKCS8 := secp256k1Fixture("k", "pkcs8")
	paramsP256 := pemString("EC PARAMETERS", must(asn1.Marshal(oidP256)))
	n := secp256k1.Params().N

	withPEM := func(alg keyring.Algorithm, pemText string) string {
		return string(keyringJSON(fixture{id: "x", alg: alg, pem: pemText}))
	}
	key := func(fields string) string { return `{"version":1,"keys":[{` + fields + `}]}` }
	edJSON := string(must(json.Marshal(ed.pem)))

	// A secp256k1 key whose embedded public key is another key's.
	wrongPub := func() string {
		d := scalar("k")
		other := secp256k1.PrivKeyFromBytes(scalar("other")).PubKey().SerializeUncompressed()
		der := must(asn1.Marshal(ecPrivateKey{Version: 1, PrivateKey: d, NamedCurveOID: oidSecp256k1, PublicKey: asn1.BitString{Bytes: other, BitLength: 520}}))
		return pemString("EC PRIVATE KEY", der)
	}()
	sec1Scalar := func(d []byte, curve asn1.ObjectIdentifier) string {
		return pemString("EC PRIVATE KEY", must(asn1.Marshal(ecPrivateKey{Version: 1, PrivateKey: d, NamedCurveOID: curve})))
	}
	p384 := pemString("PRIVATE KEY", pkcs8EC(oidP384, must(asn1.Marshal(ecPrivateKey{Version: 1, PrivateKey: make([]byte, 48)}))))
	pDER := pemBodyLines(p.pem)

	cases := []struct {
		name  string
		in    string
		index int
		field string
		want  string
	}{
		{"empty", "", -1, "", "empty plaintext"},
		{"not json", "hello", -1, "", "invalid JSON at offset 0: want '{'"},
		{"top-level array", "[]", -1, "", "invalid JSON at offset 0"},
		{"trailing data", string(keyringJSON(ed)) + " x", -1, "", "unexpected data after the top-level object"},
		{"two objects", string(keyringJSON(ed)) + string(keyringJSON(ed)), -1, "", "unexpected data after"},
		{"truncated", string(keyringJSON(ed))[:40], 0, "", "invalid JSON at offset 40: unterminated string"},
		{"missing version", `{"keys":[{"id":"a","algorithm":"ed25519","private_key_pem":` + edJSON + `}]}`, -1, "version", "missing, want 1 or 2"},
		{"version 3", `{"version":3,"keys":[]}`, -1, "version", "unsupported version 3, want 1 or 2"},
		{"version 0", `{"version":0,"keys":[]}`, -1, "version", "unsupported version 0"},
		{"version string", `{"version":"1","keys":[]}`, -1, "version", "want the number 1 or 2, got string"},
		{"v2 without keyring_id", `{"version":2,"keyring_version":1,"keys":[{"id":"a","algorithm":"ed25519","private_key_pem":` + edJSON + `}]}`, -1, "keyring_id", "missing, want the keyring's id"},
		{"v2 without keyring_version", `{"version":2,"keyring_id":"pay","keys":[{"id":"a","algorithm":"ed25519","private_key_pem":` + edJSON + `}]}`, -1, "keyring_version", "missing, want the keyring's version"},
		{"v1 with keyring_id", `{"keyring_id":"pay","version":1,"keys":[{"id":"a","algorithm":"ed25519","private_key_pem":` + edJSON + `}]}`, -1, "keyring_id", "a field of version 2, and this keyring says version 1"},
		{"v1 with keyring_version", `{"version":1,"keyring_version":4,"keys":[{"id":"a","algorithm":"ed25519","private_key_pem":` + edJSON + `}]}`, -1, "keyring_version", "a field of version 2"},
		{"keyring_id malformed", `{"version":2,"keyring_id":"pay ments","keyring_version":1,"keys":[]}`, -1, "keyring_id", "invalid character at position 4"},
		{"keyring_id number", `{"version":2,"keyring_id":7,"keyring_version":1,"keys":[]}`, -1, "keyring_id", "want a string, got number"},
		{"keyring_version string", `{"version":2,"keyring_id":"p","keyring_version":"1","keys":[]}`, -1, "keyring_version", "want an unsigned integer, got string"},
		{"keyring_version negative", `{"version":2,"keyring_id":"p","keyring_version":-1,"keys":[]}`, -1, "keyring_version", "want an integer"},
		{"keyring_version fraction", `{"version":2,"keyring_id":"p","keyring_version":1.5,"keys":[]}`, -1, "keyring_version", "without fraction"},
		{"keyring_version 2^64", `{"version":2,"keyring_id":"p","keyring_version":18446744073709551616,"keys":[]}`, -1, "keyring_version", "integer larger than 18446744073709551615"},
		{"keyring_version leading zero", `{"version":2,"keyring_id":"p","keyring_version":07,"keys":[]}`, -1, "keyring_version", "leading zero"},
		{"duplicate keyring_id", `{"version":2,"keyring_id":"p","keyring_id":"p","keyring_version":1,"keys":[]}`, -1, `"keyring_id"`, "field appears twice"},
		{"version fraction", `{"version":1.0,"keys":[]}`, -1, "version", "without fraction"},
		{"version negative", `{"version":-1,"keys":[]}`, -1, "version", "want an integer"},
		{"version leading zero", `{"version":01,"keys":[]}`, -1, "version", "leading zero"},
		{"missing keys", `{"version":1}`, -1, "keys", "missing"},
		{"keys object", `{"version":1,"keys":{}}`, -1, "keys", "want an array, got object"},
		{"keys null", `{"version":1,"keys":null}`, -1, "keys", "want an array, got null"},
		{"no keys", `{"version":1,"keys":[]}`, -1, "keys", "empty, want at least one key"},
		{"unknown top field", `{"version":1,"keys":[],"comment":"x"}`, -1, `"comment"`, "unknown field, want version, keys, and in version 2 keyring_id, keyring_version, audience and clients"},
		{"duplicate top field", `{"version":1,"version":1,"keys":[]}`, -1, `"version"`, "field appears twice"},
		{"key not object", `{"version":1,"keys":[1]}`, 0, "", "want an object, got number"},
		{"unknown key field", key(`"id":"a","algorithm":"ed25519","private_key_pem":` + edJSON + `,"created":"now"`), 0, `"created"`, "unknown field, want id, algorithm, private_key_pem and (version 2) policy"},
		{"duplicate key field", key(`"id":"a","id":"b"`), 0, `"id"`, "appears twice"},
		{"missing id", key(`"algorithm":"ed25519","private_key_pem":` + edJSON), 0, "id", "missing"},
		{"empty id", key(`"id":"","algorithm":"ed25519","private_key_pem":` + edJSON), 0, "id", "0 bytes long, want 1 to 64"},
		{"id with space", key(`"id":"a b","algorithm":"ed25519","private_key_pem":` + edJSON), 0, "id", "invalid character at position 2"},
		{"id with slash", key(`"id":"a/b","algorithm":"ed25519","private_key_pem":` + edJSON), 0, "id", "want only [A-Za-z0-9._-]"},
		{"id non-ascii", key(`"id":"clé","algorithm":"ed25519","private_key_pem":` + edJSON), 0, "id", "invalid character at position 3"},
		{"id too long", key(`"id":"` + strings.Repeat("a", 65) + `","algorithm":"ed25519","private_key_pem":` + edJSON), 0, "id", "65 bytes long"},
		{"id number", key(`"id":5`), 0, "id", "want a string, got number"},
		{"missing algorithm", key(`"id":"a","private_key_pem":` + edJSON), 0, "algorithm", "missing"},
		{"unknown algorithm", key(`"id":"a","algorithm":"rsa","private_key_pem":` + edJSON), 0, "algorithm", `unknown algorithm "rsa"`},
		{"algorithm case", key(`"id":"a","algorithm":"Ed25519","private_key_pem":` + edJSON), 0, "algorithm", `unknown algorithm "Ed25519"`},
		{"missing pem", key(`"id":"a","algorithm":"ed25519"`), 0, "private_key_pem", "missing"},
		{"pem null", key(`"id":"a","algorithm":"ed25519","private_key_pem":null`), 0, "private_key_pem", "want a string, got null"},
		{"not pem", withPEM(keyring.Ed25519, "hello"), 0, "private_key_pem", "not PEM"},
		{"empty pem", withPEM(keyring.Ed25519, " \n"), 0, "private_key_pem", "empty, want a PEM private key"},
		{"rsa block", withPEM(keyring.Ed25519, pemString("RSA PRIVATE KEY", []byte{1, 2, 3})), 0, "private_key_pem", `PEM block type "RSA PRIVATE KEY"`},
		{"public key block", withPEM(keyring.Ed25519, pemString("PUBLIC KEY", []byte{1, 2, 3})), 0, "private_key_pem", `PEM block type "PUBLIC KEY"`},
		{"encrypted pkcs8", withPEM(keyring.Ed25519, pemString("ENCRYPTED PRIVATE KEY", []byte{1})), 0, "private_key_pem", "encrypted PKCS#8 is not supported"},
		{"pem headers", withPEM(keyring.ECDSAP256, "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n"+strings.Join(pDER, "\n")+"\n-----END EC PRIVATE KEY-----\n"), 0, "private_key_pem", "has headers"},
		{"broken pem", withPEM(keyring.ECDSAP256, "-----BEGIN EC PRIVATE KEY-----\n"+pDER[0]+"\n"), 0, "private_key_pem", "malformed PEM block"},
		{"text after pem", withPEM(keyring.ECDSAP256, p.pem+"trailer\n"), 0, "private_key_pem", "unexpected text after the PEM block"},
		{"two keys", withPEM(keyring.ECDSAP256, p.pem+p.pem), 0, "private_key_pem", `"EC PRIVATE KEY" then "EC PRIVATE KEY", want "EC PARAMETERS" then`},
		{"three blocks", withPEM(keyring.ECDSAP256, paramsP256+p.pem+p.pem), 0, "private_key_pem", "too many PEM blocks"},
		{"params alone", withPEM(keyring.ECDSAP256, paramsP256), 0, "private_key_pem", `PEM block type "EC PARAMETERS"`},
		{"params before pkcs8", withPEM(keyring.ECDSAP256, paramsP256+pPKCS8.pem), 0, "private_key_pem", `want "EC PARAMETERS" then "EC PRIVATE KEY"`},
		{"params curve mismatch", withPEM(keyring.ECDSASecp256k1, paramsP256+k1.pem), 0, "private_key_pem", "EC PARAMETERS names ecdsa-p256 but the key is ecdsa-secp256k1"},
		{"ed25519 declared, p256 key", withPEM(keyring.Ed25519, p.pem), 0, "private_key_pem", "the key is ecdsa-p256 but algorithm is ed25519"},
		{"p256 declared, secp256k1 key", withPEM(keyring.ECDSAP256, k1.pem), 0, "private_key_pem", "the key is ecdsa-secp256k1 but algorithm is ecdsa-p256"},
		{"secp256k1 declared, p256 pkcs8", withPEM(keyring.ECDSASecp256k1, pPKCS8.pem), 0, "private_key_pem", "the key is ecdsa-p256 but algorithm is ecdsa-secp256k1"},
		{"p256 declared, ed25519 key", withPEM(keyring.ECDSAP256, ed.pem), 0, "private_key_pem", "the key is ed25519 but algorithm is ecdsa-p256"},
		{"ed25519 as SEC1", withPEM(keyring.Ed25519, pemString("EC PRIVATE KEY", mustDER(ed.pem))), 0, "private_key_pem", "SEC1: version: want INTEGER 1"},
		{"sec1 without curve", withPEM(keyring.ECDSASecp256k1, pemString("EC PRIVATE KEY", secp256k1SEC1(scalar("k"), false))), 0, "private_key_pem", "names no curve"},
		{"truncated DER", withPEM(keyring.ECDSASecp256k1, pemString("PRIVATE KEY", mustDER(k1PKCS8.pem)[:40])), 0, "private_key_pem", "PKCS#8: want one DER SEQUENCE"},
		{"p384", withPEM(keyring.ECDSAP256, p384), 0, "private_key_pem", "unsupported elliptic curve OID 1.3.132.0.34"},
		{"secp256k1 zero scalar", withPEM(keyring.ECDSASecp256k1, sec1Scalar(make([]byte, 32), oidSecp256k1)), 0, "private_key_pem", "out of range for secp256k1"},
		{"secp256k1 scalar n", withPEM(keyring.ECDSASecp256k1, sec1Scalar(n.FillBytes(make([]byte, 32)), oidSecp256k1)), 0, "private_key_pem", "out of range for secp256k1"},
		{"p256 scalar too big", withPEM(keyring.ECDSAP256, sec1Scalar(bytes.Repeat([]byte{0xff}, 32), oidP256)), 0, "private_key_pem", "out of range for P-256"},
		{"scalar too long", withPEM(keyring.ECDSAP256, sec1Scalar(make([]byte, 33), oidP256)), 0, "private_key_pem", "scalar is 33 bytes, want 1 to 32"},
		{"public key mismatch", withPEM(keyring.ECDSASecp256k1, wrongPub), 0, "private_key_pem", "doesn't match the private key"},
		{"duplicate id", string(keyringJSON(ed, p256Fixture("ed", "sec1"))), 1, "id", "duplicate: keys[0] has the same id"},
		{"bad escape", key(`"id":"a","algorithm":"ed25519","private_key_pem":"\q"`), 0, "private_key_pem", "invalid escape"},
		{"raw newline", key("\"id\":\"a\",\"algorithm\":\"ed25519\",\"private_key_pem\":\"a\nb\""), 0, "private_key_pem", "control character in string"},
		{"invalid utf8", key("\"id\":\"a\",\"algorithm\":\"\xff\""), 0, "algorithm", "invalid UTF-8"},
		{"bad surrogate", key(`"id":"\ud800"`), 0, "id", "surrogate"},
		{"missing comma", key(`"id":"a" "algorithm":"ed25519"`), 0, "", "want ',' or '}'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kr, err := keyring.ParseKeyring("bad.age", []byte(tc.in))
			if kr != nil {
				t.Errorf("got a keyring with an error %v", err)
			}
			var pe *keyring.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error = %v (%T), want *ParseError", err, err)
			}
			if pe.Keyring != "bad.age" || pe.Index != tc.index || pe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n got %q (index %d, field %q)\nwant index %d, field %q, containing %q", err, pe.Index, pe.Field, tc.index, tc.field, tc.want)
			}
			if !strings.HasPrefix(err.Error(), `keyring "bad.age": `) {
				t.Errorf("error %q doesn't start by naming the keyring", err)
			}
			for _, f := range []fixture{ed, p, k1, k1PKCS8, pPKCS8} {
				for _, line := range pemBodyLines(f.pem) {
					if len(line) >= 8 && strings.Contains(err.Error(), line[:8]) {
						t.Errorf("error %q contains PEM text %q", err, line[:8])
					}
				}
			}
		})
	}
}

// mustDER returns the DER of the last block of a PEM text.
func mustDER(p string) []byte {
	var last *pem.Block
	for rest := []byte(p); ; {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		last, rest = b, r
	}
	if last == nil {
		panic("no PEM block")
	}
	return last.Bytes
}

func TestParseErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		err  keyring.ParseError
		want string
	}{
		{keyring.ParseError{Keyring: "a.age", Index: -1, Field: "version", Err: errors.New("x")}, `keyring "a.age": version: x`},
		{keyring.ParseError{Keyring: "a.age", Index: 2, Field: "id", Err: errors.New("x")}, `keyring "a.age": keys[2]: id: x`},
		{keyring.ParseError{Keyring: "a.age", Index: 2, KeyID: "pay", Field: "private_key_pem", Err: errors.New("x")}, `keyring "a.age": keys[2] (id "pay"): private_key_pem: x`},
		{keyring.ParseError{Keyring: "a.age", Index: -1, Err: errors.New("x")}, `keyring "a.age": x`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error()\n got %q\nwant %q", got, tc.want)
		}
	}
}

// The id of a key whose PEM fails is named in the error; a malformed id is not quoted.
func TestParseErrorNamesKey(t *testing.T) {
	in := keyringJSON(ed25519Fixture("good"), fixture{id: "payments", alg: keyring.ECDSAP256, pem: "junk"})
	_, err := keyring.ParseKeyring("prod.age", in)
	if want := `keyring "prod.age": keys[1] (id "payments"): private_key_pem: not PEM`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error\n got %v\nwant prefix %s", err, want)
	}
	in = keyringJSON(fixture{id: "MC4CAQAwBQYDK2VwBCIEI bad", alg: keyring.Ed25519, pem: "junk"})
	_, err = keyring.ParseKeyring("prod.age", in)
	if err == nil || strings.Contains(err.Error(), "MC4CAQ") {
		t.Errorf("error %v quotes a malformed id", err)
	}
}

var base64Runs = regexp.MustCompile(`[A-Za-z0-9+/=]{24,}`)

func FuzzParseKeyring(f *testing.F) {
	f.Add(keyringJSON(allFixtures()...))
	for _, fx := range allFixtures() {
		f.Add(keyringJSON(fx))
	}
	f.Add([]byte(`{"version":1,"keys":[{"id":"a","algorithm":"ed25519","private_key_pem":"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"}]}`))
	f.Add([]byte(`{"version":1,"keys":[{"id":"\u0041","algorithm":"ed\u0032\u00355519","private_key_pem":"\ud83d\ude00"}]}`))
	f.Add([]byte(`{"version":2,"keys":[]}`))
	f.Add([]byte(`{"version":2,"keyring_id":"payments","keyring_version":18446744073709551615,"keys":[{"id":"a","algorithm":"ed25519","private_key_pem":"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"}]}`))
	f.Add([]byte(`{"version":1,"version":1}`))
	f.Add([]byte(`{"version":1,"keys":[1,{"id":null}]}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`"\`))
	f.Add([]byte(`{"version":1,"keys":[{"id":"a","algorithm":"ed25519","private_key_pem":"MC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`))
	f.Add([]byte(`{"version":1,"keys":[{"id":"a","algorithm":"MC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","private_key_pem":""}]}`))
	f.Add([]byte(`{"version":1,"keys":[{"id":"a","MC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA":1}]}`))
	// Clients and policies.
	ed, p := ed25519Fixture("ed"), p256Fixture("p", "sec1")
	f.Add(v2("pay", `"audience":"payments-prod","clients":[`+client("app1", `"rate":{"per_second":0.5,"burst":2}`, secretHex("1"), secretHex("2"))+`,`+client("app2", "", secretHex("3"))+`]`,
		keyObj(ed, `{"clients":["app1"],"kinds":["message"],"rate":{"per_second":5,"burst":5},"max_message_bytes":4096}`),
		keyObj(p, `{"clients":["app2","app1"],"kinds":["digest","message"]}`)))
	f.Add(v2("pay", `"audience":"a:b","clients":[`+client("c", "", secretHex("1"))+`]`, keyObj(ed, `{"clients":["c"],"kinds":["digest"]}`), keyObj(p, "")))
	f.Add(v2("pay", `"audience":"a","clients":[`+client("c", "", secretHex("1"), secretHex("1"))+`]`, keyObj(p, `{"clients":["d"],"rate":{"per_second":1e3,"burst":0}}`)))
	f.Add(v2("pay", `"clients":[{"id":"`+secretHex("1")+`","secrets":["`+secretHex("1")+`"]},{"id":"`+secretHex("1")+`","secrets":["`+secretHex("1")+`"]}]`, keyObj(p, "")))
	f.Add([]byte(`{"version":2,"keyring_id":"k","keyring_version":1,"audience":"x","clients":[{"id":"a","secrets":["00"],"rate":{"per_second":0.0001}}],"keys":[]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		kr, err := keyring.ParseKeyring("fuzz", in)
		if !bytes.Equal(in, orig) {
			t.Fatal("ParseKeyring modified its input")
		}
		if err != nil {
			if kr != nil {
				t.Fatal("non-nil keyring with an error")
			}
			var pe *keyring.ParseError
			if !errors.As(err, &pe) || pe.Keyring != "fuzz" {
				t.Fatalf("error %v is not a ParseError for keyring fuzz", err)
			}
			// No long base64-like run of the input (PEM body, a pasted
			// scalar) is echoed, unless it is the well-formed key id.
			for _, run := range base64Runs.FindAllString(string(in), -1) {
				if strings.Contains(err.Error(), run) && !strings.Contains(pe.KeyID, run) {
					t.Fatalf("error %q quotes input text %q", err, run)
				}
			}
			return
		}
		defer kr.Destroy()
		if len(kr.Keys()) == 0 {
			t.Fatal("keyring without keys parsed")
		}
		switch kr.FormatVersion() {
		case keyring.Format1:
			if kr.KeyringID() != "" || kr.KeyringVersion() != 0 {
				t.Fatal("a version 1 keyring has a keyring id or version")
			}
		case keyring.Format2:
			if keyring.CheckID(kr.KeyringID()) != nil {
				t.Fatalf("a version 2 keyring with keyring id %q", kr.KeyringID())
			}
		default:
			t.Fatalf("format %d parsed", kr.FormatVersion())
		}
		checkPolicies(t, kr)
		seen := map[string]bool{}
		for _, k := range kr.Keys() {
			if seen[k.ID()] || len(k.ID()) == 0 || len(k.ID()) > 64 || strings.Trim(k.ID(), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
				t.Fatalf("bad or duplicate id %q", k.ID())
			}
			seen[k.ID()] = true
			sig, err := k.SignMessage([]byte("fuzz"))
			if err != nil || len(sig.Signature) == 0 {
				t.Fatalf("key %q doesn't sign: %v", k.ID(), err)
			}
		}
	})
}

// checkPolicies checks the invariants of a parsed keyring's clients and
// policies.
func checkPolicies(t *testing.T, kr *keyring.Keyring) {
	if kr.Policed() != (len(kr.Clients()) > 0) || kr.Policed() != (kr.Audience() != "") {
		t.Fatalf("Policed %v with %d clients and audience %q", kr.Policed(), len(kr.Clients()), kr.Audience())
	}
	if kr.Policed() && (kr.FormatVersion() != keyring.Format2 || keyring.CheckAudience(kr.Audience()) != nil) {
		t.Fatalf("policed keyring of format %d, audience %q", kr.FormatVersion(), kr.Audience())
	}
	rateOK := func(r *keyring.Rate) bool {
		return r == nil || r.PerSecond > 0 && r.PerSecond <= keyring.MaxRatePerSecond && r.Burst >= 1 && r.Burst <= keyring.MaxBurst
	}
	ids := map[string]bool{}
	for _, c := range kr.Clients() {
		if ids[c.ID] || keyring.CheckID(c.ID) != nil || c.Audience != kr.Audience() || !rateOK(c.Rate) {
			t.Fatalf("bad client %v", c)
		}
		ids[c.ID] = true
		if n := len(c.Secrets()); n < 1 || n > 2 {
			t.Fatalf("client %s has %d secrets", c.ID, n)
		}
		for _, s := range c.Secrets() {
			if len(s) != keyring.ClientSecretSize {
				t.Fatalf("client %s has a secret of %d bytes", c.ID, len(s))
			}
		}
	}
	for _, k := range kr.Keys() {
		if k.Policed() != kr.Policed() {
			t.Fatalf("key %s: Policed %v in a keyring with Policed %v", k.ID(), k.Policed(), kr.Policed())
		}
		p := k.Policy()
		if p == nil {
			continue
		}
		if !kr.Policed() || len(p.Clients) == 0 || len(p.Kinds) == 0 || !rateOK(p.Rate) || p.MaxMessageBytes < 0 || p.MaxMessageBytes > keyring.MaxMessageBytesLimit {
			t.Fatalf("key %s: bad policy %+v", k.ID(), p)
		}
		for _, id := range p.Clients {
			if !ids[id] {
				t.Fatalf("key %s: policy names undeclared client %q", k.ID(), id)
			}
		}
		for _, kind := range p.Kinds {
			if kind != keyring.KindMessage && (kind != keyring.KindDigest || k.Algorithm() == keyring.Ed25519) {
				t.Fatalf("key %s (%s): policy allows kind %q", k.ID(), k.Algorithm(), kind)
			}
		}
	}
}

func BenchmarkSign(b *testing.B) {
	kr, err := keyring.ParseKeyring("bench", keyringJSON(ed25519Fixture("ed25519"), p256Fixture("ecdsa-p256", "sec1"), secp256k1Fixture("ecdsa-secp256k1", "sec1")))
	if err != nil {
		b.Fatal(err)
	}
	defer kr.Destroy()
	msg := bytes.Repeat([]byte("m"), 64)
	digest := make([]byte, 32)
	for _, k := range kr.Keys() {
		b.Run(k.ID(), func(b *testing.B) {
			if k.Algorithm() == keyring.Ed25519 {
				for b.Loop() {
					if _, err := k.SignMessage(msg); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			for b.Loop() {
				if _, err := k.SignDigest(digest); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func ExampleLoad() {
	x, _ := age.GenerateX25519Identity()
	id, _ := keyring.ParseIdentity([]byte(x.String()))
	var ct bytes.Buffer
	w, _ := age.Encrypt(&ct, x.Recipient())
	w.Write([]byte(`{"version": 1, "keys": [{"id": "payments", "algorithm": "ecdsa-secp256k1", "private_key_pem": "-----BEGIN EC PRIVATE KEY-----\nMC4CAQEEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABoAcGBSuBBAAK\n-----END EC PRIVATE KEY-----\n"}]}`))
	w.Close()

	set, err := keyring.Load(id, keyring.File{Name: "keyring.age", Ciphertext: ct.Bytes()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer set.Destroy()
	for _, k := range set.Keys() {
		fmt.Println(k.ID, k.Algorithm, k.EthereumAddress)
	}
	key, _ := set.Key("payments")
	sig, _ := key.SignMessage([]byte("hello"))
	fmt.Println(len(sig.RSV), sig.RecoveryID == 0 || sig.RecoveryID == 1)
	// Output:
	// payments ecdsa-secp256k1 0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf
	// 65 true
}

func TestParseKeyringFormat2(t *testing.T) {
	ed := ed25519Fixture("ed")
	edJSON := string(must(json.Marshal(ed.pem)))
	for _, tc := range []struct {
		in      string
		format  int
		id      string
		version uint64
	}{
		{string(keyringJSON(ed)), keyring.Format1, "", 0},
		{`{"keyring_version": 0, "keys": [{"id":"a","algorithm":"ed25519","private_key_pem":` + edJSON + `}], "keyring_id": "payments", "version": 2}`, keyring.Format2, "payments", 0},
		{`{"version": 2, "keyring_id": "a.B_c-9", "keyring_version": 18446744073709551615, "keys": [{"id":"a","algorithm":"ed25519","private_key_pem":` + edJSON + `}]}`, keyring.Format2, "a.B_c-9", 1<<64 - 1},
	} {
		kr, err := keyring.ParseKeyring("k.age", []byte(tc.in))
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if kr.FormatVersion() != tc.format || kr.KeyringID() != tc.id || kr.KeyringVersion() != tc.version || len(kr.Keys()) != 1 {
			t.Errorf("%s: format %d, id %q, version %d", tc.in, kr.FormatVersion(), kr.KeyringID(), kr.KeyringVersion())
		}
		kr.Destroy()
	}
}

package keyring_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/enclave-signer/enclave-signer/pkg/keyring"
)

// TestNoSecretsInOutput loads keys, signs, provokes every kind of error, and
// logs and formats every type, then checks that no private key (raw scalar
// in hex, base64 or decimal, the PEM body, the DER) and no identity text
// appears anywhere in what came out.
func TestNoSecretsInOutput(t *testing.T) {
	var out bytes.Buffer
	logf := func(format string, args ...any) { fmt.Fprintf(&out, format+"\n", args...) }
	text := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	jsonLog := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))

	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	secretID := x.String()
	keyFile := []byte("# public key: " + x.Recipient().String() + "\n" + secretID + "\n")
	id, err := keyring.ParseIdentity(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fs := allFixtures()
	files := []keyring.File{{Name: "k.age", Ciphertext: encrypt(t, x.Recipient(), keyringJSON(fs...), true)}}
	set, err := keyring.Load(id, files...)
	if err != nil {
		t.Fatal(err)
	}

	// Everything that can be printed or logged.
	values := []any{id, set}
	publicPEM := map[string]string{}
	for _, f := range fs {
		k, err := set.Key(f.id)
		if err != nil {
			t.Fatal(err)
		}
		publicPEM[f.id] = k.PublicKeyPEM()
		values = append(values, k, k.Info())
		sig, err := k.SignMessage([]byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, sig)
		_, err = k.SignDigest(make([]byte, 7))
		values = append(values, err)
	}
	kr, err := keyring.ParseKeyring("again", keyringJSON(fs...))
	if err != nil {
		t.Fatal(err)
	}
	values = append(values, kr, kr.Keys())
	for _, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			logf(verb, v)
		}
		text.Info("value", "v", v)
		jsonLog.Info("value", "v", v)
		text.Info("value", slog.Any("v", v), slog.Group("g", "v", v))
		if b, err := json.Marshal(v); err == nil {
			out.Write(b)
		}
	}

	// Errors of every kind, with the secrets nearby.
	var errs []error
	addErr := func(_ any, err error) {
		if err == nil {
			t.Fatalf("expected an error")
		}
		errs = append(errs, err)
	}
	for i, f := range fs {
		wrongAlg := keyring.Ed25519
		if f.alg == keyring.Ed25519 {
			wrongAlg = keyring.ECDSASecp256k1
		}
		addErr(keyring.ParseKeyring("bad", keyringJSON(fixture{id: f.id, alg: wrongAlg, pem: f.pem})))
		addErr(keyring.ParseKeyring("bad", keyringJSON(fixture{id: f.id, alg: f.alg, pem: f.pem[:len(f.pem)/2]})))
		addErr(keyring.ParseKeyring("bad", keyringJSON(fixture{id: f.id, alg: f.alg, pem: f.pem + "trailing " + f.pem[30:60]})))
		addErr(keyring.ParseKeyring("bad", keyringJSON(fixture{id: f.id + " " + f.pem[30:60], alg: f.alg, pem: f.pem})))
		addErr(keyring.ParseKeyring("bad", keyringJSON(fixture{id: f.id, alg: keyring.Algorithm(hex.EncodeToString(f.scalar)), pem: f.pem})))
		addErr(keyring.ParseKeyring("bad", keyringJSON(f, f)))
		raw := keyringJSON(f)
		addErr(keyring.ParseKeyring("bad", raw[:len(raw)-i-3]))
		addErr(keyring.ParseKeyring("bad", bytes.Replace(raw, []byte(`"private_key_pem"`), []byte(`"`+base64.StdEncoding.EncodeToString(f.scalar)+`"`), 1)))
	}
	addErr(set.Key(hex.EncodeToString(fs[1].scalar)[:60]))
	// One character of the secret changed (same case), in the identity line
	// itself: bech32's checksum catches every single substitution.
	bad := []byte(secretID)
	bad[20] = map[bool]byte{true: 'Q', false: 'P'}[bad[20] == 'P']
	flipped := bytes.Replace(keyFile, []byte(secretID), bad, 1)
	addErr(keyring.ParseIdentity(flipped))
	addErr(keyring.ParseIdentity([]byte(strings.ToLower(secretID) + "x\n")))
	addErr(keyring.ParseIdentity([]byte("garbage " + secretID + "\n")))
	y, _ := age.GenerateX25519Identity()
	otherID, _ := keyring.ParseIdentity([]byte(y.String()))
	addErr(keyring.DecryptKeyring(otherID, "k.age", files[0].Ciphertext))
	set.Destroy()
	k, _ := set.Key(fs[0].id)
	addErr(k.SignMessage([]byte("m")))
	for _, err := range errs {
		logf("%v", err)
		text.Error("failed", "err", err)
		jsonLog.Error("failed", "err", err)
	}
	logf("%v %+v %#v", set, set, set)

	// The secrets.
	forbidden := map[string]string{
		"identity":                secretID,
		"identity (lowercase)":    strings.ToLower(secretID),
		"identity data":           secretID[16:50],
		"identity data lowercase": strings.ToLower(secretID[16:50]),
	}
	for _, f := range fs {
		s := f.scalar
		forbidden[f.id+" scalar hex"] = hex.EncodeToString(s)
		forbidden[f.id+" scalar HEX"] = strings.ToUpper(hex.EncodeToString(s))
		forbidden[f.id+" scalar base64"] = base64.RawStdEncoding.EncodeToString(s)
		forbidden[f.id+" scalar base64url"] = base64.RawURLEncoding.EncodeToString(s)
		forbidden[f.id+" scalar decimal"] = new(big.Int).SetBytes(s).String()
		forbidden[f.id+" scalar as Go bytes"] = strings.Trim(fmt.Sprint(s), "[]")
		forbidden[f.id+" DER base64"] = base64.StdEncoding.EncodeToString(mustDER(f.pem))[:40]
		pub := publicPEM[f.id]
		for i, line := range pemBodyLines(f.pem) {
			// Lines that only encode public bytes (the tail of SEC1 is the
			// public point) may legitimately appear in public_key_pem.
			if len(line) > 24 && !strings.Contains(pub, line) {
				forbidden[fmt.Sprintf("%s PEM line %d", f.id, i)] = line
			}
		}
		if f.alg == keyring.Ed25519 {
			forbidden[f.id+" ed25519 private key hex"] = hex.EncodeToString(ed25519.NewKeyFromSeed(s)[:32])
		}
	}
	got := out.String()
	for name, secret := range forbidden {
		if strings.Contains(got, secret) {
			i := strings.Index(got, secret)
			t.Errorf("output contains the %s; context: %q", name, got[max(0, i-200):i])
		}
	}
	// The checks looked at real output.
	for _, want := range []string{"REDACTED", "k1-pkcs8", "keys[0]", "age identity: line", "unknown key", "key destroyed", "ecdsa-secp256k1"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	t.Logf("checked %d bytes of output (%d errors) against %d secrets", out.Len(), len(errs), len(forbidden))
}

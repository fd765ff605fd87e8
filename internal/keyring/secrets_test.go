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

	"github.com/enclave-signer/enclave-signer/internal/keyring"
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

// TestNoClientSecretsInOutput does the same for client secrets: a policed
// keyring is loaded, its clients, keys, keyring and set are formatted and
// logged every way, errors about clients and policies are provoked with
// the secrets nearby (and misplaced), and no secret appears in any form.
func TestNoClientSecretsInOutput(t *testing.T) {
	var out bytes.Buffer
	text := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	jsonLog := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s1, s2, s3 := secretHex("one"), secretHex("two"), secretHex("three")
	clients := `"audience":"prod","clients":[` + client("app1", `"rate":{"per_second":2,"burst":4}`, s1, s2) + "," + client("app2", "", s3) + `]`
	ed, p := ed25519Fixture("ed"), p256Fixture("p", "sec1")
	good := v2("pay", clients, keyObj(ed, `{"clients":["app1"],"rate":{"per_second":1,"burst":1}}`), keyObj(p, `{"clients":["app1","app2"],"kinds":["digest"]}`))
	_, id, rcpt := newIdentity(t)
	set, err := keyring.Load(id, keyring.File{Name: "pay.age", Ciphertext: encrypt(t, rcpt, good, false)})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.ParseKeyring("again", good)
	if err != nil {
		t.Fatal(err)
	}
	values := []any{set, kr, kr.Clients(), kr.Keys(), set.Clients()}
	for _, c := range set.Clients() {
		values = append(values, c, c.Rate)
	}
	for _, k := range kr.Keys() {
		values = append(values, k, k.Policy(), k.Authorize("app2", "message", 5))
	}
	for _, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		text.Info("value", "v", v)
		jsonLog.Info("value", "v", v)
		if b, err := json.Marshal(v); err == nil {
			out.Write(b)
		}
	}

	var errs []error
	bad := func(in []byte) {
		if _, err := keyring.ParseKeyring("bad", in); err != nil {
			errs = append(errs, err)
		} else {
			t.Fatalf("parsed %s", in)
		}
	}
	k := keyObj(ed, `{"clients":["app1"]}`)
	for _, c := range []string{
		client("app1", "", s1[:63]),
		client("app1", "", s1+"0"),
		client("app1", "", s1[:40]+"x"+s1[41:]),
		client("app1", "", s1, s2, s3),
		client("app1", "", s1, s1),
		client("app1", "", s1) + "," + client("app2", "", s1),
		client("app1", "", s1) + "," + client("app1", "", s2),
		client(s1, "", s2) + "," + client(s1, "", s3),
		client("app1", `"`+s2+`":1`, s1),
		`{"id":"app1","secrets":["` + s1 + `"],"rate":{"` + s2 + `":1}}`,
		`{"id":"app1","secrets":["` + s1 + `" "` + s2 + `"]}`,
		`{"id":"app1","secrets":["` + s1 + `\q"]}`,
		`{"id":"` + s2 + ` x","secrets":["` + s1 + `"]}`,
	} {
		bad(v2("pay", `"audience":"prod","clients":[`+c+`]`, k))
	}
	bad(v2("pay", `"audience":"`+s1+`x","clients":[`+client("app1", "", s2)+`]`, k))
	bad(v2("pay", clients, keyObj(ed, `{"clients":["`+s1+`"]}`)))
	bad(v2("pay", clients, keyObj(ed, `{"clients":["app1"],"kinds":["`+s1+`"]}`)))
	other, err := keyring.ParseKeyring("other.age", v2("o", `"audience":"o","clients":[`+client("app9", "", s1)+`]`, keyObj(ed25519Fixture("o"), "")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = keyring.NewSet(kr, other)
	errs = append(errs, err)
	for _, sfile := range []string{s1[:60], s1 + "x", s1 + "\n\n", " " + s1} {
		_, err := keyring.ParseClientSecretFile([]byte(sfile))
		errs = append(errs, err)
	}
	set.Destroy()
	c, _ := set.Client("app1")
	_, err = c.MatchSecret(func([]byte) bool { return true })
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		fmt.Fprintf(&out, "%v\n", err)
		text.Error("failed", "err", err)
	}
	kr.Destroy()
	other.Destroy()

	got := strings.ToLower(out.String())
	for i, s := range []string{s1, s2, s3} {
		raw := must(hex.DecodeString(s))
		for name, form := range map[string]string{
			"hex":          s,
			"hex prefix":   s[:20],
			"hex suffix":   s[44:],
			"hex middle":   s[22:42],
			"base64":       base64.RawStdEncoding.EncodeToString(raw),
			"base64url":    base64.RawURLEncoding.EncodeToString(raw),
			"decimal":      new(big.Int).SetBytes(raw).String(),
			"as Go bytes":  strings.Trim(fmt.Sprint(raw), "[]"),
			"as Go bytes2": strings.Trim(fmt.Sprint(raw[5:15]), "[]"),
		} {
			if strings.Contains(got, strings.ToLower(form)) {
				j := strings.Index(got, strings.ToLower(form))
				t.Errorf("output contains secret %d (%s); context: %q", i+1, name, got[max(0, j-200):j])
			}
		}
	}
	for _, want := range []string{"redacted", "app1", "clients[0].secrets[0]", "policy.clients", "key destroyed", "not hex at position 41", "prod", "2/s,burst=4"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	t.Logf("checked %d bytes of output (%d errors)", out.Len(), len(errs))
}

package keyring_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
)

// secretHex is a fixed test client secret, 64 hex digits.
func secretHex(label string) string { return hex.EncodeToString(scalar("client secret " + label)) }

// keyObj writes one key entry of fixture f with an optional raw policy
// object.
func keyObj(f fixture, policy string) string {
	s := fmt.Sprintf(`{"id":%q,"algorithm":%q,"private_key_pem":%s`, f.id, f.alg, must(json.Marshal(f.pem)))
	if policy != "" {
		s += `,"policy":` + policy
	}
	return s + "}"
}

// v2 writes a format 2 keyring with the given raw top-level members
// (audience, clients…) and key entries.
func v2(id, top string, keys ...string) []byte {
	s := fmt.Sprintf(`{"version":2,"keyring_id":%q,"keyring_version":1,`, id)
	if top != "" {
		s += top + ","
	}
	return []byte(s + `"keys":[` + strings.Join(keys, ",") + "]}")
}

// client writes a clients entry.
func client(id string, extra string, secrets ...string) string {
	q := make([]string, len(secrets))
	for i, s := range secrets {
		q[i] = `"` + s + `"`
	}
	s := fmt.Sprintf(`{"id":%q,"secrets":[%s]`, id, strings.Join(q, ","))
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func TestParsePolicy(t *testing.T) {
	ed, p, k1 := ed25519Fixture("ed"), p256Fixture("p", "sec1"), secp256k1Fixture("k", "pkcs8")
	in := v2("pay",
		`"audience":"payments-prod:eu.1","clients":[`+
			client("app1", `"rate":{"per_second":0.5,"burst":3}`, secretHex("a1"), strings.ToUpper(secretHex("a1-old")))+","+
			client("app2", "", secretHex("a2"))+`]`,
		keyObj(ed, `{"clients":["app1"],"rate":{"burst":5,"per_second":5},"max_message_bytes":4096}`),
		keyObj(p, `{"kinds":["digest"],"clients":["app2","app1"]}`),
		keyObj(k1, ""),
	)
	kr, err := keyring.ParseKeyring("pay.age", in)
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Destroy()
	if !kr.Policed() || kr.Audience() != "payments-prod:eu.1" || len(kr.Clients()) != 2 {
		t.Fatalf("Policed %v, Audience %q, %d clients", kr.Policed(), kr.Audience(), len(kr.Clients()))
	}
	c1 := kr.Clients()[0]
	if c1.ID != "app1" || c1.Audience != "payments-prod:eu.1" || c1.Keyring() != "pay.age" ||
		c1.Rate == nil || *c1.Rate != (keyring.Rate{PerSecond: 0.5, Burst: 3}) {
		t.Errorf("client 1 = %v (rate %v)", c1, c1.Rate)
	}
	if s := c1.Secrets(); len(s) != 2 || hex.EncodeToString(s[0]) != secretHex("a1") || hex.EncodeToString(s[1]) != secretHex("a1-old") {
		t.Errorf("client 1 secrets are not the two given, in order (the second written in upper case)")
	}
	if c2 := kr.Clients()[1]; c2.ID != "app2" || c2.Rate != nil || len(c2.Secrets()) != 1 {
		t.Errorf("client 2 = %v", c2)
	}

	keys := kr.Keys()
	for _, k := range keys {
		if !k.Policed() {
			t.Errorf("key %s of a keyring with clients is not policed", k.ID())
		}
	}
	want := []*keyring.KeyPolicy{
		{Clients: []string{"app1"}, Kinds: []string{"message"}, Rate: &keyring.Rate{PerSecond: 5, Burst: 5}, MaxMessageBytes: 4096},
		{Clients: []string{"app2", "app1"}, Kinds: []string{"digest"}},
		nil,
	}
	for i, k := range keys {
		got := k.Policy()
		if (got == nil) != (want[i] == nil) {
			t.Fatalf("key %s: policy %+v, want %+v", k.ID(), got, want[i])
		}
		if got == nil {
			continue
		}
		if !slices.Equal(got.Clients, want[i].Clients) || !slices.Equal(got.Kinds, want[i].Kinds) ||
			(got.Rate == nil) != (want[i].Rate == nil) || got.Rate != nil && *got.Rate != *want[i].Rate || got.MaxMessageBytes != want[i].MaxMessageBytes {
			t.Errorf("key %s: policy %+v (rate %v), want %+v (rate %v)", k.ID(), got, got.Rate, want[i], want[i].Rate)
		}
	}

	// Kinds default to what the algorithm signs.
	in = v2("pay", `"audience":"a","clients":[`+client("c", "", secretHex("c"))+`]`,
		keyObj(ed, `{"clients":["c"]}`), keyObj(p, `{"clients":["c"]}`))
	kr2, err := keyring.ParseKeyring("k.age", in)
	if err != nil {
		t.Fatal(err)
	}
	defer kr2.Destroy()
	if got := kr2.Keys()[0].Policy().Kinds; !slices.Equal(got, []string{"message"}) {
		t.Errorf("ed25519 default kinds %v, want [message]", got)
	}
	if got := kr2.Keys()[1].Policy().Kinds; !slices.Equal(got, []string{"message", "digest"}) {
		t.Errorf("ecdsa-p256 default kinds %v, want [message digest]", got)
	}

	// An open keyring: no clients, no policy, keys not policed.
	open, err := keyring.ParseKeyring("open.age", v2("open", "", keyObj(ed, "")))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Destroy()
	if open.Policed() || open.Audience() != "" || len(open.Clients()) != 0 || open.Keys()[0].Policed() || open.Keys()[0].Policy() != nil {
		t.Errorf("open keyring reads as policed")
	}
}

func TestRateValues(t *testing.T) {
	ed := ed25519Fixture("ed")
	for _, tc := range []struct {
		in   string
		want float64
		err  string
	}{
		{"1", 1, ""},
		{"0.5", 0.5, ""},
		{"0.001", 0.001, ""},
		{"2.125", 2.125, ""},
		{"10.0", 10, ""},
		{"1000000", 1e6, ""},
		{"1000000.001", 0, "want more than 0 and at most 1000000"},
		{"0", 0, "want more than 0"},
		{"0.000", 0, "want more than 0"},
		{"0.0005", 0, "4 digits after the decimal point, want at most 3"},
		{"1e3", 0, "without exponent"},
		{"1.", 0, "want digits after the decimal point"},
		{".5", 0, "want a number of signatures per second, got invalid character"},
		{"-1", 0, "negative, want a positive number"},
		{"01", 0, "leading zero"},
		{"12345678", 0, "too large"},
		{`"5"`, 0, "want a number of signatures per second, got string"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			in := v2("r", `"audience":"a","clients":[`+client("c", "", secretHex("c"))+`]`,
				keyObj(ed, `{"clients":["c"],"rate":{"per_second":`+tc.in+`,"burst":1}}`))
			kr, err := keyring.ParseKeyring("r.age", in)
			if tc.err != "" {
				var pe *keyring.ParseError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want a ParseError containing %q", err, tc.err)
				}
				if pe.Index != 0 || (pe.Field != "policy.rate.per_second" && pe.Field != "") {
					t.Errorf("error %v: index %d, field %q", err, pe.Index, pe.Field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer kr.Destroy()
			if got := kr.Keys()[0].Policy().Rate.PerSecond; got != tc.want {
				t.Errorf("per_second %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	ed, p := ed25519Fixture("ed"), p256Fixture("p", "sec1")
	s1, s2, s3 := secretHex("1"), secretHex("2"), secretHex("3")
	cl := `"audience":"prod","clients":[` + client("app1", "", s1) + `]`
	withPolicy := func(policy string) string { return string(v2("k", cl, keyObj(p, policy))) }
	withClients := func(clients ...string) string {
		return string(v2("k", `"audience":"prod","clients":[`+strings.Join(clients, ",")+`]`, keyObj(ed, "")))
	}
	cases := []struct {
		name  string
		in    string
		index int
		field string
		want  string
	}{
		// audience
		{"clients without audience", string(v2("k", `"clients":[`+client("a", "", s1)+`]`, keyObj(ed, ""))), -1, "audience", "missing, want the name of this deployment"},
		{"audience without clients", string(v2("k", `"audience":"prod"`, keyObj(ed, ""))), -1, "audience", "given without clients"},
		{"audience empty", string(v2("k", `"audience":"","clients":[`+client("a", "", s1)+`]`, keyObj(ed, ""))), -1, "audience", "0 bytes long, want 1 to 64 characters from [A-Za-z0-9._:-]"},
		{"audience space", string(v2("k", `"audience":"pay prod","clients":[`+client("a", "", s1)+`]`, keyObj(ed, ""))), -1, "audience", "invalid character at position 4"},
		{"audience too long", string(v2("k", `"audience":"`+strings.Repeat("a", 65)+`","clients":[`+client("a", "", s1)+`]`, keyObj(ed, ""))), -1, "audience", "65 bytes long"},
		{"audience number", string(v2("k", `"audience":1,"clients":[`+client("a", "", s1)+`]`, keyObj(ed, ""))), -1, "audience", "want a string, got number"},
		{"audience in version 1", `{"version":1,"audience":"prod","keys":[` + keyObj(ed, "") + `]}`, -1, "audience", "a field of version 2, and this keyring says version 1"},
		// clients
		{"clients in version 1", `{"version":1,"clients":[` + client("a", "", s1) + `],"keys":[` + keyObj(ed, "") + `]}`, -1, "clients", "a field of version 2"},
		{"clients empty", withClients(), -1, "clients", "empty, want at least one client"},
		{"clients object", string(v2("k", `"audience":"prod","clients":{}`, keyObj(ed, ""))), -1, "clients", "want an array of clients, got object"},
		{"client not object", withClients(`"app1"`), -1, "clients[0]", "want an object, got string"},
		{"client without id", withClients(`{"secrets":["` + s1 + `"]}`), -1, "clients[0].id", "missing"},
		{"client without secrets", withClients(`{"id":"a"}`), -1, "clients[0].secrets", "missing, want one or two secrets"},
		{"client bad id", withClients(client("a b", "", s1)), -1, "clients[0].id", "invalid character at position 2"},
		{"client unknown field", withClients(client("a", `"secret":"x"`, s1)), -1, `clients[0]."secret"`, "unknown field, want id, secrets and rate"},
		{"client duplicate field", withClients(client("a", `"id":"b"`, s1)), -1, "clients[0].id", "field appears twice"},
		{"duplicate client id", withClients(client("a", "", s1), client("a", "", s2)), -1, "clients[1].id", `duplicate: clients[0] has the same id "a"`},
		{"no secrets", withClients(client("a", "")), -1, "clients[0].secrets", "empty, an array of one or two secrets"},
		{"three secrets", withClients(client("a", "", s1, s2, s3)), -1, "clients[0].secrets", "more than 2 secrets, want one, or two while rotating"},
		{"secret short", withClients(client("a", "", s1[:62])), -1, "clients[0].secrets[0]", "62 characters, want 64 hex digits (32 bytes)"},
		{"secret long", withClients(client("a", "", s1+"00")), -1, "clients[0].secrets[0]", "66 characters, want 64 hex digits"},
		{"secret not hex", withClients(client("a", "", s2, s1[:10]+"g"+s1[11:])), -1, "clients[0].secrets[1]", "not hex at position 11"},
		{"secret base64", withClients(client("a", "", "MC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")), -1, "clients[0].secrets[0]", "52 characters, want 64 hex digits"},
		{"secret number", withClients(`{"id":"a","secrets":[1]}`), -1, "clients[0].secrets[0]", "want 64 hex digits, got number"},
		{"secrets string", withClients(`{"id":"a","secrets":"` + s1 + `"}`), -1, "clients[0].secrets", "want an array of one or two secrets, 64 hex digits each, got string"},
		{"two equal secrets", withClients(client("a", "", s1, strings.ToUpper(s1))), -1, "clients[0].secrets", "the two secrets are the same"},
		{"secret shared by two clients", withClients(client("a", "", s1), client("b", "", s2, s1)), -1, "clients[1].secrets", `a secret of client "b" is also one of client "a"`},
		{"client rate zero burst", withClients(client("a", `"rate":{"per_second":1,"burst":0}`, s1)), -1, "clients[0].rate.burst", "0, want 1 to 1000000"},
		{"client rate huge burst", withClients(client("a", `"rate":{"per_second":1,"burst":1000001}`, s1)), -1, "clients[0].rate.burst", "1000001, want 1 to 1000000"},
		{"client rate no burst", withClients(client("a", `"rate":{"per_second":1}`, s1)), -1, "clients[0].rate.burst", "missing"},
		{"client rate no per_second", withClients(client("a", `"rate":{"burst":1}`, s1)), -1, "clients[0].rate.per_second", "missing"},
		{"client rate unknown field", withClients(client("a", `"rate":{"per_minute":1,"burst":1}`, s1)), -1, `clients[0].rate."per_minute"`, "unknown field, want per_second and burst"},
		{"client rate number", withClients(client("a", `"rate":5`, s1)), -1, "clients[0].rate", `want an object {"per_second": N, "burst": B}, got number`},
		{"client rate burst fraction", withClients(client("a", `"rate":{"per_second":1,"burst":1.5}`, s1)), -1, "clients[0].rate.burst", "without fraction"},
		// policy
		{"policy in version 1", `{"version":1,"keys":[` + keyObj(ed, `{"clients":["a"]}`) + `]}`, 0, "policy", "a field of version 2"},
		{"policy without clients in keyring", string(v2("k", "", keyObj(ed, `{"clients":["a"]}`))), 0, "policy", "a policy on a key of a keyring that declares no clients"},
		{"policy not object", withPolicy(`["app1"]`), 0, "policy", "want an object, got array"},
		{"policy without clients", withPolicy(`{"kinds":["message"]}`), 0, "policy.clients", "missing, want the ids of the clients"},
		{"policy clients empty", withPolicy(`{"clients":[]}`), 0, "policy.clients", "empty, want the ids of the clients that may use this key"},
		{"policy unknown client", withPolicy(`{"clients":["app1","app9"]}`), 0, "policy.clients[1]", `client "app9" is not declared in this keyring's clients, want one of "app1"`},
		{"policy client twice", withPolicy(`{"clients":["app1","app1"]}`), 0, "policy.clients[1]", `client "app1" is listed twice`},
		{"policy client malformed", withPolicy(`{"clients":["app 1"]}`), 0, "policy.clients[0]", "client id invalid character at position 4"},
		{"policy client number", withPolicy(`{"clients":[1]}`), 0, "policy.clients[0]", "want a client id, got number"},
		{"policy clients string", withPolicy(`{"clients":"app1"}`), 0, "policy.clients", "want an array of client ids, got string"},
		{"policy unknown field", withPolicy(`{"clients":["app1"],"allow":["x"]}`), 0, `policy."allow"`, "unknown field, want clients, kinds, rate and max_message_bytes"},
		{"policy duplicate field", withPolicy(`{"clients":["app1"],"clients":["app1"]}`), 0, "policy.clients", "field appears twice"},
		{"unknown kind", withPolicy(`{"clients":["app1"],"kinds":["message","eth_tx"]}`), 0, "policy.kinds[1]", `unknown request kind "eth_tx", want "message" or "digest"`},
		{"kind twice", withPolicy(`{"clients":["app1"],"kinds":["digest","digest"]}`), 0, "policy.kinds[1]", `kind "digest" is listed twice`},
		{"kinds empty", withPolicy(`{"clients":["app1"],"kinds":[]}`), 0, "policy.kinds", "empty, want at least one kind"},
		{"kind case", withPolicy(`{"clients":["app1"],"kinds":["Message"]}`), 0, "policy.kinds[0]", `unknown request kind "Message"`},
		{"digest on ed25519", string(v2("k", cl, keyObj(ed, `{"clients":["app1"],"kinds":["message","digest"]}`))), 0, "policy.kinds[1]", `ed25519 keys can't sign kind "digest"`},
		{"key rate per_second zero", withPolicy(`{"clients":["app1"],"rate":{"per_second":0,"burst":1}}`), 0, "policy.rate.per_second", "want more than 0"},
		{"key rate negative", withPolicy(`{"clients":["app1"],"rate":{"per_second":-5,"burst":1}}`), 0, "policy.rate.per_second", "negative, want a positive number"},
		{"key rate burst zero", withPolicy(`{"clients":["app1"],"rate":{"per_second":5,"burst":0}}`), 0, "policy.rate.burst", "0, want 1 to 1000000"},
		{"key rate null", withPolicy(`{"clients":["app1"],"rate":null}`), 0, "policy.rate", "got null"},
		{"max_message_bytes zero", withPolicy(`{"clients":["app1"],"max_message_bytes":0}`), 0, "policy.max_message_bytes", "0, want 1 to 1048576 bytes"},
		{"max_message_bytes too big", withPolicy(`{"clients":["app1"],"max_message_bytes":1048577}`), 0, "policy.max_message_bytes", "1048577, want 1 to 1048576"},
		{"max_message_bytes string", withPolicy(`{"clients":["app1"],"max_message_bytes":"4096"}`), 0, "policy.max_message_bytes", "want an integer, got string"},
		{"policy syntax", withPolicy(`{"clients":["app1"] "kinds":[]}`), 0, "", "want ',' or '}'"},
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
			if pe.Index != tc.index || pe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n got %q (index %d, field %q)\nwant index %d, field %q, containing %q", err, pe.Index, pe.Field, tc.index, tc.field, tc.want)
			}
			for _, s := range []string{s1, s2, s3} {
				for _, frag := range []string{s[:16], strings.ToUpper(s[:16]), s[48:], s1[11:30]} {
					if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(frag)) {
						t.Errorf("error %q contains secret text", err)
					}
				}
			}
			if strings.Contains(err.Error(), "MC4CAQ") {
				t.Errorf("error %q contains the pasted text", err)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	ed, p := ed25519Fixture("ed"), p256Fixture("p", "sec1")
	k1 := secp256k1Fixture("k", "sec1")
	in := v2("pay", `"audience":"prod","clients":[`+client("app1", "", secretHex("1"))+","+client("app2", "", secretHex("2"))+`]`,
		keyObj(ed, `{"clients":["app1"],"max_message_bytes":10}`),
		keyObj(p, `{"clients":["app1","app2"],"kinds":["digest"]}`),
		keyObj(k1, ""))
	kr, err := keyring.ParseKeyring("pay.age", in)
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Destroy()
	open, err := keyring.ParseKeyring("open.age", keyringJSON(ed25519Fixture("o")))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Destroy()
	key := func(kr *keyring.Keyring, i int) *keyring.Key { return kr.Keys()[i] }
	for _, tc := range []struct {
		k      *keyring.Key
		client string
		kind   string
		size   int
		rule   string // "" allowed
	}{
		{key(kr, 0), "app1", "message", 10, ""},
		{key(kr, 0), "app1", "message", 11, "policy.max_message_bytes"},
		{key(kr, 0), "app2", "message", 1, "policy.clients"},
		{key(kr, 0), "", "message", 1, "policy.clients"},
		{key(kr, 0), "app1", "digest", 32, "policy.kinds"},
		{key(kr, 1), "app2", "digest", 32, ""},
		{key(kr, 1), "app1", "digest", 32, ""},
		{key(kr, 1), "app1", "message", 5, "policy.kinds"},
		{key(kr, 1), "app1", "eth_tx", 5, "policy.kinds"},
		{key(kr, 2), "app1", "message", 5, "policy"},
		{key(open, 0), "", "message", 1 << 20, ""},
		{key(open, 0), "anyone", "digest", 32, ""},
	} {
		err := tc.k.Authorize(tc.client, tc.kind, tc.size)
		name := fmt.Sprintf("%s by %q, %s of %d bytes", tc.k.ID(), tc.client, tc.kind, tc.size)
		if tc.rule == "" {
			if err != nil {
				t.Errorf("%s: %v, want allowed", name, err)
			}
			continue
		}
		var pe *keyring.PolicyError
		if !errors.As(err, &pe) || !errors.Is(err, keyring.ErrForbidden) || pe.Rule != tc.rule || pe.KeyID != tc.k.ID() ||
			!strings.HasPrefix(err.Error(), fmt.Sprintf("key %q: %s: ", tc.k.ID(), tc.rule)) {
			t.Errorf("%s: error %v, want a PolicyError for rule %s", name, err, tc.rule)
		}
	}
	// The check is on every signature: allowing costs no allocation.
	k := key(kr, 1)
	if n := testing.AllocsPerRun(100, func() {
		if k.Authorize("app1", keyring.KindDigest, 32) != nil {
			t.Fatal("refused")
		}
	}); n != 0 {
		t.Errorf("Authorize allocates %v times when it allows", n)
	}
}

func TestSetClients(t *testing.T) {
	ed := ed25519Fixture("ed")
	a, err := keyring.ParseKeyring("a.age", v2("a", `"audience":"prod-a","clients":[`+client("app1", "", secretHex("1"))+`]`, keyObj(ed, `{"clients":["app1"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := keyring.ParseKeyring("b.age", v2("b", `"audience":"prod-b","clients":[`+client("app2", `"rate":{"per_second":1,"burst":1}`, secretHex("2"))+`]`, keyObj(p256Fixture("p", "sec1"), `{"clients":["app2"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	o, err := keyring.ParseKeyring("o.age", keyringJSON(secp256k1Fixture("k", "sec1")))
	if err != nil {
		t.Fatal(err)
	}
	s, err := keyring.NewSet(a, o, b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if !s.Policed() || !slices.Equal(s.OpenKeyrings(), []string{"o.age"}) {
		t.Errorf("Policed %v, OpenKeyrings %v; want true, [o.age]", s.Policed(), s.OpenKeyrings())
	}
	c, ok := s.Client("app2")
	if !ok || c.Audience != "prod-b" || c.Keyring() != "b.age" || c.Rate.Burst != 1 {
		t.Errorf("Client(app2) = %v, %v", c, ok)
	}
	if _, ok := s.Client("app3"); ok {
		t.Error("Client(app3) found")
	}
	if ids := s.Clients(); len(ids) != 2 || ids[0].ID != "app1" || ids[1].ID != "app2" {
		t.Errorf("Clients() = %v", ids)
	}
	if k, _ := s.Key("k"); k.Policed() {
		t.Error("a key of the open keyring is policed")
	}
	var nilSet *keyring.Set
	if nilSet.Policed() || nilSet.OpenKeyrings() != nil || nilSet.Clients() != nil {
		t.Error("nil set has clients")
	}
	if _, ok := nilSet.Client("app1"); ok {
		t.Error("nil set has a client")
	}
	only, err := keyring.ParseKeyring("o2.age", keyringJSON(ed25519Fixture("x")))
	if err != nil {
		t.Fatal(err)
	}
	so, err := keyring.NewSet(only)
	if err != nil {
		t.Fatal(err)
	}
	if so.Policed() || !slices.Equal(so.OpenKeyrings(), []string{"o2.age"}) {
		t.Errorf("open set: Policed %v, OpenKeyrings %v", so.Policed(), so.OpenKeyrings())
	}
	so.Destroy()

	// The same client id, or the same secret, in two keyrings.
	dupID, err := keyring.ParseKeyring("c.age", v2("c", `"audience":"prod-c","clients":[`+client("app1", "", secretHex("3"))+`]`, keyObj(ed25519Fixture("e2"), "")))
	if err != nil {
		t.Fatal(err)
	}
	defer dupID.Destroy()
	_, err = keyring.NewSet(a, dupID)
	var dup *keyring.DuplicateClientError
	if !errors.As(err, &dup) || dup.ID != "app1" || dup.First != "a.age" || dup.Second != "c.age" {
		t.Errorf("NewSet with a client id twice: %v, want DuplicateClientError{app1, a.age, c.age}", err)
	}
	dupSecret, err := keyring.ParseKeyring("d.age", v2("d", `"audience":"prod-d","clients":[`+client("app4", "", secretHex("4"), secretHex("1"))+`]`, keyObj(ed25519Fixture("e3"), "")))
	if err != nil {
		t.Fatal(err)
	}
	defer dupSecret.Destroy()
	_, err = keyring.NewSet(a, dupSecret)
	if err == nil || !strings.Contains(err.Error(), `a secret of client "app4" is also one of client "app1" (keyring "a.age")`) || strings.Contains(err.Error(), secretHex("1")[:16]) {
		t.Errorf("NewSet with a shared secret: %v", err)
	}
}

// Destroy wipes the client secrets; MatchSecret then refuses.
func TestClientDestroy(t *testing.T) {
	kr, err := keyring.ParseKeyring("a.age", v2("a", `"audience":"prod","clients":[`+client("app1", "", secretHex("1"), secretHex("2"))+`]`, keyObj(ed25519Fixture("ed"), `{"clients":["app1"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := keyring.NewSet(kr)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := s.Client("app1")
	secrets := c.Secrets()
	// A MAC under the old (second) secret verifies through MatchSecret.
	mac := func(key []byte) []byte { h := hmac.New(sha256.New, key); h.Write([]byte("req")); return h.Sum(nil) }
	want := mac(must(hex.DecodeString(secretHex("2"))))
	ok, err := c.MatchSecret(func(k []byte) bool { return hmac.Equal(mac(k), want) })
	if !ok || err != nil {
		t.Fatalf("MatchSecret = %v, %v; want true", ok, err)
	}
	ok, err = c.MatchSecret(func(k []byte) bool { return hmac.Equal(mac(k), mac([]byte("other"))) })
	if ok || err != nil {
		t.Fatalf("MatchSecret with a wrong MAC = %v, %v; want false, nil", ok, err)
	}
	s.Destroy()
	for i, sec := range secrets {
		if !bytes.Equal(sec, make([]byte, 32)) {
			t.Errorf("secret %d not wiped by Set.Destroy", i)
		}
	}
	if ok, err := c.MatchSecret(func([]byte) bool { return true }); ok || !errors.Is(err, keyring.ErrDestroyed) {
		t.Errorf("MatchSecret after Destroy = %v, %v; want ErrDestroyed", ok, err)
	}
	s.Destroy() // idempotent
}

func TestClientSecretFile(t *testing.T) {
	sec, err := keyring.GenerateClientSecret()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := keyring.GenerateClientSecret()
	if len(sec) != 32 || bytes.Equal(sec, other) || bytes.Equal(sec, make([]byte, 32)) {
		t.Fatalf("GenerateClientSecret: %d bytes, repeated or zero", len(sec))
	}
	file, err := keyring.EncodeClientSecretFile(sec)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(sec) + "\n"; string(file) != want {
		t.Fatalf("secret file %q, want 64 lowercase hex digits and a newline", file)
	}
	for _, in := range []string{string(file), strings.TrimSuffix(string(file), "\n"), strings.ToUpper(strings.TrimSpace(string(file))) + "\r\n"} {
		got, err := keyring.ParseClientSecretFile([]byte(in))
		if err != nil || !bytes.Equal(got, sec) {
			t.Errorf("ParseClientSecretFile(%d bytes) = %x, %v", len(in), got, err)
		}
	}
	h := hex.EncodeToString(sec)
	for _, tc := range []struct{ in, want string }{
		{"", "0 characters, want 64 hex digits"},
		{"\n", "0 characters"},
		{h + "\n\n", "65 characters"},
		{" " + h, "65 characters"},
		{h[:63] + "z\n", "not hex at position 64"},
		{h[:62] + "\n", "62 characters"},
		{"AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ", "72 characters"},
	} {
		_, err := keyring.ParseClientSecretFile([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "client secret file: ") {
			t.Errorf("ParseClientSecretFile(%q) error %v, want %q", tc.in, err, tc.want)
		}
		if err != nil && len(tc.in) > 20 && strings.Contains(err.Error(), tc.in[1:17]) {
			t.Errorf("error %v quotes the file", err)
		}
	}
	if _, err := keyring.EncodeClientSecretFile(sec[:31]); err == nil {
		t.Error("EncodeClientSecretFile took 31 bytes")
	}
}

func TestRateString(t *testing.T) {
	for _, tc := range []struct {
		r    keyring.Rate
		want string
	}{
		{keyring.Rate{PerSecond: 5, Burst: 10}, "5/s,burst=10"},
		{keyring.Rate{PerSecond: 0.5, Burst: 1}, "0.5/s,burst=1"},
		{keyring.Rate{PerSecond: 0.001, Burst: 1}, "0.001/s,burst=1"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want keyring.Rate
		err  string
	}{
		{"5/s", keyring.Rate{PerSecond: 5, Burst: 5}, ""},
		{"5/s,burst=20", keyring.Rate{PerSecond: 5, Burst: 20}, ""},
		{"0.5/s", keyring.Rate{PerSecond: 0.5, Burst: 1}, ""},
		{"2.5/s", keyring.Rate{PerSecond: 2.5, Burst: 3}, ""},
		{"0.001/s,burst=1", keyring.Rate{PerSecond: 0.001, Burst: 1}, ""},
		{"1000000/s", keyring.Rate{PerSecond: 1e6, Burst: 1e6}, ""},
		{"5", keyring.Rate{}, "no /s"},
		{"5/m", keyring.Rate{}, "no /s"},
		{"/s", keyring.Rate{}, "want a number"},
		{"0/s", keyring.Rate{}, "want more than 0"},
		{"-1/s", keyring.Rate{}, "negative"},
		{"1e3/s", keyring.Rate{}, "without exponent"},
		{"5x/s", keyring.Rate{}, "unexpected text after the number"},
		{"0.0001/s", keyring.Rate{}, "4 digits after the decimal point"},
		{"5/s,burst=0", keyring.Rate{}, "burst is 0, want 1 to 1000000"},
		{"5/s,burst=x", keyring.Rate{}, `burst "x" is not an integer`},
		{"5/s,burst=+3", keyring.Rate{}, `burst "+3" is not an integer`},
		{"5/s burst=3", keyring.Rate{}, `unexpected " burst=3" after /s`},
		{"5/s,b=3", keyring.Rate{}, `unexpected ",b=3" after /s`},
		{"2000000/s", keyring.Rate{}, "at most 1000000"},
	} {
		got, err := keyring.ParseRate(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if again, err := keyring.ParseRate(got.String()); err != nil || again != got {
				t.Errorf("ParseRate(%q.String()) = %v, %v", tc.in, again, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseRate(%q) error %v, want %q", tc.in, err, tc.err)
		}
	}
}

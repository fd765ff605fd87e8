package attestation

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"
)

// independentKeySetDigest recomputes the key set digest from the JSON of
// GET /v1/keys without any of this package's code: its own JSON and PEM
// handling, sort.Strings, binary.Write into a bytes.Buffer, one Sum384.
func independentKeySetDigest(t *testing.T, keysJSON []byte) []byte {
	t.Helper()
	var list struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(keysJSON, &list); err != nil {
		t.Fatal(err)
	}
	byID := map[string]map[string]any{}
	var ids []string
	for _, k := range list.Keys {
		id := k["id"].(string)
		byID[id] = k
		ids = append(ids, id)
	}
	sort.Strings(ids) // Go strings compare bytewise
	var buf bytes.Buffer
	for _, id := range ids {
		k := byID[id]
		var b64 strings.Builder
		for _, line := range strings.Split(k["public_key_pem"].(string), "\n") {
			if !strings.HasPrefix(line, "-----") {
				b64.WriteString(strings.TrimSpace(line))
			}
		}
		der, err := base64.StdEncoding.DecodeString(b64.String())
		if err != nil {
			t.Fatal(err)
		}
		for _, field := range [][]byte{[]byte(id), []byte(k["algorithm"].(string)), der} {
			binary.Write(&buf, binary.BigEndian, uint16(len(field)))
			buf.Write(field)
		}
	}
	sum := sha512.Sum384(buf.Bytes())
	return sum[:]
}

// TestKeySetDigestVector checks the golden vector: a key list as GET
// /v1/keys returns it, listed out of order, whose keyset_digest was
// computed by the Python one-liner in testdata/README.md. KeySetDigest and
// the independent implementation above must both give it.
func TestKeySetDigestVector(t *testing.T) {
	raw, err := os.ReadFile("testdata/keyset-vector.json")
	if err != nil {
		t.Fatal(err)
	}
	const golden = "98606f2781f3eef9e2098229a8a971789f576bc2a7eae065833bd38cdf17a551915f0ce0684decbbc388b88b061a76e1"
	kl, err := ParseKeyListJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(kl.ClaimedDigest) != golden {
		t.Fatalf("the vector's keyset_digest is %x, want %s", kl.ClaimedDigest, golden)
	}
	got, err := KeySetDigest(kl.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got) != golden {
		t.Errorf("KeySetDigest = %x\nwant          %s", got, golden)
	}
	if ind := independentKeySetDigest(t, raw); hex.EncodeToString(ind) != golden {
		t.Errorf("independent digest = %x\nwant                 %s", ind, golden)
	}
	if ids := []string{kl.Keys[0].ID, kl.Keys[1].ID}; ids[0] != "payments" || ids[1] != "Zeta" {
		t.Errorf("the vector must list its keys out of order (ParseKeyListJSON keeps the order), got %v", ids)
	}
}

func TestKeySetDigestProperties(t *testing.T) {
	base := []PublicKey{
		{ID: "b", Algorithm: "ed25519", SPKI: []byte{0x30, 0x01, 0xaa}},
		{ID: "a", Algorithm: "ecdsa-p256", SPKI: []byte{0x30, 0x02, 0xbb, 0xcc}},
		{ID: "B", Algorithm: "ecdsa-secp256k1", SPKI: []byte{0x30, 0x00}},
	}
	digest := func(keys []PublicKey) string {
		t.Helper()
		d, err := KeySetDigest(keys)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) != KeySetDigestSize {
			t.Fatalf("digest is %d bytes, want %d", len(d), KeySetDigestSize)
		}
		return hex.EncodeToString(d)
	}
	want := digest(base)
	if got := digest([]PublicKey{base[2], base[0], base[1]}); got != want {
		t.Errorf("the digest depends on the order keys are given in")
	}
	if base[0].ID != "b" {
		t.Error("KeySetDigest reordered its argument")
	}
	empty := sha512.Sum384(nil)
	if got := digest(nil); got != hex.EncodeToString(empty[:]) {
		t.Errorf("digest of no keys = %s, want SHA-384 of the empty string", got)
	}

	// Every field of every key counts, and so do the boundaries between
	// them: moving a byte from one field to the next changes the digest.
	changed := map[string]func(k []PublicKey) []PublicKey{
		"id":              func(k []PublicKey) []PublicKey { k[0].ID = "c"; return k },
		"algorithm":       func(k []PublicKey) []PublicKey { k[1].Algorithm = "ecdsa-secp256k1"; return k },
		"spki byte":       func(k []PublicKey) []PublicKey { k[2].SPKI = []byte{0x30, 0x01}; return k },
		"spki appended":   func(k []PublicKey) []PublicKey { k[2].SPKI = []byte{0x30, 0x00, 0x00}; return k },
		"id/alg boundary": func(k []PublicKey) []PublicKey { k[1].ID, k[1].Algorithm = "ae", "cdsa-p256"; return k },
		"key removed":     func(k []PublicKey) []PublicKey { return k[:2] },
		"key added": func(k []PublicKey) []PublicKey {
			return append(k, PublicKey{ID: "d", Algorithm: "ed25519", SPKI: []byte{1}})
		},
	}
	for name, edit := range changed {
		if got := digest(edit(append([]PublicKey(nil), base...))); got == want {
			t.Errorf("%s: the digest did not change", name)
		}
	}

	for name, keys := range map[string][]PublicKey{
		"duplicate id": {base[0], base[1], base[0]},
		"long spki":    {{ID: "x", Algorithm: "ed25519", SPKI: make([]byte, 65536)}},
		"long id":      {{ID: strings.Repeat("x", 65536), Algorithm: "ed25519"}},
	} {
		if _, err := KeySetDigest(keys); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := KeySetDigest([]PublicKey{{ID: "x", Algorithm: "ed25519", SPKI: make([]byte, 65535)}}); err != nil {
		t.Errorf("65535-byte spki: %v", err)
	}
}

func TestParseKeyListJSON(t *testing.T) {
	pemA := "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAx35pM9Nu7KF+7Z4VwYLWB1zPbRchrntIjsKQPR8b3Vc=\n-----END PUBLIC KEY-----\n"
	key := func(id, pem string) string {
		b, _ := json.Marshal(map[string]string{"id": id, "algorithm": "ed25519", "public_key_pem": pem})
		return string(b)
	}
	good := `{"keys":[` + key("a", pemA) + `],"keyset_digest":"` + strings.Repeat("ab", 48) + `","state":"ready"}`
	kl, err := ParseKeyListJSON([]byte(good))
	if err != nil {
		t.Fatalf("a list with an unknown field: %v", err)
	}
	if len(kl.Keys) != 1 || kl.Keys[0].ID != "a" || len(kl.Keys[0].SPKI) != 44 || hex.EncodeToString(kl.ClaimedDigest) != strings.Repeat("ab", 48) {
		t.Fatalf("got %+v", kl)
	}
	if kl, err := ParseKeyListJSON([]byte(`{"keys":[]}`)); err != nil || kl.Keys == nil || kl.ClaimedDigest != nil {
		t.Fatalf("empty list: %+v %v", kl, err)
	}
	tests := []struct{ name, in, want string }{
		{"not JSON", `keys`, "JSON"},
		{"no keys", `{"keyset_digest":"00"}`, `no "keys"`},
		{"keys not an array", `{"keys":{}}`, "JSON"},
		{"id a number", `{"keys":[{"id":1,"algorithm":"ed25519","public_key_pem":""}]}`, "JSON"},
		{"missing pem", `{"keys":[{"id":"a","algorithm":"ed25519"}]}`, "public_key_pem"},
		{"not PEM", `{"keys":[` + key("a", "MCow") + `]}`, "no PEM block"},
		{"certificate", `{"keys":[` + key("a", strings.ReplaceAll(pemA, "PUBLIC KEY", "CERTIFICATE")) + `]}`, "want PUBLIC KEY"},
		{"two blocks", `{"keys":[` + key("a", pemA+pemA) + `]}`, "after the PEM block"},
		{"duplicate id", `{"keys":[` + key("a", pemA) + `,` + key("a", pemA) + `]}`, "twice"},
		{"short digest", `{"keys":[],"keyset_digest":"abcd"}`, "96 hex digits"},
		{"trailing", `{"keys":[]} {}`, "after the JSON"},
		{"trailing bracket", `{"keys":[]}]`, "after the JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kl, err := ParseKeyListJSON([]byte(tt.in))
			if err == nil || kl != nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %+v, %v; want an error containing %q", kl, err, tt.want)
			}
		})
	}
}

// FuzzParseKeyListJSON: the key list comes through the untrusted host. No
// panic; nil with every error; whatever parses has a digest.
func FuzzParseKeyListJSON(f *testing.F) {
	raw, err := os.ReadFile("testdata/keyset-vector.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"id":"a","algorithm":"ed25519","public_key_pem":"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n"}],"keyset_digest":"00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kl, err := ParseKeyListJSON(b)
		if err != nil {
			if kl != nil {
				t.Fatalf("error %v with a list", err)
			}
			return
		}
		if _, err := KeySetDigest(kl.Keys); err != nil {
			t.Fatalf("a parsed list has no digest: %v", err)
		}
	})
}

package attestation

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

var update = flag.Bool("update", false, "rewrite testdata/userdata-*.hex")

var (
	testKeySet = bytes.Repeat([]byte{0x5a}, KeySetDigestSize)
	testPins   = Pins{
		KMSKeys: []string{
			"arn:aws:kms:us-east-1:111122223333:key/mrk-2", // given out of order: written sorted
			"arn:aws:kms:us-east-1:111122223333:key/mrk-1",
		},
		KeyringSigners:   []string{"ed25519:MCowBQYDK2VwAyEAx35pM9Nu7KF+7Z4VwYLWB1zPbRchrntIjsKQPR8b3Vc="},
		KeyringThreshold: 1,
	}
)

// textKey is a CBOR text string of fewer than 24 bytes.
func textKey(s string) []byte { return append([]byte{0x60 | byte(len(s))}, s...) }

// TestUserDataExactBytes assembles the expected encoding by hand from RFC
// 8949: keys sorted bytewise by their encodings, so "v" (61 76) < "pins"
// (64 …) < "caller" (66 63 …) < "keyset" (66 6b …), and inside pins
// "kms_keys" (68 …) < "keyring_signers" (6f …) < "keyring_threshold"
// (71 …): shorter text keys first, since the head holds the length.
func TestUserDataExactBytes(t *testing.T) {
	var want []byte
	want = append(want, 0xa4)
	want = append(append(want, textKey("v")...), 0x01)
	want = append(append(want, textKey("pins")...), 0xa3)
	want = append(append(want, textKey("kms_keys")...), 0x80)
	want = append(append(want, 0x6f), "keyring_signers"...)
	want = append(want, 0x80)
	want = append(append(want, 0x71), "keyring_threshold"...)
	want = append(want, 0x00)
	want = append(append(want, textKey("caller")...), 0x43, 'a', 'b', 'c')
	want = append(append(want, textKey("keyset")...), 0x58, 0x30)
	want = append(want, testKeySet...)

	u := &UserData{KeySet: testKeySet, Caller: []byte("abc")}
	got, err := u.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("unpinned map with caller data:\n got %x\nwant %x", got, want)
	}
	// No caller data: no "caller" key, three pairs.
	u.Caller = nil
	got, _ = u.Marshal()
	noCaller := append([]byte{0xa3}, want[1:bytes.Index(want, textKey("caller"))]...)
	noCaller = append(append(noCaller, textKey("keyset")...), 0x58, 0x30)
	noCaller = append(noCaller, testKeySet...)
	if !bytes.Equal(got, noCaller) {
		t.Fatalf("without caller data:\n got %x\nwant %x", got, noCaller)
	}
	u.Caller = []byte{}
	if got2, _ := u.Marshal(); !bytes.Equal(got2, noCaller) {
		t.Fatalf("empty caller data must be left out like none:\n got %x\nwant %x", got2, noCaller)
	}
}

// TestUserDataGolden pins the encoding of a pinned map (sorted pins, a
// threshold, caller data) in testdata/userdata-pinned.hex; docs/protocol.md
// shows the same bytes.
func TestUserDataGolden(t *testing.T) {
	for name, u := range map[string]*UserData{
		"pinned":   {KeySet: testKeySet, Pins: testPins, Caller: []byte("order 7")},
		"unpinned": {KeySet: testKeySet},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := u.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			path := "testdata/userdata-" + name + ".hex"
			if *update {
				if err := os.WriteFile(path, []byte(hex.EncodeToString(got)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != strings.TrimSpace(string(want)) {
				t.Fatalf("%s:\n got %x\nwant %s", path, got, want)
			}
			// Core deterministic encoding: re-encoding the decoded
			// generic value with the library's canonical mode changes
			// nothing.
			var generic any
			if err := cbor.Unmarshal(got, &generic); err != nil {
				t.Fatal(err)
			}
			em, _ := cbor.CoreDetEncOptions().EncMode()
			again, err := em.Marshal(generic)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("not in core deterministic encoding:\n got %x\ncanonical %x", got, again)
			}
			back, err := ParseUserData(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.KeySet, u.KeySet) || !back.Pins.Equal(u.Pins) || !bytes.Equal(back.Caller, u.Caller) {
				t.Fatalf("round trip: got %+v, want %+v", back, u)
			}
			if back.Pins.KMSKeys == nil || back.Pins.KeyringSigners == nil {
				t.Error("parsed pins: empty arrays must come back as empty slices")
			}
		})
	}
}

func TestUserDataMarshalRefusesBadKeySet(t *testing.T) {
	if _, err := (&UserData{KeySet: make([]byte, 32)}).Marshal(); err == nil {
		t.Fatal("a 32-byte key set digest was encoded")
	}
}

// TestCallerRoom checks CallerRoom against the encoder at every length
// where the byte string's head grows, and with pins that leave no room.
func TestCallerRoom(t *testing.T) {
	for _, n := range []int{0, 1, 40, 300, 600, 700, 720, 740, 745, 760, 800, 850, 900, 960} {
		p := Pins{KMSKeys: []string{strings.Repeat("k", n)}}
		u := &UserData{KeySet: testKeySet, Pins: p}
		room, err := u.CallerRoom()
		if err != nil {
			t.Fatal(err)
		}
		size := func(c int) int {
			u.Caller = make([]byte, c)
			b, err := u.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			return len(b)
		}
		if room < 0 {
			if s := size(0); s <= MaxUserFieldSize {
				t.Errorf("pins of %d: room %d, but the map without caller data is %d bytes", n, room, s)
			}
			continue
		}
		if s := size(room); s > MaxUserFieldSize {
			t.Errorf("pins of %d: room %d, but that map is %d bytes", n, room, s)
		}
		if s := size(room + 1); s <= MaxUserFieldSize {
			t.Errorf("pins of %d: room %d, but one more byte still fits (%d bytes)", n, room, s)
		}
	}
	if room, _ := (&UserData{KeySet: testKeySet}).CallerRoom(); room != 901 {
		t.Errorf("unpinned room = %d, want 901 (docs/protocol.md says so)", room)
	}
}

func TestParseUserData(t *testing.T) {
	good, _ := (&UserData{KeySet: testKeySet, Pins: testPins, Caller: []byte("x")}).Marshal()
	// A later version's keys are ignored, at the top and inside pins.
	var m map[string]any
	cbor.Unmarshal(good, &m)
	m["later"] = map[string]any{"head": []byte{1, 2}}
	m["pins"].(map[any]any)["kms_regions"] = []any{"us-east-1"}
	later, _ := cbor.Marshal(m)
	u, err := ParseUserData(later)
	if err != nil {
		t.Fatalf("a map with unknown keys: %v", err)
	}
	if !bytes.Equal(u.KeySet, testKeySet) || !u.Pins.Equal(testPins) || string(u.Caller) != "x" {
		t.Fatalf("got %+v", u)
	}

	with := func(key string, v any) []byte {
		var m map[string]any
		cbor.Unmarshal(good, &m)
		if v == nil {
			delete(m, key)
		} else {
			m[key] = v
		}
		b, _ := cbor.Marshal(m)
		return b
	}
	pinsWith := func(key string, v any) []byte {
		var m map[string]any
		cbor.Unmarshal(good, &m)
		p := m["pins"].(map[any]any)
		if v == nil {
			delete(p, key)
		} else {
			p[key] = v
		}
		b, _ := cbor.Marshal(m)
		return b
	}
	dup := bytes.Replace(good, []byte{0xa4}, []byte{0xa5}, 1)
	dup = append(dup, append(textKey("v"), 0x01)...)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "not signerd's map"},
		{"caller's plain bytes", []byte("hello"), "not signerd's map"},
		{"array", []byte{0x80}, "not signerd's map"},
		{"integer keys", []byte{0xa1, 0x01, 0x01}, "user_data"},
		{"no v", with("v", nil), `no "v"`},
		{"no keyset", with("keyset", nil), `no "keyset"`},
		{"no pins", with("pins", nil), `no "pins"`},
		{"v text", with("v", "1"), `"v": want an unsigned integer`},
		{"v 2", with("v", 2), `"v" is 2`},
		{"keyset short", with("keyset", make([]byte, 47)), "47 bytes, want 48"},
		{"keyset text", with("keyset", strings.Repeat("a", 48)), "want a byte string"},
		{"caller text", with("caller", "x"), "caller"},
		{"pins array", with("pins", []any{}), "want a map"},
		{"kms_keys missing", pinsWith("kms_keys", nil), `no "kms_keys"`},
		{"kms_keys text", pinsWith("kms_keys", "arn"), "want an array of text strings"},
		{"keyring_signers bytes", pinsWith("keyring_signers", []any{[]byte("k")}), "keyring_signers[0]: want a text string"},
		{"threshold negative", pinsWith("keyring_threshold", -1), "keyring_threshold"},
		{"threshold missing", pinsWith("keyring_threshold", nil), "keyring_threshold"},
		{"duplicate key", dup, "user_data"},
		{"trailing", append(bytes.Clone(good), 0x00), "trailing"},
		{"indefinite", append(append([]byte{0xbf}, good[1:]...), 0xff), "user_data"},
		{"tagged", append([]byte{0xd8, 0x18}, good...), "not signerd's map"},
		{"audit text", with("audit", "k"), `"audit"`},
		{"audit not a key", with("audit", []byte{0x30, 0x00}), `"audit"`},
		{"audit p256", with("audit", testP256SPKI), "want ed25519"},
		{"audit_overflow bytes", pinsWith("audit_overflow", []byte("drop")), `"audit_overflow": want a text string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseUserData(tt.in)
			if err == nil || u != nil {
				t.Fatalf("got %+v, %v; want an error containing %q", u, err, tt.want)
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q: want class malformed, containing %q", err, tt.want)
			}
		})
	}
}

// FuzzParseUserData: no panic; nil with every error, always of class
// ErrMalformed; whatever parses encodes again and parses back the same.
func FuzzParseUserData(f *testing.F) {
	for _, u := range []*UserData{
		{KeySet: testKeySet},
		{KeySet: testKeySet, Pins: testPins, Caller: []byte("caller")},
		{KeySet: testKeySet, Pins: Pins{AuditOverflow: "drop"}, Audit: testAuditSPKI},
	} {
		b, _ := u.Marshal()
		f.Add(b)
	}
	f.Add([]byte{0xa0})
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseUserData(b)
		if err != nil {
			if u != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v with %+v, or not malformed", err, u)
			}
			return
		}
		again, err := u.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseUserData(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.KeySet, u.KeySet) || !back.Pins.Equal(u.Pins) || !bytes.Equal(back.Caller, u.Caller) || !bytes.Equal(back.Audit, u.Audit) {
			t.Fatalf("round trip: %+v became %+v", u, back)
		}
	})
}

// testAuditSPKI is the SPKI of the ed25519 key with an all-0x07 seed;
// testP256SPKI a P-256 key's, which "audit" must refuse.
var (
	testAuditSPKI = func() []byte {
		b, err := MarshalAuditKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)).Public().(ed25519.PublicKey))
		if err != nil {
			panic(err)
		}
		return b
	}()
	testP256SPKI = func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		b, _ := x509.MarshalPKIXPublicKey(k.Public())
		return b
	}()
)

// TestUserDataAudit: "audit" (the audit key's SPKI) sits between "pins"
// and "caller" (5-letter keys sort after 4-letter ones, before 6-letter
// ones), audit_overflow inside pins only when set; both come back; the
// audit key must be an ed25519 SPKI on the way out too.
func TestUserDataAudit(t *testing.T) {
	u := &UserData{KeySet: testKeySet, Pins: Pins{AuditOverflow: "drop"}, Audit: testAuditSPKI, Caller: []byte("c")}
	b, err := u.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	iPins, iAudit, iCaller := bytes.Index(b, textKey("pins")), bytes.Index(b, textKey("audit")), bytes.Index(b, textKey("caller"))
	if !(0 < iPins && iPins < iAudit && iAudit < iCaller) {
		t.Fatalf("key order pins %d, audit %d, caller %d in %x", iPins, iAudit, iCaller, b)
	}
	overflow := append(append([]byte{0x6e}, "audit_overflow"...), 0x64, 'd', 'r', 'o', 'p')
	if !bytes.Contains(b, overflow) {
		t.Fatalf("no audit_overflow \"drop\" in %x", b)
	}
	back, err := ParseUserData(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Audit, testAuditSPKI) || back.Pins.AuditOverflow != "drop" || back.Pins.Unpinned() {
		t.Fatalf("round trip: %+v", back)
	}
	if k := back.AuditKey(); !bytes.Equal(k, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)).Public().(ed25519.PublicKey)) {
		t.Fatalf("AuditKey = %x", k)
	}
	// Unset, neither appears: the map of a signerd without an audit trail.
	plain, _ := (&UserData{KeySet: testKeySet}).Marshal()
	if bytes.Contains(plain, []byte("audit")) {
		t.Fatalf("unset audit written: %x", plain)
	}
	if _, err := (&UserData{KeySet: testKeySet, Audit: testP256SPKI}).Marshal(); err == nil || !strings.Contains(err.Error(), "ed25519") {
		t.Fatalf("a P-256 audit key was encoded: %v", err)
	}
	if _, err := ParseAuditKey(append(bytes.Clone(testAuditSPKI), 0)); err == nil {
		t.Fatal("trailing bytes after the SPKI accepted")
	}
}

// TestProtocolDocShowsTheGoldenMap: docs/protocol.md prints the pinned
// map's bytes; they must be testdata/userdata-pinned.hex.
func TestProtocolDocShowsTheGoldenMap(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/userdata-pinned.hex")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(golden))
	i := bytes.Index(doc, []byte(want[:40]))
	if i < 0 {
		t.Fatalf("docs/protocol.md does not show the pinned map (starting %s…)", want[:40])
	}
	end := bytes.Index(doc[i:], []byte("```"))
	if got := strings.Join(strings.Fields(string(doc[i:i+end])), ""); got != want {
		t.Fatalf("docs/protocol.md shows\n%s\nwant\n%s", got, want)
	}
}

package wire

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fastPathSamples() []Message {
	long := strings.Repeat("x", 300)
	return []Message{
		&SignRequest{},
		&SignRequest{KeyID: "payments", Data: make([]byte, 32)},
		&SignRequest{KeyID: "k", Data: []byte{}, IsDigest: true},
		&SignRequest{KeyID: long, Data: bytes.Repeat([]byte{7}, 70000)},
		&SignRequest{KeyID: "é", Data: make([]byte, 23)},
		&SignRequest{KeyID: "k", Data: make([]byte, 24)},
		&AuthSignRequest{},
		&AuthSignRequest{Method: "POST", Path: "/v1/keys/eth/sign", Body: []byte(`{"message":"aGVsbG8="}`), Authorization: "ES-HMAC-SHA256 client=app1, ts=1700000000, nonce=00112233445566778899aabbccddeeff, mac=" + strings.Repeat("ab", 32)},
		&AuthSignRequest{Method: long, Path: "/é", Body: bytes.Repeat([]byte{7}, 70000), Authorization: long},
		&SignResponse{},
		&SignResponse{KeyID: "payments", Algorithm: "ed25519", Signature: make([]byte, 64)},
		&SignResponse{KeyID: "eth", Algorithm: "ecdsa-secp256k1", Signature: make([]byte, 71), RecoveryID: u8(1), SignatureRSV: make([]byte, 65)},
		&SignResponse{KeyID: "eth", Algorithm: "ecdsa-secp256k1", Signature: make([]byte, 70), RecoveryID: u8(0)},
		&SignResponse{KeyID: "x", Algorithm: long, Signature: []byte{}, RecoveryID: u8(255), SignatureRSV: []byte{1}},
		&Hello{},
		&Hello{Versions: []uint16{1}},
		&Hello{Versions: []uint16{1, 2, 23, 24, 255, 256, 65535}, Software: "signer/v1.2.3"},
		&Hello{Versions: []uint16{}, Software: long},
		&HelloAck{},
		&HelloAck{Version: 1, Software: "signerd/devel"},
		&HelloAck{Version: 65535, Software: long},
	}
}

// fastTypes are the types with a fast path, in the order
// FuzzFastPathMatchesGeneric picks them.
var fastTypes = []Type{TypeSignRequest, TypeSignResponse, TypeHello, TypeHelloAck, TypeAuthSignRequest}

// fastDecode runs typ's fast decoder, and returns its re-encoder.
func fastDecode(typ Type, body []byte) (Message, bool, func() []byte) {
	switch typ {
	case TypeSignRequest:
		m, ok := decodeSignRequest(body)
		return m, ok, func() []byte { return appendSignRequest(nil, m) }
	case TypeSignResponse:
		m, ok := decodeSignResponse(body)
		return m, ok, func() []byte { return appendSignResponse(nil, m) }
	case TypeHello:
		m, ok := decodeHello(body)
		return m, ok, func() []byte { return appendHello(nil, m) }
	case TypeHelloAck:
		m, ok := decodeHelloAck(body)
		return m, ok, func() []byte { return appendHelloAck(nil, m) }
	case TypeAuthSignRequest:
		m, ok := decodeAuthSignRequest(body)
		return m, ok, func() []byte { return appendAuthSignRequest(nil, m) }
	}
	panic("no fast path for " + typ.String())
}

func genericDecode(t testing.TB, typ Type, body []byte) (Message, error) {
	m := messages[typ].new()
	if err := decMode.Unmarshal(body, m); err != nil {
		return nil, err
	}
	return m, nil
}

// TestFastPathMatchesGeneric: the hand-written encoders write exactly what
// the generic encoder writes, and the hand-written decoders read that back
// to exactly what the generic decoder reads.
func TestFastPathMatchesGeneric(t *testing.T) {
	for i, m := range fastPathSamples() {
		var buf bytes.Buffer
		if err := encMode.MarshalToBuffer(m, &buf); err != nil {
			t.Fatal(err)
		}
		want := buf.Bytes()
		var got []byte
		switch v := m.(type) {
		case *SignRequest:
			got = appendSignRequest(nil, v)
		case *SignResponse:
			got = appendSignResponse(nil, v)
		case *Hello:
			got = appendHello(nil, v)
		case *HelloAck:
			got = appendHelloAck(nil, v)
		case *AuthSignRequest:
			got = appendAuthSignRequest(nil, v)
		}
		dec, ok, _ := fastDecode(m.MessageType(), want)
		if !bytes.Equal(got, want) {
			t.Errorf("sample %d (%s): fast encoding\n got %x\nwant %x", i, m.MessageType(), got, want)
		}
		gen, err := genericDecode(t, m.MessageType(), want)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || !reflect.DeepEqual(dec, gen) {
			t.Errorf("sample %d (%s): fast decoding (ok=%v)\n got %#v\nwant %#v", i, m.MessageType(), ok, dec, gen)
		}
		// Whole frames go through the fast path and back.
		fb := getBuf()
		if err := appendFrame(fb, 42, m); err != nil {
			t.Fatal(err)
		}
		id, back, err := Unmarshal(fb.Bytes()[HeaderSize:])
		putBuf(fb)
		if err != nil || id != 42 || !reflect.DeepEqual(back, gen) {
			t.Errorf("sample %d: frame round trip: id %d, %v\n got %#v\nwant %#v", i, id, err, back, gen)
		}
	}
}

// TestFastPathDefersToGeneric: encodings that are valid but not plain,
// and invalid ones, are left to the generic decoder.
func TestFastPathDefersToGeneric(t *testing.T) {
	for _, c := range []struct {
		name string
		typ  Type
		body string // hex
	}{
		{"non-shortest text length", TypeSignRequest, "a20178016b0240"},
		{"key as non-shortest int", TypeSignRequest, "a21801616b0240"},
		{"unknown key", TypeSignRequest, "a30161 6b 0240 0901"},
		{"duplicate key", TypeSignRequest, "a201616b01616b"},
		{"null data", TypeSignRequest, "a201616b02f6"},
		{"bytes for key id", TypeSignRequest, "a201416b0240"},
		{"invalid utf-8", TypeSignRequest, "a20161ff0240"},
		{"indefinite map", TypeSignRequest, "bf01616b0240ff"},
		{"trailing byte", TypeSignRequest, "a201616b024000"},
		{"truncated", TypeSignRequest, "a201616b0245aa"},
		{"is_digest as 1", TypeSignRequest, "a301616b02400301"},
		{"is_digest false given", TypeSignRequest, "a301616b024003f4"},
		{"keys out of order", TypeSignRequest, "a20240 01616b"},
		{"empty rsv given", TypeSignResponse, "a401616b026165034005 40"},
		{"recovery id 256", TypeSignResponse, "a401616b02616503400419 0100"},
		{"negative recovery id", TypeSignResponse, "a401616b02616503400420"},
		{"too many pairs", TypeSignResponse, "a6"},
		{"empty", TypeSignRequest, ""},
		{"empty map", TypeSignResponse, "a0"},
		{"no data", TypeSignRequest, "a101616b"},
		{"array", TypeSignRequest, "80"},
		{"hello without versions", TypeHello, "a0"},
		{"hello version 65536", TypeHello, "a1 01 81 1a00010000"},
		{"hello versions as a map", TypeHello, "a1 01 a0"},
		{"hello indefinite array", TypeHello, "a1 01 9f01ff"},
		{"hello array count past the end", TypeHello, "a1 01 99ffff"},
		{"hello version non-shortest", TypeHello, "a1 01 81 1801"},
		{"hello empty software given", TypeHello, "a2 01 81 01 02 60"},
		{"hello unknown key", TypeHello, "a2 01 81 01 03 01"},
		{"hello trailing byte", TypeHello, "a1 01 81 01 00"},
		{"hello_ack version 65536", TypeHelloAck, "a1 01 1a00010000"},
		{"hello_ack without version", TypeHelloAck, "a1 02 6178"},
		{"hello_ack software as bytes", TypeHelloAck, "a2 01 01 02 4178"},
		{"auth without authorization", TypeAuthSignRequest, "a3 01 60 02 60 03 40"},
		{"auth body as text", TypeAuthSignRequest, "a4 01 60 02 60 03 60 04 60"},
		{"auth path as bytes", TypeAuthSignRequest, "a4 01 60 02 40 03 40 04 60"},
		{"auth unknown key", TypeAuthSignRequest, "a5 01 60 02 60 03 40 04 60 05 60"},
		{"auth keys out of order", TypeAuthSignRequest, "a4 02 60 01 60 03 40 04 60"},
		{"auth null body", TypeAuthSignRequest, "a4 01 60 02 60 03 f6 04 60"},
	} {
		body := mustHex(t, strings.ReplaceAll(c.body, " ", ""))
		if _, ok, _ := fastDecode(c.typ, body); ok {
			t.Errorf("%s: the fast path accepted %x", c.name, body)
		}
	}
}

// FuzzFastPathMatchesGeneric: whatever the fast decoders accept, the
// generic decoder accepts too, with the same result, and re-encoding it
// (fast or generic, the same bytes) gives the input back: the fast path
// accepts exactly the canonical encoding.
func FuzzFastPathMatchesGeneric(f *testing.F) {
	for _, m := range fastPathSamples() {
		var buf bytes.Buffer
		encMode.MarshalToBuffer(m, &buf)
		f.Add(uint8(slices.Index(fastTypes, m.MessageType())), buf.Bytes())
	}
	f.Add(uint8(0), mustHex(f, "a301616b02400901"))
	f.Fuzz(func(t *testing.T, pick uint8, body []byte) {
		typ := fastTypes[int(pick)%len(fastTypes)]
		fast, ok, reenc := fastDecode(typ, body)
		if !ok {
			return
		}
		gen, err := genericDecode(t, typ, body)
		if err != nil {
			t.Fatalf("fast path accepted %x, generic refuses: %v", body, err)
		}
		if !reflect.DeepEqual(fast, gen) {
			t.Fatalf("%x: fast %#v, generic %#v", body, fast, gen)
		}
		var buf bytes.Buffer
		if err := encMode.MarshalToBuffer(gen, &buf); err != nil {
			t.Fatal(err)
		}
		if got := reenc(); !bytes.Equal(got, buf.Bytes()) || !bytes.Equal(got, body) {
			t.Fatalf("accepted %x; re-encoded fast %x, generic %x", body, got, buf.Bytes())
		}
	})
}

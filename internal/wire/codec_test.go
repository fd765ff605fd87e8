package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// Fake credentials: the shape of AWS's documentation examples, never real.
const (
	testSecretKey    = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	testSessionToken = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789"
)

func u8(v uint8) *uint8 { return &v }

// samples holds one filled-in message of every type, with the request id
// its golden frame uses. Golden files are testdata/<type name>.golden.
func samples() []struct {
	id  uint64
	msg Message
} {
	return []struct {
		id  uint64
		msg Message
	}{
		{0, &Hello{Versions: []uint16{1}, Software: "signer test"}},
		{0, &HelloAck{Version: 1, Software: "signerd test"}},
		{7, &Error{Code: CodeUnknownKey, Message: `no key "nope"`}},
		{1, &StatusRequest{}},
		{1, &Status{
			State:       StateFailed,
			Attestation: AttestationSimulated,
			DebugMode:   true,
			PCRs:        map[uint16][]byte{0: make([]byte, 48), 8: bytes.Repeat([]byte{0xab}, 48)},
			Keys:        0,
			Error: &StatusError{
				Step:       "kms_decrypt",
				Message:    "kms decrypt: access denied",
				KMSCode:    "AccessDeniedException",
				KMSMessage: "User is not authorized to perform: kms:Decrypt",
				PCR0:       make([]byte, 48),
			},
			Version: "v0.1.0",
			Pinned:  true,
			Pins:    &Pins{KMSKeys: []string{"arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}},
		}},
		{2, &ProvisionRequest{
			Region: "eu-west-1",
			Credentials: Credentials{
				AccessKeyID:     "ASIAEXAMPLEKEYID0001",
				SecretAccessKey: testSecretKey,
				SessionToken:    testSessionToken,
				Expiration:      time.Unix(1767225600, 0).UTC(),
			},
			IdentityCiphertext: []byte{0x01, 0x02, 0x03, 0x00, 0x78},
			EncryptionContext:  map[string]string{"app": "signer", "env": "dev"},
			Keyrings: []SealedKeyring{
				{Name: "keyring.age", Data: []byte("age-encryption.org/v1\n")},
				{Name: "extra.age", Data: []byte{0x61, 0x67, 0x65}},
			},
		}},
		{3, &ListKeysRequest{}},
		{3, &KeyList{Keys: []KeyInfo{
			{ID: "ed", Algorithm: "ed25519", PublicKeyPEM: "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"},
			{ID: "eth", Algorithm: "ecdsa-secp256k1", PublicKeyPEM: "-----BEGIN PUBLIC KEY-----\nMFYw\n-----END PUBLIC KEY-----\n", EthereumAddress: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"},
		}, KeySetDigest: bytes.Repeat([]byte{0x38}, 48)}},
		{4, &SignRequest{KeyID: "eth", Data: bytes.Repeat([]byte{0x11}, 32), IsDigest: true}},
		{4, &SignResponse{KeyID: "eth", Algorithm: "ecdsa-secp256k1", Signature: []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01},
			RecoveryID: u8(0), SignatureRSV: bytes.Repeat([]byte{0x22}, 65)}},
		{5, &AttestRequest{Nonce: []byte("nonce"), UserData: []byte("user data")}},
		{5, &AttestResponse{Document: []byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22}}},
		{6, &AuthSignRequest{Method: "POST", Path: "/v1/keys/eth/sign", Body: []byte(`{"message":"aGVsbG8="}`),
			Authorization: "ES-HMAC-SHA256 client=app1, ts=1700000000, nonce=00112233445566778899aabbccddeeff, mac=802425352bda431b093534b5621ab8d6622cd75142954cbf01e3cd461670ec1a"}},
		{6, &AuditReadRequest{AuditKey: bytes.Repeat([]byte{0x8a}, 32), Cursor: 21, Max: 512}},
		{6, &AuditBatch{AuditKey: bytes.Repeat([]byte{0x8a}, 32), Records: [][]byte{
			[]byte(`{"type":"decision","seq":10,"time":"2026-12-07T20:57:53.123456789Z","client":"","key":"dev-ed25519","kind":"message","sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","outcome":"allowed","reason":"","prev":"91aa9d2898e0dbc81f785d98190136641265d99745e282022326eafb4225b2b5"}`),
			[]byte(`{"type":"checkpoint","seq":10,"time":"2026-12-07T20:57:58.123456789Z","hash":"6eb44c0f4861477120fe0e683248e0e64145be5dc2b9a3bcc54f505f472b8579","sig":"Z6AYhq2sRZG1dNcGH8GUYd+NJ9wwsFIwjRd62JeQtyPJernL8GzHoUtu3vQCbJP/aRSb+45YLURLuPmJ+p2NCA=="}`),
		}, Next: 22, More: true}},
		{7, &AuditHeadRequest{Nonce: bytes.Repeat([]byte{0xab}, 32)}},
		{7, &AuditHead{AuditKey: bytes.Repeat([]byte{0x8a}, 32), Seq: 10, Hash: bytes.Repeat([]byte{0x6e}, 32), Time: 1796677073123456789,
			Nonce: bytes.Repeat([]byte{0xab}, 32), Sig: bytes.Repeat([]byte{0xcc}, 64)}},
	}
}

// normalize makes a decoded message comparable with reflect.DeepEqual to
// the sample it came from.
func normalize(m Message) Message {
	if p, ok := m.(*ProvisionRequest); ok {
		p.Credentials.Expiration = p.Credentials.Expiration.UTC()
	}
	return m
}

func TestSamplesCoverEveryType(t *testing.T) {
	seen := map[Type]bool{}
	for _, s := range samples() {
		seen[s.msg.MessageType()] = true
	}
	for _, typ := range Types() {
		if !seen[typ] {
			t.Errorf("no sample of %s", typ)
		}
		if _, ok := messages[typ]; !ok {
			t.Errorf("Types lists %s, messages table lacks it", typ)
		}
	}
	if len(messages) != len(Types()) {
		t.Errorf("messages table has %d types, Types() %d", len(messages), len(Types()))
	}
}

func TestRoundTripEveryMessage(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.msg.MessageType().String(), func(t *testing.T) {
			body, err := Marshal(s.id, s.msg)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			id, m, err := Unmarshal(body)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if id != s.id {
				t.Errorf("id: got %d, want %d", id, s.id)
			}
			if !reflect.DeepEqual(normalize(m), s.msg) {
				t.Errorf("round trip differs\n got: %#v\nwant: %#v", m, s.msg)
			}
		})
	}
}

func TestGoldenFrames(t *testing.T) {
	for _, s := range samples() {
		name := s.msg.MessageType().String()
		t.Run(name, func(t *testing.T) {
			body, err := Marshal(s.id, s.msg)
			if err != nil {
				t.Fatal(err)
			}
			var frame bytes.Buffer
			if err := WriteFrame(&frame, body); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden")
			got := hex.EncodeToString(frame.Bytes()) + "\n"
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs (run go test -update if the change is intended)\n got: %s\nwant: %s", path, got, want)
			}
			// The golden frame decodes to the sample.
			raw, err := hex.DecodeString(strings.TrimSpace(string(want)))
			if err != nil {
				t.Fatal(err)
			}
			gb, err := ReadFrame(bytes.NewReader(raw), nil)
			if err != nil {
				t.Fatalf("ReadFrame(golden): %v", err)
			}
			id, m, err := Unmarshal(gb)
			if err != nil {
				t.Fatalf("Unmarshal(golden): %v", err)
			}
			if id != s.id || !reflect.DeepEqual(normalize(m), s.msg) {
				t.Errorf("golden decodes to id %d %#v\nwant id %d %#v", id, m, s.id, s.msg)
			}
		})
	}
}

// TestWireLayout pins the envelope by hand, independently of the encoder.
func TestWireLayout(t *testing.T) {
	body, err := Marshal(300, &SignRequest{KeyID: "k", Data: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x83,             // array(3)
		0x16,             // type 22
		0x19, 0x01, 0x2c, // id 300
		0xa2,            // map(2)
		0x01, 0x61, 'k', // 1: "k"
		0x02, 0x40, // 2: h'' (an empty message is still sent)
	}
	if !bytes.Equal(body, want) {
		t.Errorf("got  %x\nwant %x", body, want)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	valid, err := Marshal(9, &SignRequest{KeyID: "k", Data: []byte("m")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		body   []byte
		code   Code
		wantID uint64
		substr string
	}{
		{"empty", nil, CodeMalformedFrame, 0, "zero-length"},
		{"not an array", []byte{0xa0}, CodeMalformedFrame, 0, "array of 3"},
		{"array of 2", []byte{0x82, 0x16, 0x01}, CodeMalformedFrame, 0, "array of 3"},
		{"type not uint", []byte{0x83, 0x61, 'x', 0x01, 0xa0}, CodeMalformedFrame, 0, "message type must be an unsigned integer"},
		{"type too big", []byte{0x83, 0x1a, 0x00, 0x01, 0x00, 0x00, 0x01, 0xa0}, CodeMalformedFrame, 0, "exceeds 65535"},
		{"type not shortest", []byte{0x83, 0x18, 0x16, 0x01, 0xa0}, CodeMalformedFrame, 0, "shortest form"},
		{"id truncated", []byte{0x83, 0x16, 0x19, 0x01}, CodeMalformedFrame, 0, "request id truncated"},
		{"id missing", []byte{0x83, 0x16}, CodeMalformedFrame, 0, "missing request id"},
		{"body missing", []byte{0x83, 0x16, 0x01}, CodeMalformedFrame, 0, "missing body"},
		{"body not a map", []byte{0x83, 0x16, 0x01, 0xf6}, CodeMalformedFrame, 1, "must be a CBOR map"},
		{"bad cbor", []byte{0x83, 0x16, 0x01, 0xa1, 0x01, 0xff}, CodeMalformedFrame, 1, "sign_request body"},
		{"trailing bytes", append(bytes.Clone(valid), 0x00), CodeMalformedFrame, 9, "extraneous data"},
		{"truncated body", valid[:len(valid)-1], CodeMalformedFrame, 9, "sign_request body"},
		{"duplicate key", []byte{0x83, 0x16, 0x01, 0xa2, 0x01, 0x61, 'a', 0x01, 0x61, 'b'}, CodeMalformedFrame, 1, "duplicate map key"},
		{"wrong field type", []byte{0x83, 0x16, 0x01, 0xa1, 0x01, 0x01}, CodeMalformedFrame, 1, "sign_request body"},
		{"indefinite length", []byte{0x83, 0x16, 0x01, 0xbf, 0xff}, CodeMalformedFrame, 1, "indefinite"},
		{"tag", []byte{0x83, 0x16, 0x01, 0xa1, 0x02, 0xc2, 0x40}, CodeMalformedFrame, 1, "tag"},
		{"invalid utf-8", []byte{0x83, 0x16, 0x01, 0xa1, 0x01, 0x61, 0xff}, CodeMalformedFrame, 1, "UTF-8"},
		{"unknown type", []byte{0x83, 0x19, 0x03, 0xe7, 0x05, 0xa1, 0x01, 0x02}, CodeUnsupported, 5, "message type 999"},
		{"unknown type, bad body", []byte{0x83, 0x19, 0x03, 0xe7, 0x05, 0xa1, 0x01}, CodeMalformedFrame, 5, "message type 999"},
		{"too deep", nest(20), CodeMalformedFrame, 1, "exceeded max nested level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, m, err := Unmarshal(tt.body)
			if m != nil {
				t.Errorf("message: got %#v, want nil", m)
			}
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("error: got %v (%T), want *Error", err, err)
			}
			if we.Code != tt.code || !strings.Contains(we.Message, tt.substr) {
				t.Errorf("error:\n got %v\nwant code %s containing %q", we, tt.code, tt.substr)
			}
			if id != tt.wantID {
				t.Errorf("id: got %d, want %d", id, tt.wantID)
			}
		})
	}
}

// nest returns a sign_request frame body whose field 9 holds depth nested
// arrays.
func nest(depth int) []byte {
	b := []byte{0x83, 0x16, 0x01, 0xa1, 0x09}
	for range depth {
		b = append(b, 0x81)
	}
	return append(b, 0x00)
}

func TestUnknownFieldsIgnored(t *testing.T) {
	// {1: "k", 2: h'6d', 99: "from a newer peer"}
	body := []byte{0x83, 0x16, 0x01, 0xa3, 0x01, 0x61, 'k', 0x02, 0x41, 'm', 0x18, 99, 0x61, 'x'}
	_, m, err := Unmarshal(body)
	if err != nil {
		t.Fatal(err)
	}
	want := &SignRequest{KeyID: "k", Data: []byte("m")}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %#v, want %#v", m, want)
	}
}

// TestKeyListWithoutDigest: a key_list from an enclave older than the
// attested key set (no key 2) still decodes, with no digest; a list with
// one carries it through.
func TestKeyListWithoutDigest(t *testing.T) {
	// [21, 3, {1: [{1: "a", 2: "ed25519", 3: "P"}]}]
	old := []byte{0x83, 0x15, 0x03, 0xa1, 0x01, 0x81, 0xa3, 0x01, 0x61, 'a', 0x02, 0x67, 'e', 'd', '2', '5', '5', '1', '9', 0x03, 0x61, 'P'}
	_, m, err := Unmarshal(old)
	if err != nil {
		t.Fatal(err)
	}
	kl := m.(*KeyList)
	if len(kl.Keys) != 1 || kl.Keys[0].ID != "a" || kl.KeySetDigest != nil {
		t.Fatalf("got %#v", kl)
	}
	body, _ := Marshal(3, &KeyList{Keys: kl.Keys})
	if !bytes.Equal(body, old) {
		t.Errorf("a list without a digest encodes with key 2:\n got %x\nwant %x", body, old)
	}
}

func TestMarshalTooLarge(t *testing.T) {
	_, err := Marshal(1, &AttestResponse{Document: make([]byte, MaxFrameSize)})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("got %v, want ErrFrameTooLarge", err)
	}
	// Exactly the limit is fine: array head, type 25 (2 bytes), id, map
	// head, key, byte string head (5 bytes) = 11 bytes.
	if _, err := Marshal(1, &AttestResponse{Document: make([]byte, MaxFrameSize-11)}); err != nil {
		t.Errorf("frame of exactly MaxFrameSize: %v", err)
	}
}

func TestReadFrame(t *testing.T) {
	frame := func(n uint32, body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, n), body...)
	}
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr error
	}{
		{"ok", frame(3, []byte("abc")), []byte("abc"), nil},
		{"max size", frame(MaxFrameSize, make([]byte, MaxFrameSize)), make([]byte, MaxFrameSize), nil},
		{"eof", nil, nil, io.EOF},
		{"short header", []byte{0, 0}, nil, io.ErrUnexpectedEOF},
		{"short body", frame(5, []byte("abc")), nil, io.ErrUnexpectedEOF},
		{"header only", frame(5, nil), nil, io.ErrUnexpectedEOF},
		{"zero length", frame(0, nil), nil, ErrMalformedFrame},
		{"one over", frame(MaxFrameSize+1, nil), nil, ErrFrameTooLarge},
		{"4 GiB", frame(0xffffffff, nil), nil, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadFrame(bytes.NewReader(tt.in), nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error:\n got %v\nwant %v", err, tt.wantErr)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("body: got %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}

func TestReadFrameReusesBuffer(t *testing.T) {
	buf := make([]byte, 0, 16)
	in := []byte{0, 0, 0, 3, 'a', 'b', 'c'}
	got, err := ReadFrame(bytes.NewReader(in), buf)
	if err != nil {
		t.Fatal(err)
	}
	if &got[:1][0] != &buf[:1][0] {
		t.Error("ReadFrame did not read into the buffer it was given")
	}
}

func TestReadFrameTooLargeDoesNotAllocate(t *testing.T) {
	in := []byte{0xff, 0xff, 0xff, 0xff}
	r := bytes.NewReader(in)
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		r.Reset(in)
		if _, err := ReadFrame(r, nil); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 1024 {
		t.Errorf("refusing a 4 GiB length allocated %d bytes per call, want at most 1 KiB", perRun)
	}
}

func TestWriteFrameRefuses(t *testing.T) {
	var w bytes.Buffer
	if err := WriteFrame(&w, nil); !errors.Is(err, ErrMalformedFrame) {
		t.Errorf("empty body: got %v, want ErrMalformedFrame", err)
	}
	if err := WriteFrame(&w, make([]byte, MaxFrameSize+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized body: got %v, want ErrFrameTooLarge", err)
	}
	if w.Len() != 0 {
		t.Errorf("refused frames wrote %d bytes", w.Len())
	}
}

func TestCodes(t *testing.T) {
	seen := map[string]bool{}
	prev := Code(0)
	for _, c := range Codes() {
		if c <= prev {
			t.Errorf("Codes() not ascending at %d", c)
		}
		prev = c
		name := c.String()
		if strings.HasPrefix(name, "code(") || seen[name] {
			t.Errorf("code %d: name %q missing or duplicated", c, name)
		}
		seen[name] = true
	}
	if len(codeNames) != len(Codes()) {
		t.Errorf("codeNames has %d entries, Codes() %d", len(codeNames), len(Codes()))
	}
	for _, c := range []Code{CodeMalformedFrame, CodeFrameTooLarge, CodeVersionMismatch} {
		if !c.ClosesConn() {
			t.Errorf("%s.ClosesConn() = false, want true", c)
		}
	}
	for _, c := range []Code{CodeUnsupported, CodeInternal, CodeUnknownKey, Code(999)} {
		if c.ClosesConn() {
			t.Errorf("%s.ClosesConn() = true, want false", c)
		}
	}
}

func TestErrorIs(t *testing.T) {
	err := error(&Error{Code: CodeUnknownKey, Message: `no key "x"`})
	wrapped := errors.Join(errors.New("context"), err)
	if !errors.Is(wrapped, ErrUnknownKey) {
		t.Error("errors.Is(unknown_key answer, ErrUnknownKey) = false")
	}
	if errors.Is(wrapped, ErrNotReady) {
		t.Error("errors.Is(unknown_key answer, ErrNotReady) = true")
	}
	if errors.Is(ErrUnknownKey, err) {
		t.Error("a sentinel matches an error with a specific message")
	}
	if got, want := err.Error(), `unknown_key: no key "x"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	// A code from a newer peer is still an error and shows its number.
	newer := &Error{Code: 999, Message: "something new"}
	if got, want := newer.Error(), "code(999): something new"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if errors.Is(newer, ErrInternal) {
		t.Error("an unknown code matches ErrInternal")
	}
	if !errors.Is(newer, &Error{Code: 999}) {
		t.Error("an unknown code does not match an *Error with its number")
	}
}

// TestDocsListEveryCodeAndType keeps docs/protocol.md in step with the code.
func TestDocsListEveryCodeAndType(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for line := range strings.SplitSeq(string(doc), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		rows[strings.TrimSpace(cells[1])+" "+strings.Trim(strings.TrimSpace(cells[2]), "`")] = true
	}
	for _, c := range Codes() {
		if key := strconv.Itoa(int(c)) + " " + c.String(); !rows[key] {
			t.Errorf("docs/protocol.md has no table row starting | %d | `%s` |", c, c)
		}
	}
	for _, typ := range Types() {
		if key := strconv.Itoa(int(typ)) + " " + typ.String(); !rows[key] {
			t.Errorf("docs/protocol.md has no table row starting | %d | `%s` |", typ, typ)
		}
	}
}

// TestStatusAuditRoundTrip: Status field 11 (audit) and Pins field 5
// (audit_overflow) round-trip, under their keys, and are absent when unset.
func TestStatusAuditRoundTrip(t *testing.T) {
	st := &Status{State: StateReady, Attestation: AttestationNSM, Keys: 1,
		Pins:  &Pins{AuditOverflow: "drop"},
		Audit: &AuditStatus{Buffered: 3, Capacity: 65536, Unrecorded: 4, Refused: 5, LastSeq: 99, State: AuditDropping, LastDrain: 1796677073123}}
	b, err := Marshal(9, st)
	if err != nil {
		t.Fatal(err)
	}
	// 0x0b (key 11) then a map of 7; 0x05 (key 5) then "drop" inside pins.
	if !bytes.Contains(b, []byte{0x0b, 0xa7}) || !bytes.Contains(b, []byte{0x05, 0x64, 'd', 'r', 'o', 'p'}) {
		t.Fatalf("audit (11) or audit_overflow (5) not under their keys: %x", b)
	}
	_, m, err := Unmarshal(b)
	if err != nil || !reflect.DeepEqual(m, st) {
		t.Fatalf("round trip: %+v, %v", m, err)
	}
	plain, _ := Marshal(9, &Status{State: StateReady})
	if _, m, _ := Unmarshal(plain); m.(*Status).Audit != nil {
		t.Fatal("an absent audit status came back")
	}
}

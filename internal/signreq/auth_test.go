package signreq

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// vector is testdata/vector.json, the test vector docs/protocol.md shows.
// It was computed with Python's hmac and hashlib, not with this package.
type vector struct {
	Secret        string `json:"secret"`
	Audience      string `json:"audience"`
	Client        string `json:"client"`
	TS            int64  `json:"ts"`
	Nonce         string `json:"nonce"`
	Method        string `json:"method"`
	Path          string `json:"path"`
	Body          string `json:"body"`
	BodySHA256    string `json:"body_sha256"`
	MACInput      string `json:"mac_input"`
	MAC           string `json:"mac"`
	Authorization string `json:"authorization"`
}

func loadVector(t testing.TB) (vector, []byte, Params) {
	t.Helper()
	data, err := os.ReadFile("testdata/vector.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	secret, err := hex.DecodeString(v.Secret)
	if err != nil {
		t.Fatal(err)
	}
	p := Params{Audience: v.Audience, Client: v.Client, Timestamp: v.TS, Method: v.Method, Path: v.Path, Body: []byte(v.Body)}
	if err := decodeLowerHex(p.Nonce[:], v.Nonce, "nonce"); err != nil {
		t.Fatal(err)
	}
	return v, secret, p
}

func TestVector(t *testing.T) {
	v, secret, p := loadVector(t)
	in, err := p.MACInput(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(in) != v.MACInput {
		t.Errorf("MACInput = %q\nwant %q", in, v.MACInput)
	}
	h, err := Authorization(secret, &p)
	if err != nil {
		t.Fatal(err)
	}
	if h != v.Authorization {
		t.Errorf("Authorization = %s\nwant %s", h, v.Authorization)
	}
	c, err := ParseAuthorization(v.Authorization)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(c.MAC[:]) != v.MAC || c.Client != v.Client || c.Timestamp != v.TS || hex.EncodeToString(c.Nonce[:]) != v.Nonce {
		t.Errorf("ParseAuthorization(vector) = %+v", c)
	}
	if err := Verify(&c, [][]byte{secret}, v.Audience, v.Method, v.Path, []byte(v.Body)); err != nil {
		t.Errorf("Verify(vector) = %v", err)
	}
}

// TestVerifyTampered changes each field the MAC covers in turn: every
// change must fail, and the untouched request must pass.
func TestVerifyTampered(t *testing.T) {
	v, secret, _ := loadVector(t)
	c, err := ParseAuthorization(v.Authorization)
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Repeat([]byte{7}, SecretSize)
	for _, tc := range []struct {
		name                   string
		edit                   func(c *Credential)
		secrets                [][]byte
		audience, method, path string
		body                   string
		ok                     bool
	}{
		{name: "untouched", ok: true},
		{name: "second secret matches", secrets: [][]byte{other, secret}, ok: true},
		{name: "first secret matches", secrets: [][]byte{secret, other}, ok: true},
		{name: "wrong secret", secrets: [][]byte{other}},
		{name: "no secret", secrets: [][]byte{}},
		{name: "short secret", secrets: [][]byte{secret[:31]}},
		{name: "client", edit: func(c *Credential) { c.Client = "app2" }},
		{name: "timestamp", edit: func(c *Credential) { c.Timestamp++ }},
		{name: "nonce", edit: func(c *Credential) { c.Nonce[15] ^= 1 }},
		{name: "mac", edit: func(c *Credential) { c.MAC[0] ^= 0x80 }},
		{name: "audience", audience: "payments-test"},
		{name: "method", method: "PUT"},
		{name: "path", path: "/v1/keys/other/sign"},
		{name: "path case", path: "/v1/keys/ETH/sign"},
		{name: "body", body: `{"message":"aGVsbG9="}`},
		{name: "body whitespace", body: `{"message": "aGVsbG8="}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := c
			if tc.edit != nil {
				tc.edit(&cc)
			}
			secrets := tc.secrets
			if secrets == nil {
				secrets = [][]byte{secret}
			}
			aud, method, path, body := or(tc.audience, v.Audience), or(tc.method, v.Method), or(tc.path, v.Path), or(tc.body, v.Body)
			err := Verify(&cc, secrets, aud, method, path, []byte(body))
			if tc.ok != (err == nil) {
				t.Fatalf("Verify = %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok && !errors.Is(err, ErrBadMAC) {
				t.Fatalf("Verify = %v, want ErrBadMAC", err)
			}
		})
	}
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestVerifyRefusesBadFields(t *testing.T) {
	v, secret, _ := loadVector(t)
	c, _ := ParseAuthorization(v.Authorization)
	for _, tc := range []struct{ name, audience, method, path, want string }{
		{"empty audience", "", "POST", "/x", "audience"},
		{"newline audience", "a\nb", "POST", "/x", "audience"},
		{"empty method", "a", "", "/x", "method"},
		{"relative path", "a", "POST", "x", "path"},
		{"newline path", "a", "POST", "/x\n", "path"},
		{"space in path", "a", "POST", "/x y", "path"},
	} {
		err := Verify(&c, [][]byte{secret}, tc.audience, tc.method, tc.path, nil)
		if err == nil || errors.Is(err, ErrBadMAC) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Verify = %v, want an error about %s", tc.name, err, tc.want)
		}
	}
}

func TestParseAuthorization(t *testing.T) {
	nonce := "00112233445566778899aabbccddeeff"
	mac := strings.Repeat("ab", 32)
	good := "ES-HMAC-SHA256 client=app1, ts=1700000000, nonce=" + nonce + ", mac=" + mac
	for _, tc := range []struct {
		h    string
		want string // "" = valid
	}{
		{good, ""},
		{"es-hmac-sha256 client=app1,ts=1700000000,nonce=" + nonce + ",mac=" + mac, ""},
		{"ES-HMAC-SHA256  client=a.b_c:d@e-f ,  ts=0, nonce=" + nonce + ",\tmac=" + mac + "  ", ""},
		{"", "no credential"},
		{"Bearer abc", `scheme "Bearer"`},
		{"ES-HMAC-SHA256", `scheme "ES-HMAC-SHA256"`},
		{"ES-HMAC-SHA256 ts=1, client=a, nonce=" + nonce + ", mac=" + mac, "parameter 1 to be client="},
		{"ES-HMAC-SHA256 client=app1 ts=1700000000, nonce=" + nonce + ", mac=" + mac, `", ts="`},
		{"ES-HMAC-SHA256 client=app1, ts=1700000000, nonce=" + nonce, `", mac="`},
		{"ES-HMAC-SHA256 client=app1, ts=1700000000, nonce=" + nonce + ", mac=" + mac + ", x=1", "after the mac"},
		{"ES-HMAC-SHA256 client=, ts=1, nonce=" + nonce + ", mac=" + mac, "1 to 64 characters, got 0"},
		{"ES-HMAC-SHA256 client=" + strings.Repeat("a", 65) + ", ts=1, nonce=" + nonce + ", mac=" + mac, "got 65"},
		{`ES-HMAC-SHA256 client="app1", ts=1, nonce=` + nonce + ", mac=" + mac, "byte 0 is not one of"},
		{"ES-HMAC-SHA256 client=app1, ts=01, nonce=" + nonce + ", mac=" + mac, "without leading zeros"},
		{"ES-HMAC-SHA256 client=app1, ts=-1, nonce=" + nonce + ", mac=" + mac, "decimal digits only"},
		{"ES-HMAC-SHA256 client=app1, ts=1234567890123, nonce=" + nonce + ", mac=" + mac, "1 to 12 digits"},
		{"ES-HMAC-SHA256 client=app1, ts=1.5, nonce=" + nonce + ", mac=" + mac, "decimal digits only"},
		{"ES-HMAC-SHA256 client=app1, ts=1, nonce=" + nonce[:30] + ", mac=" + mac, "nonce: want 32 lowercase hex digits (16 bytes), got 30"},
		{"ES-HMAC-SHA256 client=app1, ts=1, nonce=" + strings.ToUpper(nonce) + ", mac=" + mac, "nonce: want lowercase hex"},
		{"ES-HMAC-SHA256 client=app1, ts=1, nonce=" + nonce + ", mac=" + mac + "00", "mac: want 64 lowercase hex digits (32 bytes), got 66"},
		{"ES-HMAC-SHA256 client=app1, ts=1, nonce=" + nonce + ", mac=" + strings.Repeat("zz", 32), "mac: want lowercase hex"},
		{good + strings.Repeat(" x", 60), "bytes, want at most 256"},
	} {
		c, err := ParseAuthorization(tc.h)
		if tc.want == "" {
			if err != nil {
				t.Errorf("ParseAuthorization(%q) = %v", tc.h, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAuthorization(%q) = %+v, %v\nwant an error containing %q", tc.h, c, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), mac) {
			t.Errorf("ParseAuthorization(%q): the error quotes the mac: %v", tc.h, err)
		}
	}
}

// FuzzParseAuthorization: whatever the header, the parser does not
// panic, and what it accepts prints back (String) to a header that parses
// to the same credential.
func FuzzParseAuthorization(f *testing.F) {
	nonce := "00112233445566778899aabbccddeeff"
	mac := strings.Repeat("ab", 32)
	for _, s := range []string{
		"ES-HMAC-SHA256 client=app1, ts=1700000000, nonce=" + nonce + ", mac=" + mac,
		"es-hmac-sha256 client=a,ts=0,nonce=" + nonce + ",mac=" + mac,
		"Bearer x", "", "ES-HMAC-SHA256 client=app1, ts=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		c, err := ParseAuthorization(h)
		if err != nil {
			if c != (Credential{}) {
				t.Fatalf("ParseAuthorization(%q) failed but returned %+v", h, c)
			}
			return
		}
		back, err := ParseAuthorization(c.String())
		if err != nil || back != c {
			t.Fatalf("ParseAuthorization(%q) = %+v; its String %q parses to %+v, %v", h, c, c.String(), back, err)
		}
	})
}

func TestSigner(t *testing.T) {
	v, secret, _ := loadVector(t)
	s, err := NewSigner(v.Audience, v.Client, secret)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return time.Unix(v.TS, 0) }
	s.rand = bytes.NewReader(mustHex(t, v.Nonce))
	h, err := s.Authorization(v.Method, v.Path, []byte(v.Body))
	if err != nil || h != v.Authorization {
		t.Fatalf("Signer.Authorization = %q, %v\nwant %q", h, err, v.Authorization)
	}
	// Fresh nonces by default.
	s2, _ := NewSigner(v.Audience, v.Client, secret)
	a, _ := s2.Authorization("POST", "/x", nil)
	b, _ := s2.Authorization("POST", "/x", nil)
	ca, _ := ParseAuthorization(a)
	cb, _ := ParseAuthorization(b)
	if ca.Nonce == cb.Nonce {
		t.Errorf("two requests share the nonce %x", ca.Nonce)
	}
	for _, out := range []string{s.String(), s.GoString(), fmtAll(s)} {
		if strings.Contains(out, v.Secret) || strings.Contains(out, string(secret)) {
			t.Errorf("the Signer prints its secret: %s", out)
		}
	}
	s.Destroy()
	if _, err := s.Authorization("POST", "/x", nil); err == nil {
		t.Error("a destroyed Signer still signs")
	}
	if _, err := NewSigner(v.Audience, v.Client, secret[:16]); err == nil {
		t.Error("NewSigner took a 16-byte secret")
	}
	if _, err := NewSigner("", v.Client, secret); err == nil {
		t.Error("NewSigner took an empty audience")
	}
	if _, err := NewSigner(v.Audience, "a b", secret); err == nil {
		t.Error("NewSigner took a client id with a space")
	}
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSecret(t *testing.T) {
	good := strings.Repeat("0f", 32)
	for _, tc := range []struct {
		in   string
		want string
	}{
		{good + "\n", ""},
		{good, ""},
		{strings.ToUpper(good) + "\r\n", ""},
		{good + "\n\n", "got 66 bytes"},
		{good[:62] + "\n", "got 63 bytes"},
		{good[:63] + "g\n", "at position 64"},
		{"", "got 0 bytes"},
	} {
		s, err := ParseSecret([]byte(tc.in))
		if tc.want == "" {
			if err != nil || len(s) != SecretSize || s[0] != 0x0f {
				t.Errorf("ParseSecret(%q) = %x, %v", tc.in, s, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSecret(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "0f0f") {
			t.Errorf("ParseSecret's error quotes the secret: %v", err)
		}
	}
}

func fmtAll(v any) string { return fmt.Sprintf("%v %+v %#v %s %q", v, v, v, v, v) }

// TestDocsShowTheVector: docs/protocol.md shows the test vector as it is.
func TestDocsShowTheVector(t *testing.T) {
	v, _, _ := loadVector(t)
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{v.Secret, v.Audience, v.Nonce, v.BodySHA256, v.MAC, "Authorization: " + v.Authorization, "`" + v.Body + "`"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/protocol.md does not show %q", want)
		}
	}
}

// TestPythonExampleMatchesVector: docs/examples/sign.py computes the test
// vector's header, so what the docs show a non-Go client is the scheme.
func TestPythonExampleMatchesVector(t *testing.T) {
	v, _, _ := loadVector(t)
	script := fmt.Sprintf(`import sys; sys.path.insert(0, "../../docs/examples"); import sign
print(sign.authorization(bytes.fromhex(%q), %q, %q, %q, %q, %q.encode(), ts=%d, nonce=%q))`,
		v.Secret, v.Audience, v.Client, v.Method, v.Path, v.Body, v.TS, v.Nonce)
	cmd := exec.Command("python3", "-c", script)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1") // nothing written into docs/
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != v.Authorization {
		t.Fatalf("sign.py computes\n%s\nwant\n%s", got, v.Authorization)
	}
}

func BenchmarkParseAuthorization(b *testing.B) {
	v, _, _ := loadVector(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAuthorization(v.Authorization); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is signerd's check of one credential: the MAC input and
// an HMAC-SHA256 per secret (a client has one, or two while rotating).
func BenchmarkVerify(b *testing.B) {
	v, secret, _ := loadVector(b)
	c, _ := ParseAuthorization(v.Authorization)
	other := bytes.Repeat([]byte{1}, SecretSize)
	for _, tc := range []struct {
		name    string
		secrets [][]byte
	}{{"one-secret", [][]byte{secret}}, {"two-secrets", [][]byte{other, secret}}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := Verify(&c, tc.secrets, v.Audience, v.Method, v.Path, []byte(v.Body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignerAuthorization is a client's cost per request: a nonce
// from crypto/rand and the MAC.
func BenchmarkSignerAuthorization(b *testing.B) {
	v, secret, _ := loadVector(b)
	s, _ := NewSigner(v.Audience, v.Client, secret)
	body := []byte(v.Body)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Authorization(v.Method, v.Path, body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHMACMatchesCryptoHMAC: the allocation-free HMAC is crypto/hmac's,
// for keys up to a block and messages of every length around the block
// boundaries.
func TestHMACMatchesCryptoHMAC(t *testing.T) {
	for _, keyLen := range []int{0, 1, 31, 32, 33, 63, 64} {
		for msgLen := range 300 {
			key := make([]byte, keyLen)
			msg := make([]byte, msgLen)
			rand.Read(key)
			rand.Read(msg)
			buf := append(make([]byte, blockSize), msg...)
			got := hmacSHA256(key, buf)
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			if want := m.Sum(nil); !bytes.Equal(got[:], want) {
				t.Fatalf("key %d bytes, message %d bytes: %x, crypto/hmac %x", keyLen, msgLen, got, want)
			}
			if !bytes.Equal(buf[blockSize:], msg) || !bytes.Equal(buf[:blockSize], make([]byte, blockSize)) {
				t.Fatalf("the message was changed, or the pad not zeroed")
			}
		}
	}
}

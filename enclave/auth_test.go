package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// testClient is a client of a policed test keyring.
type testClient struct {
	id      string
	secrets [][]byte
	rate    map[string]any // {"per_second", "burst"}, or nil
}

func newClient(id string, nSecrets int) testClient {
	c := testClient{id: id}
	for range nSecrets {
		s := make([]byte, signreq.SecretSize)
		rand.Read(s)
		c.secrets = append(c.secrets, s)
	}
	return c
}

// policedKey is a key of a policed test keyring with its policy (nil: the
// key has none).
type policedKey struct {
	key    testKey
	policy map[string]any
}

// policedRingJSON is the plaintext of a format 2 keyring with an
// audience, clients and key policies (docs/keyring.md).
func policedRingJSON(id, audience string, clients []testClient, keys ...policedKey) []byte {
	var kl []testKey
	for _, k := range keys {
		kl = append(kl, k.key)
	}
	var doc map[string]any
	if err := json.Unmarshal(keyringJSONv2(id, 1, kl...), &doc); err != nil {
		panic(err)
	}
	for i, k := range keys {
		if k.policy != nil {
			doc["keys"].([]any)[i].(map[string]any)["policy"] = k.policy
		}
	}
	var cl []map[string]any
	for _, c := range clients {
		var hexes []string
		for _, s := range c.secrets {
			hexes = append(hexes, hex.EncodeToString(s))
		}
		m := map[string]any{"id": c.id, "secrets": hexes}
		if c.rate != nil {
			m["rate"] = c.rate
		}
		cl = append(cl, m)
	}
	doc["audience"], doc["clients"] = audience, cl
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

// authRequest is an authenticated request as the shim forwards it, made
// with p (Body, Path and Method defaulted from keyID and body) and secret.
func authRequest(t *testing.T, secret []byte, p signreq.Params) *wire.AuthSignRequest {
	t.Helper()
	if p.Method == "" {
		p.Method = "POST"
	}
	if p.Timestamp == 0 {
		p.Timestamp = time.Now().Unix()
	}
	if p.Nonce == ([signreq.NonceSize]byte{}) {
		rand.Read(p.Nonce[:])
	}
	h, err := signreq.Authorization(secret, &p)
	if err != nil {
		t.Fatal(err)
	}
	return &wire.AuthSignRequest{Method: p.Method, Path: p.Path, Body: p.Body, Authorization: h}
}

func messageBody(msg string) []byte { return []byte(`{"message":"` + b64(msg) + `"}`) }

func b64(s string) string {
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.Encode([]byte(s))
	return strings.Trim(strings.TrimSpace(out.String()), `"`)
}

// authEnv is a signerd with a policed keyring (clients app1, with two
// secrets, and app2; keys k1 for app1, k2 for app2 digests only, nopol
// without a policy) and an open one (key open).
type authEnv struct {
	*env
	c          *wire.Conn
	app1, app2 testClient
	keys       map[string]testKey
	decisions  *captureRecorder
}

const testAudience = "payments-test"

// startRecorded is start, with rec as the daemon's recorder (set by the
// hook run calls before it serves).
func startRecorded(t *testing.T, rec recorder, extra ...string) *env {
	t.Helper()
	setTestOnlyDaemon(func(d *daemon) { d.rec = rec })
	t.Cleanup(func() { setTestOnlyDaemon(nil) }) // after the env's stop
	return start(t, extra...)
}

func startAuth(t *testing.T, extra ...string) *authEnv {
	t.Helper()
	rec := &captureRecorder{}
	e := startRecorded(t, rec, extra...)
	a := &authEnv{env: e, app1: newClient("app1", 2), app2: newClient("app2", 1), decisions: rec}
	a.c = a.dial()
	a.keys = map[string]testKey{
		"k1": newKey(t, "k1", keyring.Ed25519), "k2": newKey(t, "k2", keyring.ECDSAP256),
		"nopol": newKey(t, "nopol", keyring.Ed25519), "open": newKey(t, "open", keyring.Ed25519),
	}
	policed := policedRingJSON("pay", testAudience, []testClient{a.app1, a.app2},
		policedKey{a.keys["k1"], map[string]any{"clients": []string{"app1"}, "max_message_bytes": 64}},
		policedKey{a.keys["k2"], map[string]any{"clients": []string{"app2"}, "kinds": []string{"digest"}}},
		policedKey{a.keys["nopol"], nil})
	st := a.provision(a.c,
		wire.SealedKeyring{Name: "pay.age", Data: sealKeyring(t, a.identity.Recipient(), policed)},
		a.keyringFor("open.age", a.keys["open"]))
	if st.State != wire.StateReady {
		t.Fatalf("provisioning: %+v", st.Error)
	}
	return a
}

// sign sends r and returns the answer.
func (a *authEnv) sign(r *wire.AuthSignRequest) (*wire.SignResponse, error) {
	resp, err := a.c.Call(a.t.Context(), r)
	if err != nil {
		return nil, err
	}
	return resp.(*wire.SignResponse), nil
}

// captureRecorder keeps every decision; fail makes it refuse allowed ones.
type captureRecorder struct {
	mu   sync.Mutex
	all  []decision
	fail bool
}

func (r *captureRecorder) record(d decision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, d)
	if r.fail && d.Outcome == outcomeAllowed {
		return fmt.Errorf("%w: test", errAuditUnavailable)
	}
	return nil
}

func (r *captureRecorder) last(n int) []decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]decision(nil), r.all[len(r.all)-n:]...)
}

func (r *captureRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

// TestAuthSignPolicy: each client signs with its own key, is refused the
// other's naming the rule, and every refusal is its own code; each sign
// request is one decision.
func TestAuthSignPolicy(t *testing.T) {
	a := startAuth(t)
	k1Pub := publicKeyOf(t, a.c, "k1")
	for i, secret := range a.app1.secrets {
		msg := fmt.Sprintf("pay 10 to bob %d", i)
		resp, err := a.sign(authRequest(t, secret, signreq.Params{Audience: testAudience, Client: "app1", Path: "/v1/keys/k1/sign", Body: messageBody(msg)}))
		if err != nil {
			t.Fatalf("app1 (secret %d) on k1: %v", i+1, err)
		}
		if err := verify(t, k1Pub, []byte(msg), false, resp); err != nil {
			t.Fatalf("app1's signature: %v", err)
		}
	}
	digest := sha256.Sum256([]byte("tx"))
	digestBody := []byte(`{"digest":"` + b64(string(digest[:])) + `"}`)
	if _, err := a.sign(authRequest(t, a.app2.secrets[0], signreq.Params{Audience: testAudience, Client: "app2", Path: "/v1/keys/k2/sign", Body: digestBody})); err != nil {
		t.Fatalf("app2 digest on k2: %v", err)
	}
	// An authenticated client on a key of the open keyring.
	if _, err := a.sign(authRequest(t, a.app2.secrets[0], signreq.Params{Audience: testAudience, Client: "app2", Path: "/v1/keys/open/sign", Body: messageBody("x")})); err != nil {
		t.Fatalf("app2 on the open keyring's key: %v", err)
	}
	for _, tc := range []struct {
		name   string
		client testClient
		path   string
		body   []byte
		code   wire.Code
		want   string
	}{
		{"app1 on app2's key", a.app1, "/v1/keys/k2/sign", digestBody, wire.CodeForbidden, `policy.clients: client "app1" is not allowed`},
		{"app2 on app1's key", a.app2, "/v1/keys/k1/sign", messageBody("x"), wire.CodeForbidden, `policy.clients: client "app2"`},
		{"a message on a digest-only key", a.app2, "/v1/keys/k2/sign", messageBody("x"), wire.CodeForbidden, "policy.kinds"},
		{"too long a message", a.app1, "/v1/keys/k1/sign", messageBody(strings.Repeat("x", 65)), wire.CodeForbidden, "policy.max_message_bytes"},
		{"a key without a policy", a.app1, "/v1/keys/nopol/sign", messageBody("x"), wire.CodeForbidden, `key "nopol": policy:`},
		{"no such key", a.app1, "/v1/keys/nope/sign", messageBody("x"), wire.CodeUnknownKey, "nope"},
		{"a query", a.app1, "/v1/keys/k1/sign?x=1", messageBody("x"), wire.CodeInvalidRequest, "no query"},
		{"a bad body", a.app1, "/v1/keys/k1/sign", []byte(`{"message":1}`), wire.CodeInvalidRequest, "base64 string"},
	} {
		n := a.decisions.count()
		_, err := a.sign(authRequest(t, tc.client.secrets[0], signreq.Params{Audience: testAudience, Client: tc.client.id, Path: tc.path, Body: tc.body}))
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != tc.code || !strings.Contains(we.Message, tc.want) {
			t.Errorf("%s: %v, want %s containing %q", tc.name, err, tc.code, tc.want)
		}
		if got := a.decisions.count() - n; got != 1 {
			t.Errorf("%s: %d decisions recorded, want 1", tc.name, got)
		}
	}
	// A plain request: refused for a policed key, served for an open one.
	_, err := call[*wire.SignResponse](t.Context(), a.c, &wire.SignRequest{KeyID: "k1", Data: []byte("x")})
	if !errors.Is(err, wire.ErrUnauthenticated) || !strings.Contains(err.Error(), "declares clients") {
		t.Errorf("plain sign on a policed key: %v, want unauthenticated", err)
	}
	if _, err := call[*wire.SignResponse](t.Context(), a.c, &wire.SignRequest{KeyID: "open", Data: []byte("x")}); err != nil {
		t.Errorf("plain sign on the open keyring's key: %v", err)
	}
	st, err := call[*wire.Status](t.Context(), a.c, &wire.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if au := st.Auth; au == nil || !au.Policed || au.Clients != 2 || len(au.Audiences) != 1 || au.Audiences[0] != testAudience ||
		!au.ClockOK || au.Forbidden != 5 || au.Unauthenticated != 1 || au.NonceCacheSize < 12 || au.NonceCacheCapacity != defaultNonceCapacity {
		t.Errorf("status auth = %+v", st.Auth)
	}
	// The decisions of the first requests: who, which key, what.
	d := a.decisions.all[0]
	sum := sha256.Sum256([]byte("pay 10 to bob 0"))
	if d.Client != "app1" || d.KeyID != "k1" || d.Kind != "message" || d.Digest != sum || d.Outcome != outcomeAllowed {
		t.Errorf("first decision = %+v", d)
	}
	if d := a.decisions.all[2]; d.Kind != "digest" || d.Digest != sha256.Sum256(digest[:]) || d.Client != "app2" {
		t.Errorf("digest decision = %+v", d)
	}
}

func publicKeyOf(t *testing.T, c *wire.Conn, id string) any {
	t.Helper()
	for _, k := range keyList(t, c).Keys {
		if k.ID == id {
			return publicKey(t, k)
		}
	}
	t.Fatalf("no key %q listed", id)
	return nil
}

// TestAuthRefusals: each field the MAC covers changed after signing, a
// stale or future timestamp, one from before signerd started, a replayed
// nonce, an unknown client, a wrong secret, a malformed header: each is
// unauthenticated, saying why, and signs nothing.
func TestAuthRefusals(t *testing.T) {
	a := startAuth(t)
	secret := a.app1.secrets[0]
	good := func() signreq.Params {
		return signreq.Params{Audience: testAudience, Client: "app1", Path: "/v1/keys/k1/sign", Body: messageBody("x")}
	}
	now := time.Now().Unix()
	tamper := func(edit func(r *wire.AuthSignRequest)) *wire.AuthSignRequest {
		r := authRequest(t, secret, good())
		edit(r)
		return r
	}
	// cred changes one field of the header after the MAC was computed.
	cred := func(edit func(c *signreq.Credential)) *wire.AuthSignRequest {
		return tamper(func(r *wire.AuthSignRequest) {
			c, err := signreq.ParseAuthorization(r.Authorization)
			if err != nil {
				t.Fatal(err)
			}
			edit(&c)
			r.Authorization = c.String()
		})
	}
	replayed := authRequest(t, secret, good())
	if _, err := a.sign(replayed); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    *wire.AuthSignRequest
		want string
	}{
		{"body", tamper(func(r *wire.AuthSignRequest) { r.Body = messageBody("y") }), "mac does not match"},
		{"path", tamper(func(r *wire.AuthSignRequest) { r.Path = "/v1/keys/k2/sign" }), "mac does not match"},
		{"method", tamper(func(r *wire.AuthSignRequest) { r.Method = "PUT" }), "mac does not match"},
		{"client", cred(func(c *signreq.Credential) { c.Client = "app2" }), "mac does not match"},
		{"timestamp", cred(func(c *signreq.Credential) { c.Timestamp++ }), "mac does not match"},
		{"nonce", cred(func(c *signreq.Credential) { c.Nonce[0] ^= 1 }), "mac does not match"},
		{"mac", cred(func(c *signreq.Credential) { c.MAC[31] ^= 1 }), "mac does not match"},
		{"audience", authRequest(t, secret, func() signreq.Params { p := good(); p.Audience = "payments-prod"; return p }()), "mac does not match"},
		{"wrong secret", authRequest(t, a.app2.secrets[0], good()), "mac does not match"},
		{"stale", authRequest(t, secret, func() signreq.Params { p := good(); p.Timestamp = now - 61; return p }()), "want within 60 s"},
		{"future", authRequest(t, secret, func() signreq.Params { p := good(); p.Timestamp = now + 61; return p }()), "want within 60 s"},
		{"before boot", authRequest(t, secret, func() signreq.Params { p := good(); p.Timestamp = now - 50; return p }()), "is before signerd started"},
		{"replayed", replayed, "nonce replayed"},
		{"unknown client", authRequest(t, secret, func() signreq.Params { p := good(); p.Client = "app9"; return p }()), `client "app9" is not declared`},
		{"malformed", tamper(func(r *wire.AuthSignRequest) { r.Authorization = "Bearer x" }), `scheme "Bearer"`},
		{"missing", tamper(func(r *wire.AuthSignRequest) { r.Authorization = "" }), "no credential"},
	} {
		n := a.decisions.count()
		_, err := a.sign(tc.r)
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeUnauthenticated || !strings.Contains(we.Message, tc.want) {
			t.Errorf("%s: %v, want unauthenticated containing %q", tc.name, err, tc.want)
		}
		if d := a.decisions.last(1); a.decisions.count()-n != 1 || d[0].Outcome != outcomeUnauthenticated {
			t.Errorf("%s: %d decisions, last %+v; want one, unauthenticated", tc.name, a.decisions.count()-n, d)
		}
	}
}

// TestAuthRateLimit: a key limited to 5/s with a burst of 5 serves the
// burst, then answers rate_limited with the wait; the client's own rate
// applies across keys.
func TestAuthRateLimit(t *testing.T) {
	e := start(t)
	c := e.dial()
	cl := newClient("app1", 1)
	cl.rate = map[string]any{"per_second": 1, "burst": 8}
	k := newKey(t, "k", keyring.Ed25519)
	k2 := newKey(t, "k2", keyring.Ed25519)
	ring := policedRingJSON("r", testAudience, []testClient{cl},
		policedKey{k, map[string]any{"clients": []string{"app1"}, "rate": map[string]any{"per_second": 5, "burst": 5}}},
		policedKey{k2, map[string]any{"clients": []string{"app1"}}})
	if st := e.provision(c, wire.SealedKeyring{Name: "r.age", Data: sealKeyring(t, e.identity.Recipient(), ring)}); st.State != wire.StateReady {
		t.Fatalf("provisioning: %+v", st.Error)
	}
	served, limited := 0, 0
	began := time.Now()
	for range 10 {
		_, err := c.Call(t.Context(), authRequest(t, cl.secrets[0], signreq.Params{Audience: testAudience, Client: "app1", Path: "/v1/keys/k/sign", Body: messageBody("m")}))
		var we *wire.Error
		switch {
		case err == nil:
			served++
		case errors.As(err, &we) && we.Code == wire.CodeRateLimited:
			limited++
			if we.RetryAfterMillis == 0 || we.RetryAfterMillis > 200 || !strings.Contains(we.Message, `key "k": policy.rate 5/s,burst=5 is spent`) {
				t.Errorf("rate_limited answer %+v", we)
			}
		default:
			t.Fatal(err)
		}
	}
	// The burst, and a token for each 200 ms the requests took.
	if most := 5 + int(time.Since(began)/(200*time.Millisecond)); served < 5 || served > most || limited != 10-served {
		t.Errorf("10 requests at once: %d served, %d limited; want the burst of 5 (at most %d with the tokens that came back)", served, limited, most)
	}
	// The client's burst of 8 is spent by the key's 5 (or 6) and the next
	// ones on k2.
	var clientLimited *wire.Error
	for range 4 {
		_, err := c.Call(t.Context(), authRequest(t, cl.secrets[0], signreq.Params{Audience: testAudience, Client: "app1", Path: "/v1/keys/k2/sign", Body: messageBody("m")}))
		if err != nil && !errors.As(err, &clientLimited) {
			t.Fatal(err)
		}
	}
	if clientLimited == nil || clientLimited.Code != wire.CodeRateLimited || !strings.Contains(clientLimited.Message, `client "app1": rate 1/s,burst=8`) {
		t.Errorf("client over its burst on another key: %+v", clientLimited)
	}
}

// TestRequireAuth: with --require-auth a keyring without clients is
// refused at provisioning, naming it, and the pin is in status and in
// every attestation document's user_data.
func TestRequireAuth(t *testing.T) {
	e := start(t, "--require-auth")
	c := e.dial()
	cl := newClient("app1", 1)
	k, open := newKey(t, "k", keyring.Ed25519), newKey(t, "open", keyring.Ed25519)
	policed := wire.SealedKeyring{Name: "pay.age", Data: sealKeyring(t, e.identity.Recipient(),
		policedRingJSON("pay", testAudience, []testClient{cl}, policedKey{k, map[string]any{"clients": []string{"app1"}}}))}
	st := e.provision(c, policed, e.keyringFor("open.age", open))
	if st.State != wire.StateFailed || st.Error == nil || st.Error.Step != stepRequireAuth || !strings.Contains(st.Error.Message, `["open.age"] declare no clients`) {
		t.Fatalf("an open keyring under --require-auth: %+v %+v", st, st.Error)
	}
	if st.Pins == nil || !st.Pins.RequireAuth || st.Auth == nil || !st.Auth.RequireAuth {
		t.Errorf("status does not report --require-auth: pins %+v auth %+v", st.Pins, st.Auth)
	}
	if st := e.provision(c, policed); st.State != wire.StateReady {
		t.Fatalf("a policed keyring alone: %+v", st.Error)
	}
	resp, err := c.Call(t.Context(), &wire.AttestRequest{Nonce: []byte("n")})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := attestation.Parse(resp.(*wire.AttestResponse).Document)
	if err != nil {
		t.Fatal(err)
	}
	ud, err := doc.SignerdUserData()
	if err != nil || !ud.Pins.RequireAuth {
		t.Errorf("attested pins %+v, %v; want require_auth", ud.Pins, err)
	}
}

// TestAuthClockDisagrees: while signerd's clock and the NSM's disagree by
// more than the window, authenticated requests are auth_unavailable.
func TestAuthClockDisagrees(t *testing.T) {
	testOnlySimNow = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	t.Cleanup(func() { testOnlySimNow = nil })
	a := startAuth(t)
	_, err := a.sign(authRequest(t, a.app1.secrets[0], signreq.Params{Audience: testAudience, Client: "app1", Path: "/v1/keys/k1/sign", Body: messageBody("x")}))
	if !errors.Is(err, wire.ErrAuthUnavailable) || !strings.Contains(err.Error(), "not confirmed by the NSM's") {
		t.Fatalf("clock 2 min off: %v, want auth_unavailable", err)
	}
	st, _ := call[*wire.Status](t.Context(), a.c, &wire.StatusRequest{})
	if st.Auth == nil || st.Auth.ClockOK || st.Auth.ClockSkewMillis < 119_000 || st.Auth.AuthUnavailable != 1 {
		t.Errorf("status auth = %+v", st.Auth)
	}
	if !strings.Contains(a.logs.String(), "disagree by more than 1m0s") {
		t.Errorf("no error logged about the clocks")
	}
}

// TestNonceCacheFull: a full nonce cache refuses (auth_unavailable)
// rather than forget.
func TestNonceCacheFull(t *testing.T) {
	a := startAuth(t, "--nonce-cache", "2")
	for i := range 3 {
		_, err := a.sign(authRequest(t, a.app1.secrets[0], signreq.Params{Audience: testAudience, Client: "app1", Path: "/v1/keys/k1/sign", Body: messageBody("x")}))
		switch {
		case i < 2 && err != nil:
			t.Fatalf("request %d: %v", i, err)
		case i == 2 && (!errors.Is(err, wire.ErrAuthUnavailable) || !strings.Contains(err.Error(), "nonce cache is full (2 of 2")):
			t.Fatalf("third request in a cache of 2: %v", err)
		}
	}
	// More refusals, one warning.
	a.sign(authRequest(t, a.app1.secrets[0], signreq.Params{Audience: testAudience, Client: "app1", Path: "/v1/keys/k1/sign", Body: messageBody("x")}))
	if n := strings.Count(a.logs.String(), "the nonce cache is full"); n != 1 {
		t.Errorf("%d warnings about the full nonce cache, want 1", n)
	}
}

// TestAuditUnavailableRefuses: an allowed request the recorder cannot
// record is refused, and nothing is signed.
func TestAuditUnavailableRefuses(t *testing.T) {
	a := startAuth(t)
	a.decisions.mu.Lock()
	a.decisions.fail = true
	a.decisions.mu.Unlock()
	for _, send := range []func() error{
		func() error {
			_, err := a.sign(authRequest(t, a.app1.secrets[0], signreq.Params{Audience: testAudience, Client: "app1", Path: "/v1/keys/k1/sign", Body: messageBody("x")}))
			return err
		},
		func() error {
			_, err := call[*wire.SignResponse](t.Context(), a.c, &wire.SignRequest{KeyID: "open", Data: []byte("x")})
			return err
		},
	} {
		if err := send(); err == nil {
			t.Error("a request was signed that the audit trail could not record")
		}
	}
}

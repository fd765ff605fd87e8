package client_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/fakeenclave"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
	"github.com/enclave-signer/enclave-signer/pkg/client"
)

// newClient starts a fake enclave (provisioned when ready) and a Client
// for it.
func newClient(t *testing.T, ready bool, opts *client.Options) (*fakeenclave.Enclave, *client.Client) {
	t.Helper()
	fe := fakeenclave.Start(t)
	if ready {
		if err := provision(t.Context(), fe); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(fe.Addr.String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return fe, c
}

func TestNewAddress(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		wantErr string // "" for none
	}{
		{"vsock://16:5005", ""},
		{"unix:///run/signerd.sock", ""},
		{"tcp://127.0.0.1:5005", ""},
		{"", "invalid address"},
		{"127.0.0.1:5005", "invalid address"},
		{"http://127.0.0.1:5005", "invalid address"},
		{"vsock://16", "invalid address"},
	} {
		c, err := client.New(tc.addr, nil)
		if tc.wantErr == "" {
			if err != nil || c.Addr() != tc.addr {
				t.Errorf("New(%q) = %v, %v; want a client for it", tc.addr, c, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "want vsock://CID:PORT") {
			t.Errorf("New(%q) error = %v, want %q saying the forms accepted", tc.addr, err, tc.wantErr)
		}
	}
}

func TestCalls(t *testing.T) {
	fe, c := newClient(t, true, nil)
	ctx := t.Context()

	st, err := c.Status(ctx)
	if err != nil || st.State != client.StateReady || st.Keys != 3 || st.Attestation != client.AttestationSimulated {
		t.Fatalf("Status = %+v, %v; want ready, 3 keys, simulated", st, err)
	}
	ks, err := c.KeySet(ctx)
	if err != nil || len(ks.Keys) != 3 || len(ks.Digest) != 48 {
		t.Fatalf("KeySet = %+v, %v; want 3 keys and a 48-byte digest", ks, err)
	}
	if k := ks.Keys[2]; k.ID != fakeenclave.KeySecp256k1 || k.EthereumAddress != fakeenclave.EthereumAddress {
		t.Fatalf("key 2 = %+v, want the secp256k1 key with its address", k)
	}
	msg := []byte("hello")
	sig, err := c.SignMessage(ctx, fakeenclave.KeyEd25519, msg)
	if err != nil || sig.KeyID != fakeenclave.KeyEd25519 || !ed25519.Verify(fe.Ed25519, msg, sig.Signature) {
		t.Fatalf("SignMessage(ed) = %+v, %v; want a valid ed25519 signature", sig, err)
	}
	d := sha256.Sum256(msg)
	sig, err = c.SignDigest(ctx, fakeenclave.KeyP256, d[:])
	if err != nil || !ecdsa.VerifyASN1(fe.P256, d[:], sig.Signature) {
		t.Fatalf("SignDigest(p256) = %+v, %v; want a valid ECDSA signature", sig, err)
	}
	sig, err = c.SignDigest(ctx, fakeenclave.KeySecp256k1, d[:])
	if err != nil || sig.RecoveryID == nil || len(sig.RSV) != 65 {
		t.Fatalf("SignDigest(eth) = %+v, %v; want a recovery id and r‖s‖v", sig, err)
	}
	doc, err := c.Attest(ctx, []byte("nonce"), []byte("ud"))
	if err != nil || !bytes.Contains(doc, []byte("nonce=nonce")) || !bytes.Contains(doc, []byte("user_data=ud")) {
		t.Fatalf("Attest = %q, %v; want the fake's document with the nonce and user data", doc, err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// The enclave's refusals come back as *client.Error matching the Err*
// values, with the enclave's message, and nothing of the wire types.
func TestRefusals(t *testing.T) {
	_, waiting := newClient(t, false, nil)
	_, ready := newClient(t, true, nil)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		call func() error
		want *client.Error
		msg  string // in the error's text
	}{
		{"keys while waiting", func() error { _, err := waiting.Keys(ctx); return err }, client.ErrNotReady, "no keyring loaded"},
		{"sign while waiting", func() error { _, err := waiting.SignMessage(ctx, "ed", nil); return err }, client.ErrNotReady, "not_ready"},
		{"unknown key", func() error { _, err := ready.SignMessage(ctx, "nope", nil); return err }, client.ErrUnknownKey, "nope"},
		{"digest for ed25519", func() error { _, err := ready.SignDigest(ctx, "ed", make([]byte, 32)); return err }, client.ErrDigestNotAllowed, "digest_not_allowed"},
		{"short digest", func() error { _, err := ready.SignDigest(ctx, "p256", make([]byte, 5)); return err }, client.ErrInvalidDigest, "invalid_digest"},
		{"internal", func() error { _, err := ready.SignMessage(ctx, fakeenclave.KeyInternalError, nil); return err }, client.ErrInternal, "internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error = %v, want one matching %v and saying %q", err, tc.want, tc.msg)
			}
			for _, other := range []*client.Error{client.ErrNotReady, client.ErrUnknownKey, client.ErrDigestNotAllowed, client.ErrInvalidDigest, client.ErrInternal} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
			var e *client.Error
			if !errors.As(err, &e) || e.Code != tc.want.Code {
				t.Fatalf("errors.As(*client.Error) = %+v, want code %s", e, tc.want.Code)
			}
			if _, ok := errors.AsType[*wire.Error](err); ok {
				t.Errorf("the error %v still carries a *wire.Error", err)
			}
		})
	}
}

// With Credentials every sign request is an authenticated one, and the
// enclave's rate limit comes back with its RetryAfter.
func TestCredentialsAndRateLimit(t *testing.T) {
	secret := bytes.Repeat([]byte{0x5c}, 32)
	fe, c := newClient(t, true, &client.Options{Credentials: &client.Credentials{Client: "app1", Secret: secret, Audience: "payments"}})
	clear(secret) // the Client keeps its own copy
	ctx := t.Context()
	if _, err := c.SignMessage(ctx, "ed", []byte("m")); err != nil {
		t.Fatal(err)
	}
	got := fe.AuthSigns()
	if len(got) != 1 || got[0].Path != "/v1/keys/ed/sign" || !strings.Contains(got[0].Authorization, "app1") {
		t.Fatalf("the enclave got %+v, want one auth_sign_request of client app1 for key ed", got)
	}

	fe.SetAuthError(&wire.Error{Code: wire.CodeRateLimited, Message: "client app1: rate spent", RetryAfterMillis: 1500})
	_, err := c.SignMessage(ctx, "ed", []byte("m"))
	var e *client.Error
	if !errors.Is(err, client.ErrRateLimited) || !errors.As(err, &e) || e.RetryAfter != 1500*time.Millisecond {
		t.Fatalf("error = %v (%+v), want rate_limited with RetryAfter 1.5s", err, e)
	}
	fe.SetAuthError(&wire.Error{Code: wire.CodeUnauthenticated, Message: "unknown client"})
	if _, err := c.SignMessage(ctx, "ed", []byte("m")); !errors.Is(err, client.ErrUnauthenticated) || errors.Is(err, client.ErrRateLimited) {
		t.Fatalf("error = %v, want unauthenticated only", err)
	}
	if strings.Contains(c.Addr(), "5c5c") {
		t.Fatal("the secret leaked")
	}
}

// A gone enclave, a closed client and an ended context each give the
// error that says so.
func TestUnavailableClosedDeadline(t *testing.T) {
	fe, c := newClient(t, true, &client.Options{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	ctx := t.Context()

	fe.HoldSigns()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := c.SignMessage(short, "ed", []byte("m"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("sign past its deadline: error = %v, want context.DeadlineExceeded", err)
	}
	fe.ReleaseSigns()

	fe.Stop()
	var ue *client.UnavailableError
	_, err = c.Status(ctx)
	for i := 0; i < 50 && !errors.Is(err, client.ErrUnavailable); i++ {
		time.Sleep(10 * time.Millisecond) // the loss reaches the client
		_, err = c.Status(ctx)
	}
	if !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &ue) || ue.Addr != fe.Addr.String() || ue.Op != "status" {
		t.Fatalf("status of a stopped enclave: error = %v (%+v), want an UnavailableError for %s", err, ue, fe.Addr)
	}

	c.Close()
	if _, err := c.Keys(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Keys after Close: error = %v, want ErrClosed", err)
	}
}

// A refused connection (the enclave serves its maximum of unprivileged
// connections) is unavailable and says why, with the package's own value.
func TestTooManyConnections(t *testing.T) {
	err := client.ConvertForTest(&wireclient.UnavailableError{Addr: "vsock://16:5005", Op: "sign",
		Err: wire.NewError(wire.CodeTooManyConnections, "at most 64")})
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, client.ErrTooManyConnections) || !strings.Contains(err.Error(), "at most 64") {
		t.Fatalf("error = %v, want unavailable and too_many_connections with the limit", err)
	}
}

// The defaults are the internal client's.
func TestDefaults(t *testing.T) {
	if client.DefaultConns != wireclient.DefaultConns || client.DefaultDialTimeout != wireclient.DefaultDialTimeout ||
		client.DefaultMinBackoff != wireclient.DefaultMinBackoff || client.DefaultMaxBackoff != wireclient.DefaultMaxBackoff {
		t.Fatal("pkg/client's defaults differ from internal/wireclient's")
	}
}

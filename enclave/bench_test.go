package main

import (
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// BenchmarkSign compares the daemon's signing path (ServeWire: type switch,
// atomic load of the set, lookup, signature, response) with signing on the
// key directly, per algorithm.
func BenchmarkSign(b *testing.B) {
	id, _ := age.GenerateX25519Identity()
	for _, alg := range keyring.Algorithms() {
		keyFile := identityFile(id)
		ident, err := keyring.ParseIdentity(keyFile)
		if err != nil {
			b.Fatal(err)
		}
		k := newKey(b, "k", alg)
		var buf []byte
		w := &sliceWriter{&buf}
		enc, _ := age.Encrypt(w, id.Recipient())
		enc.Write(keyringJSON(k))
		enc.Close()
		set, err := keyring.Load(ident, keyring.File{Name: "k.age", Ciphertext: buf})
		if err != nil {
			b.Fatal(err)
		}
		d := &daemon{log: slog.New(slog.DiscardHandler)}
		d.set.Store(set)
		msg := make([]byte, 64)
		rand.Read(msg)
		req := &wire.SignRequest{KeyID: "k", Data: msg}
		b.Run(string(alg)+"/daemon", func(b *testing.B) {
			for b.Loop() {
				if _, err := d.ServeWire(b.Context(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The same with the audit trail, drained by a reader as the shim
		// drains it (the records encoded, as for the wire): what the
		// recorder adds to a signature.
		b.Run(string(alg)+"/daemon+audit", func(b *testing.B) {
			da := &daemon{log: slog.New(slog.DiscardHandler)}
			da.set.Store(set)
			stop := attachAudit(b, da)
			defer stop()
			for b.Loop() {
				if _, err := da.ServeWire(b.Context(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
		key, _ := set.Key("k")
		b.Run(string(alg)+"/key", func(b *testing.B) {
			for b.Loop() {
				if _, err := key.SignMessage(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		set.Destroy()
	}
}

// attachAudit gives d an audit trail and drains it until the returned
// function is called.
func attachAudit(b *testing.B, d *daemon) func() {
	a, err := newAuditTrail(defaultAuditBuffer, "", nil)
	if err != nil {
		b.Fatal(err)
	}
	d.audit, d.rec = a, a
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var key []byte
		var cursor uint64
		for {
			select {
			case <-stop:
				return
			default:
			}
			bt, err := a.read(&wire.AuditReadRequest{AuditKey: key, Cursor: cursor})
			if err != nil {
				panic(err)
			}
			key, cursor = bt.AuditKey, bt.Next
			if !bt.More {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		a.close()
	}
}

type sliceWriter struct{ b *[]byte }

func (w *sliceWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

// authBenchDaemon is a daemon holding set, ready for authenticated
// requests (the fields newDaemon sets).
func authBenchDaemon(set *keyring.Set) *daemon {
	d := &daemon{log: slog.New(slog.DiscardHandler), state: wire.StateReady, rec: nopRecorder{}, now: time.Now,
		nonces: newNonceCache(int64(authWindow/time.Second), defaultNonceCapacity)}
	d.clock.ok.Store(true)
	d.limits.Store(newLimiters(set, nil, time.Now()))
	d.set.Store(set)
	return d
}

// benchPolicedSet is a set of one ed25519 key "k" in a keyring with one
// client, app1, allowed on it; it returns the client's secret.
func benchPolicedSet(b *testing.B, alg keyring.Algorithm) (*keyring.Set, []byte) {
	b.Helper()
	id, _ := age.GenerateX25519Identity()
	ident, err := keyring.ParseIdentity(identityFile(id))
	if err != nil {
		b.Fatal(err)
	}
	cl := newClient("app1", 1)
	var ct []byte
	enc, _ := age.Encrypt(&sliceWriter{&ct}, id.Recipient())
	enc.Write(policedRingJSON("r", testAudience, []testClient{cl}, policedKey{newKey(b, "k", alg), map[string]any{"clients": []string{"app1"}}}))
	enc.Close()
	set, err := keyring.Load(ident, keyring.File{Name: "k.age", Ciphertext: ct})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(set.Destroy)
	return set, cl.secrets[0]
}

// BenchmarkAuthSign is what authentication adds to signerd's own work per
// request: the daemon's ServeWire for a plain sign_request, and for an
// auth_sign_request of the same message (header, clock and window, the
// client, the MAC, the nonce, path and body, the policy, the rates).
// "auth" makes each request in the loop, as a client would (a fresh nonce
// and MAC: signreq's BenchmarkSignerAuthorization is that part alone);
// "client" is that making alone, so signerd's share is auth − client.
func BenchmarkAuthSign(b *testing.B) {
	set, secret := benchPolicedSet(b, keyring.Ed25519)
	d := authBenchDaemon(set)
	msg := make([]byte, 32)
	rand.Read(msg)
	b.Run("plain", func(b *testing.B) {
		// A plain request for an open key: the same set, unpoliced.
		open, _ := benchOpenSet(b)
		dp := authBenchDaemon(open)
		req := &wire.SignRequest{KeyID: "k", Data: msg}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := dp.ServeWire(b.Context(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
	body := []byte(`{"message":"` + base64.StdEncoding.EncodeToString(msg) + `"}`)
	s, err := signreq.NewSigner(testAudience, "app1", secret)
	if err != nil {
		b.Fatal(err)
	}
	request := func() *wire.AuthSignRequest {
		h, err := s.Authorization("POST", "/v1/keys/k/sign", body)
		if err != nil {
			b.Fatal(err)
		}
		return &wire.AuthSignRequest{Method: "POST", Path: "/v1/keys/k/sign", Body: body, Authorization: h}
	}
	b.Run("auth", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.ServeWire(b.Context(), request()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			request()
		}
	})
}

// benchOpenSet is benchPolicedSet's key in an open keyring.
func benchOpenSet(b *testing.B) (*keyring.Set, []byte) {
	b.Helper()
	id, _ := age.GenerateX25519Identity()
	ident, _ := keyring.ParseIdentity(identityFile(id))
	var ct []byte
	enc, _ := age.Encrypt(&sliceWriter{&ct}, id.Recipient())
	enc.Write(keyringJSON(newKey(b, "k", keyring.Ed25519)))
	enc.Close()
	set, err := keyring.Load(ident, keyring.File{Name: "k.age", Ciphertext: ct})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(set.Destroy)
	return set, nil
}

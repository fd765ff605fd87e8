package main

import (
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/enclave-signer/enclave-signer/pkg/keyring"
	"github.com/enclave-signer/enclave-signer/pkg/wire"
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

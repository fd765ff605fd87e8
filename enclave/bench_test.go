package main

import (
	"crypto/rand"
	"log/slog"
	"testing"

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

type sliceWriter struct{ b *[]byte }

func (w *sliceWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

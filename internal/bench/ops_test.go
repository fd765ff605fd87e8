package bench

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/enclave-signer/enclave-signer/internal/fakeenclave"
	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

func TestNewKeySigns(t *testing.T) {
	msg := []byte("bench message")
	for _, alg := range keyring.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			key, destroy, err := NewKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			if key.Algorithm() != alg {
				t.Fatalf("key algorithm %s, want %s", key.Algorithm(), alg)
			}
			sig, err := key.SignMessage(msg)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(msg)
			var ok bool
			switch pub := key.Public().(type) {
			case ed25519.PublicKey:
				ok = ed25519.Verify(pub, msg, sig.Signature)
			case *ecdsa.PublicKey:
				ok = ecdsa.VerifyASN1(pub, h[:], sig.Signature)
			case *secp256k1.PublicKey:
				s, err := secpecdsa.ParseDERSignature(sig.Signature)
				ok = err == nil && s.Verify(h[:], pub)
			}
			if !ok {
				t.Fatalf("the %s signature does not verify", alg)
			}
			if err := SignInProcess(key, msg)(t.Context(), 0); err != nil {
				t.Fatalf("SignInProcess: %v", err)
			}
			destroy()
			if err := SignInProcess(key, msg)(t.Context(), 0); !errors.Is(err, keyring.ErrDestroyed) {
				t.Fatalf("signing after destroy: %v, want ErrDestroyed", err)
			}
		})
	}
	if _, _, err := NewKey("rsa"); err == nil {
		t.Error("NewKey(rsa): no error")
	}
}

func TestSignWire(t *testing.T) {
	fe := fakeenclave.Start(t)
	fe.SetState(wire.StateReady, nil)
	c := wireclient.New(fe.Addr, nil)
	defer c.Close()
	if err := SignWire(c, fakeenclave.KeyEd25519, []byte("m"))(t.Context(), 0); err != nil {
		t.Fatalf("sign with %s: %v", fakeenclave.KeyEd25519, err)
	}
	err := SignWire(c, "no-such-key", []byte("m"))(t.Context(), 0)
	if !errors.Is(err, wire.ErrUnknownKey) {
		t.Fatalf("sign with an unknown key: %v, want ErrUnknownKey", err)
	}

	// A short closed loop through it.
	res, err := Run(t.Context(), Options{Concurrency: 8, Duration: 100 * time.Millisecond}, SignWire(c, fakeenclave.KeyP256, []byte("m")))
	if err != nil || res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("run: %+v, %v", res, err)
	}
}

func TestCheckEndpoint(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8080", "127.0.0.1:8080", "localhost:1", "tcp://[::1]:80", "unix:///tmp/shim.sock", "http://127.0.0.2:9"} {
		if err := CheckEndpoint(ok); err != nil {
			t.Errorf("CheckEndpoint(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:8080", "example.com:80", "http://[2001:db8::1]:80", "http://"} {
		if err := CheckEndpoint(bad); err == nil {
			t.Errorf("CheckEndpoint(%q): no error", bad)
		}
	}
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"unix:///tmp/s.sock", true}, {"vsock://16:5005", true}, {"tcp://127.0.0.1:5005", true},
		{"tcp://localhost:5005", true}, {"tcp://192.168.1.1:5005", false},
	} {
		a, err := transport.ParseAddr(c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckEnclaveAddr(a); (err == nil) != c.ok {
			t.Errorf("CheckEnclaveAddr(%s): %v, want ok=%v", c.addr, err, c.ok)
		} else if err != nil && !strings.Contains(err.Error(), "loopback") {
			t.Errorf("CheckEnclaveAddr(%s): %v does not say what is accepted", c.addr, err)
		}
	}
}

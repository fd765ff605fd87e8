package client_test

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/enclave-signer/enclave-signer/pkg/client"
)

// Sign a message with an enclave's ed25519 key and check the signature
// with the key's public key. (On the parent instance the address is the
// enclave's vsock address, e.g. "vsock://16:5005"; here a development
// enclave listens on a unix socket.)
func Example() {
	addr, stop := exampleEnclave()
	defer stop()

	c, err := client.New(addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	keys, err := c.Keys(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range keys {
		fmt.Println(k.ID, k.Algorithm)
	}

	msg := []byte("pay 10 to alice")
	sig, err := c.SignMessage(ctx, "ed", msg)
	if err != nil {
		log.Fatal(err)
	}
	block, _ := pem.Decode([]byte(keys[0].PublicKeyPEM))
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sig.Algorithm, len(sig.Signature), "bytes, valid:", ed25519.Verify(pub.(ed25519.PublicKey), msg, sig.Signature))
	// Output:
	// ed ed25519
	// p256 ecdsa-p256
	// eth ecdsa-secp256k1
	// ed25519 64 bytes, valid: true
}

// The enclave's refusals match the package's Err* values.
func ExampleClient_SignDigest_errors() {
	addr, stop := exampleEnclave()
	defer stop()
	c, err := client.New(addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	_, err = c.SignDigest(ctx, "ed", make([]byte, 32))
	fmt.Println(errors.Is(err, client.ErrDigestNotAllowed))
	_, err = c.SignDigest(ctx, "no-such-key", make([]byte, 32))
	fmt.Println(errors.Is(err, client.ErrUnknownKey))
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code)
	}
	// Output:
	// true
	// true
	// unknown_key
}

// Status reports the enclave's state; a development enclave's attestation
// is simulated.
func ExampleClient_Status() {
	addr, stop := exampleEnclave()
	defer stop()
	c, err := client.New(addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.State, st.Keys)
	// Output:
	// ready 3
}

// New checks the address's form, and dials nothing.
func ExampleNew() {
	_, err := client.New("vsock://16:5005", nil)
	fmt.Println(err)
	_, err = client.New("localhost:5005", nil)
	fmt.Println(err != nil)
	// Output:
	// <nil>
	// true
}

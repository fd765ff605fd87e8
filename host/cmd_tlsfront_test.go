package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	enclavekms "github.com/enclave-signer/enclave-signer/internal/kms"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/transport"
)

// TestTLSFrontEnclaveDecrypt is the enclave's route to KMS under signer dev,
// through the real commands: the enclave's own KMS client, in its
// production configuration but for the socket and one extra root, dials the
// unix socket of signer tls-front (SNI kms.us-east-1.amazonaws.com, dev CA),
// which relays to signer kms-emulator; the emulator verifies the simulated
// attestation document and answers with a CMS envelope to the attested key.
func TestTLSFrontEnclaveDecrypt(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	ca, err := nsmsim.LoadOrCreateCA(caDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	endpoint, _, _ := startKMSEmulator(t, "--listen", "unix://"+filepath.Join(dir, "kms.sock"), "--state", filepath.Join(dir, "state.json"),
		"--trust-root", filepath.Join(caDir, "root.pem"))
	frontSock := filepath.Join(dir, "kms-proxy.sock")
	ctx, cancel := context.WithCancel(context.Background())
	var frontErr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"tls-front", "--listen", "unix://" + frontSock, "--backend", endpoint, "--ca-dir", caDir}, strings.NewReader(""), &bytes.Buffer{}, &frontErr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("tls-front exited %d: %s", code, frontErr.String())
		}
	})
	waitForSocket(t, frontSock)

	// The operator's side: a key (default policy) and a sealed identity,
	// over the emulator's plain endpoint.
	plain := kmsClient("http://kms-emulator", "test", "test", unixHTTPClient(strings.TrimPrefix(endpoint, "unix://")))
	key, err := plain.CreateKey(t.Context(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := plain.Encrypt(t.Context(), &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte("AGE-SECRET-KEY-1TEST")})
	if err != nil {
		t.Fatal(err)
	}

	// The enclave's side.
	client, err := enclavekms.New(enclavekms.Config{
		Region:      "us-east-1",
		Credentials: enclavekms.Credentials{AccessKeyID: "test", SecretAccessKey: "test"},
		Proxy:       transport.Addr{Scheme: transport.Unix, Path: frontSock},
		Roots:       ca.Roots(),
		MaxAttempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	sim, _ := nsmsim.New(nsmsim.Options{CA: ca})
	key2, _ := enclavekms.NewKeySource(t.Context()).Take(t.Context())
	r, err := enclavekms.NewRecipient(sim, key2)
	if err != nil {
		t.Fatal(err)
	}
	out, err := client.Decrypt(t.Context(), enclavekms.DecryptInput{CiphertextBlob: sealed.CiphertextBlob}, r)
	if err != nil {
		t.Fatalf("Decrypt with Recipient through the TLS front: %v\nfront log: %s", err, frontErr.String())
	}
	if string(out.Plaintext) != "AGE-SECRET-KEY-1TEST" {
		t.Fatalf("plaintext %q", out.Plaintext)
	}
}

func waitForSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no socket at %s", path)
}

func unixHTTPClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
}

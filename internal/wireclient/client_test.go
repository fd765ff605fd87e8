package wireclient_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/fakeenclave"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

func provisionReq() *wire.ProvisionRequest {
	return &wire.ProvisionRequest{
		Region:             "eu-west-1",
		Credentials:        wire.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"},
		IdentityCiphertext: []byte("sealed"),
		Keyrings:           []wire.SealedKeyring{{Name: "k.age", Data: []byte("age")}},
	}
}

func newReady(t *testing.T, opts *wireclient.Options) (*fakeenclave.Enclave, *wireclient.Client) {
	t.Helper()
	fe := fakeenclave.Start(t)
	c := wireclient.New(fe.Addr, opts)
	t.Cleanup(func() { c.Close() })
	st, err := c.Provision(t.Context(), provisionReq())
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if st.State != wire.StateReady || st.Keys != 3 {
		t.Fatalf("after Provision: state %s keys %d, want ready 3", st.State, st.Keys)
	}
	return fe, c
}

func TestCalls(t *testing.T) {
	fe := fakeenclave.Start(t)
	c := wireclient.New(fe.Addr, &wireclient.Options{Conns: 1})
	defer c.Close()
	ctx := t.Context()

	st, err := c.Status(ctx)
	if err != nil || st.State != wire.StateWaiting {
		t.Fatalf("Status before provisioning = %+v, %v; want waiting", st, err)
	}
	if _, err := c.Keys(ctx); !errors.Is(err, wire.ErrNotReady) {
		t.Fatalf("Keys while waiting: err = %v, want not_ready", err)
	}
	if _, err := c.SignMessage(ctx, fakeenclave.KeyEd25519, []byte("x")); !errors.Is(err, wire.ErrNotReady) {
		t.Fatalf("Sign while waiting: err = %v, want not_ready", err)
	}
	if _, err := c.Provision(ctx, &wire.ProvisionRequest{}); !errors.Is(err, wire.ErrInvalidRequest) {
		t.Fatalf("Provision of an empty request: err = %v, want invalid_request", err)
	}
	if st, err = c.Provision(ctx, provisionReq()); err != nil || st.State != wire.StateReady {
		t.Fatalf("Provision = %+v, %v; want ready", st, err)
	}
	if p := fe.Provisions(); len(p) != 1 || p[0].Region != "eu-west-1" || string(p[0].Credentials.SecretAccessKey) != "secret" {
		t.Fatalf("the enclave got provisions %v, want one (the invalid one refused) with region eu-west-1 and the secret", p)
	}

	keys, err := c.Keys(ctx)
	if err != nil || len(keys) != 3 || keys[0].ID != fakeenclave.KeyEd25519 {
		t.Fatalf("Keys = %+v, %v", keys, err)
	}

	msg := []byte("hello")
	r, err := c.SignMessage(ctx, fakeenclave.KeyEd25519, msg)
	if err != nil || !ed25519.Verify(fe.Ed25519, msg, r.Signature) {
		t.Fatalf("ed25519 SignMessage = %+v, %v; want a valid signature", r, err)
	}
	d := sha256.Sum256(msg)
	r, err = c.SignDigest(ctx, fakeenclave.KeyP256, d[:])
	if err != nil || !ecdsa.VerifyASN1(fe.P256, d[:], r.Signature) {
		t.Fatalf("p256 SignDigest = %+v, %v; want a valid signature", r, err)
	}

	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"unknown key", func() error { _, err := c.SignMessage(ctx, "nope", msg); return err }, wire.ErrUnknownKey},
		{"digest for ed25519", func() error { _, err := c.SignDigest(ctx, fakeenclave.KeyEd25519, d[:]); return err }, wire.ErrDigestNotAllowed},
		{"short digest", func() error { _, err := c.SignDigest(ctx, fakeenclave.KeyP256, d[:31]); return err }, wire.ErrInvalidDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v\nwant one matching %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "sign: ") {
				t.Errorf("err = %q, want it to name the operation (\"sign: …\")", err)
			}
			if errors.Is(err, wireclient.ErrUnavailable) {
				t.Errorf("err = %v matches ErrUnavailable, but the enclave answered", err)
			}
		})
	}

	doc, err := c.Attest(ctx, []byte("n0nce"), []byte("ud"))
	if err != nil || !bytes.Contains(doc, []byte("nonce=n0nce|user_data=ud")) {
		t.Fatalf("Attest = %q, %v", doc, err)
	}
	if c.Connects() != 1 {
		t.Errorf("Connects() = %d after one healthy session, want 1 (lazy dial, reuse)", c.Connects())
	}
}

func TestPoolUsesEveryConnection(t *testing.T) {
	_, c := newReady(t, &wireclient.Options{Conns: 3})
	for range 30 {
		if _, err := c.Status(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// Each slot dials lazily the first time round-robin picks it.
	deadline := time.Now().Add(2 * time.Second)
	for c.Connects() != 3 && time.Now().Before(deadline) {
		c.Status(t.Context())
		time.Sleep(time.Millisecond)
	}
	if got := c.Connects(); got != 3 {
		t.Fatalf("Connects() = %d after many calls with Conns: 3, want 3", got)
	}
}

func TestReconnectAfterRestart(t *testing.T) {
	fe, c := newReady(t, &wireclient.Options{Conns: 2, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	before := c.Connects()
	if err := fe.Restart(); err != nil {
		t.Fatal(err)
	}
	// The restarted enclave is waiting again: the client must find that
	// out over a new connection, without being told.
	var st *wire.Status
	var err error
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		st, err = c.Status(t.Context())
		if err == nil {
			break
		}
		if !errors.Is(err, wireclient.ErrUnavailable) {
			t.Fatalf("Status during restart: err = %v, want one matching ErrUnavailable", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil || st.State != wire.StateWaiting {
		t.Fatalf("Status after restart = %+v, %v; want waiting", st, err)
	}
	if c.Connects() <= before {
		t.Fatalf("Connects() = %d, was %d before the restart: no redial", c.Connects(), before)
	}
}

func TestInFlightFailPromptlyWhenEnclaveGoes(t *testing.T) {
	fe, c := newReady(t, nil)
	fe.HoldSigns()
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			// A generous deadline: the calls must fail because the
			// connection is lost, long before it.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := c.SignMessage(ctx, fakeenclave.KeyEd25519, []byte("m"))
			errs <- err
		}()
	}
	for range n {
		<-fe.SignsHeld()
	}
	start := time.Now()
	fe.Stop()
	for range n {
		err := <-errs
		if !errors.Is(err, wireclient.ErrUnavailable) || !errors.Is(err, wire.ErrConnClosed) {
			t.Errorf("in-flight sign: err = %v, want one matching ErrUnavailable and wire.ErrConnClosed", err)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("in-flight calls took %s to fail after the enclave went away", el)
	}
}

func TestUnreachableFailsFastWithBackoff(t *testing.T) {
	dir := t.TempDir()
	count := 0
	var mu sync.Mutex
	addr := transport.Addr{Scheme: transport.Unix, Path: filepath.Join(dir, "none.sock")}
	c := wireclient.New(addr, &wireclient.Options{
		Conns:      1,
		MinBackoff: time.Hour, // the second call must not dial again
		Dial: func(ctx context.Context) (net.Conn, error) {
			mu.Lock()
			count++
			mu.Unlock()
			return transport.Dial(ctx, addr)
		},
	})
	defer c.Close()
	_, err := c.Status(t.Context())
	var ue *wireclient.UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, wireclient.ErrUnavailable) || ue.Op != "status" || !strings.Contains(err.Error(), addr.String()) {
		t.Fatalf("Status with no enclave: err = %v, want an UnavailableError for op status naming %s", err, addr)
	}
	start := time.Now()
	_, err = c.Status(t.Context())
	if !errors.Is(err, wireclient.ErrUnavailable) || !strings.Contains(err.Error(), "next dial in") {
		t.Fatalf("second Status: err = %v, want ErrUnavailable saying when the next dial is", err)
	}
	if time.Since(start) > 100*time.Millisecond {
		t.Errorf("a call during backoff took %s, want an immediate failure", time.Since(start))
	}
	mu.Lock()
	defer mu.Unlock()
	if count != 1 {
		t.Errorf("dialed %d times, want 1 (the second call falls in the backoff)", count)
	}
}

func TestContextBoundsCalls(t *testing.T) {
	fe, c := newReady(t, nil)
	fe.HoldSigns()
	defer fe.ReleaseSigns()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.SignMessage(ctx, fakeenclave.KeyEd25519, []byte("m"))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, wireclient.ErrUnavailable) {
		t.Fatalf("err = %v, want DeadlineExceeded (and not ErrUnavailable)", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("call returned %s after a 50ms deadline", el)
	}
	fe.ReleaseSigns()
	// The connection survives an abandoned call.
	if _, err := c.SignMessage(t.Context(), fakeenclave.KeyEd25519, []byte("m")); err != nil {
		t.Fatalf("sign after an abandoned call: %v", err)
	}
}

func TestClosed(t *testing.T) {
	_, c := newReady(t, nil)
	c.Close()
	if _, err := c.Status(t.Context()); !errors.Is(err, wireclient.ErrClosed) {
		t.Fatalf("Status after Close: err = %v, want ErrClosed", err)
	}
}

func BenchmarkSign(b *testing.B) {
	fe := fakeenclave.Start(b)
	for _, conns := range []int{1, 2, 4} {
		b.Run("conns="+string(rune('0'+conns)), func(b *testing.B) {
			c := wireclient.New(fe.Addr, &wireclient.Options{Conns: conns})
			defer c.Close()
			if _, err := c.Provision(b.Context(), provisionReq()); err != nil {
				b.Fatal(err)
			}
			msg := []byte("benchmark message")
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				req := &wire.SignRequest{KeyID: fakeenclave.KeyEd25519, Data: msg}
				for pb.Next() {
					if _, err := c.Sign(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

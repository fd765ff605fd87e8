package shim_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/fakeenclave"
	"github.com/enclave-signer/enclave-signer/internal/shim"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// The three benchmarks sign the same 32-byte message with ed25519 from 64
// concurrent callers: in process, through the wire protocol (internal/wireclient),
// and through the shim's HTTP API. The fake enclave shares the machine's
// CPUs with the shim and the load generator here, so the ratios are lower
// bounds of what `signer bench` measures with the enclave on its own CPUs.

const benchParallelism = 32

var benchMsg = make([]byte, 32)

func BenchmarkSignInProcess(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ed25519.Sign(priv, benchMsg)
		}
	})
}

func benchShim(b *testing.B) (*fakeenclave.Enclave, *shim.Shim) {
	fe := fakeenclave.Start(b)
	dir := b.TempDir()
	cfg := &shim.Config{Enclave: fe.Addr.String(), Region: "eu-west-1", Identity: dir + "/id", Keyrings: []string{dir + "/k"}}
	for _, f := range []string{cfg.Identity, cfg.Keyrings[0]} {
		if err := writeFile(f, "ciphertext"); err != nil {
			b.Fatal(err)
		}
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	s, err := shim.New(cfg, shim.Options{AWS: staticAWS()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if _, err := s.Provision(b.Context()); err != nil {
		b.Fatal(err)
	}
	return fe, s
}

func BenchmarkSignWire(b *testing.B) {
	_, s := benchShim(b)
	c := s.Client()
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := &wire.SignRequest{KeyID: fakeenclave.KeyEd25519, Data: benchMsg}
		for pb.Next() {
			if _, err := c.Sign(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkSignHTTP(b *testing.B) {
	_, s := benchShim(b)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 4 * benchParallelism, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := srv.URL + "/v1/keys/ed/sign"
	body := `{"message":"` + b64(benchMsg) + `"}`
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 512)
		for pb.Next() {
			resp, err := hc.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.ReadFull(resp.Body, buf)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("%d %s", resp.StatusCode, buf[:n])
				return
			}
		}
	})
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/shim"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// The end-to-end benchmarks sign through the real daemon (its ServeWire
// behind a wire.Server on a unix socket) from 64 concurrent callers: over
// the wire protocol with internal/wireclient, as the shim does, and over HTTP
// through the shim's real API handler. Everything shares this process's
// CPUs, so the figures include the client's work; signer bench measures
// the same paths with signerd on CPUs of its own. cpu-ns/op is the
// process's CPU time per signature, which other load on a shared machine
// disturbs less than ns/op.

const e2eCallers = 64

// benchDaemon serves a daemon holding one key of alg on a unix socket and
// returns its address.
func benchDaemon(b *testing.B, alg keyring.Algorithm) transport.Addr {
	b.Helper()
	return benchDaemonWith(b, alg, false)
}

// benchDaemonWith is benchDaemon, with the audit trail on when withAudit
// is set (serveBenchDaemon).
func benchDaemonWith(b *testing.B, alg keyring.Algorithm, withAudit bool) transport.Addr {
	b.Helper()
	id, _ := age.GenerateX25519Identity()
	ident, err := keyring.ParseIdentity(identityFile(id))
	if err != nil {
		b.Fatal(err)
	}
	var ct []byte
	enc, _ := age.Encrypt(&sliceWriter{&ct}, id.Recipient())
	enc.Write(keyringJSON(newKey(b, "k", alg)))
	enc.Close()
	set, err := keyring.Load(ident, keyring.File{Name: "k.age", Ciphertext: ct})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(set.Destroy)
	return serveBenchDaemon(b, authBenchDaemon(set), withAudit)
}

// benchAuthDaemon is benchDaemon with the key in a keyring that declares
// the client app1 (and lets it use the key); it returns the secret too.
func benchAuthDaemon(b *testing.B, alg keyring.Algorithm, withAudit bool) (transport.Addr, []byte) {
	b.Helper()
	set, secret := benchPolicedSet(b, alg)
	return serveBenchDaemon(b, authBenchDaemon(set), withAudit), secret
}

// serveBenchDaemon serves d on a unix socket and returns its address.
// With withAudit, d gets an audit trail that a reader drains over the
// wire into a file, appending and syncing each batch, as the shim does.
func serveBenchDaemon(b *testing.B, d *daemon, withAudit bool) transport.Addr {
	b.Helper()
	path := filepath.Join(b.TempDir(), "signerd.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	srv := &wire.Server{Handler: d}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	addr := transport.Addr{Scheme: transport.Unix, Path: path}
	if withAudit {
		a, err := newAuditTrail(defaultAuditBuffer, "", nil)
		if err != nil {
			b.Fatal(err)
		}
		d.audit, d.rec = a, a
		b.Cleanup(a.close)
		drainOverWire(b, addr)
	}
	return addr
}

// drainOverWire drains the audit trail at addr into a file until the
// benchmark ends.
func drainOverWire(b *testing.B, addr transport.Addr) {
	f, err := os.Create(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	c := wireclient.New(addr, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var key []byte
		var cursor uint64
		var buf []byte
		for ctx.Err() == nil {
			bt, err := c.AuditRead(ctx, key, cursor, 0)
			if err != nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			buf = buf[:0]
			for _, r := range bt.Records {
				buf = append(append(buf, r...), '\n')
			}
			f.Write(buf)
			f.Sync()
			key, cursor = bt.AuditKey, bt.Next
			if !bt.More {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	b.Cleanup(func() {
		cancel()
		<-done
		c.Close()
		f.Close()
	})
}

func e2eCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runE2E runs op from e2eCallers goroutines and reports cpu-ns/op.
func runE2E(b *testing.B, op func() error) {
	b.ReportAllocs()
	b.SetParallelism(max(1, e2eCallers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := e2eCPUTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(e2eCPUTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkSignWireE2E signs over the wire protocol: internal/wireclient (two
// connections, as the shim) to wire.Server to the daemon. The -auth
// variants sign each request as a client (internal/wireclient's Credentials: a
// nonce and a MAC in the caller, an auth_sign_request, signerd's checks).
// The +audit variants record every decision in the audit trail, drained
// over the wire into a synced file as the shim does.
func BenchmarkSignWireE2E(b *testing.B) {
	for _, alg := range []keyring.Algorithm{keyring.Ed25519, keyring.ECDSAP256} {
		for _, auth := range []bool{false, true} {
			for _, withAudit := range []bool{false, true} {
				name := string(alg)
				if auth {
					name += "-auth"
				}
				if withAudit {
					name += "+audit"
				}
				b.Run(name, func(b *testing.B) { benchWireE2E(b, alg, auth, withAudit) })
			}
		}
	}
}

func benchWireE2E(b *testing.B, alg keyring.Algorithm, auth, withAudit bool) {
	var opts wireclient.Options
	var addr transport.Addr
	if auth {
		var secret []byte
		addr, secret = benchAuthDaemon(b, alg, withAudit)
		opts.Credentials = &wireclient.Credentials{Client: "app1", Secret: secret, Audience: testAudience}
	} else {
		addr = benchDaemonWith(b, alg, withAudit)
	}
	c := wireclient.New(addr, &opts)
	defer c.Close()
	msg := make([]byte, 32)
	rand.Read(msg)
	runE2E(b, func() error {
		_, err := c.SignMessage(context.Background(), "k", msg)
		return err
	})
}

// BenchmarkSignHTTPE2E signs over HTTP: net/http client to the shim's API
// handler (httptest server on loopback) to internal/wireclient to the daemon. The
// -auth variants sign each request as a client (internal/wireclient's
// RequestSigner), which the shim forwards as an auth_sign_request.
func BenchmarkSignHTTPE2E(b *testing.B) {
	for _, alg := range []keyring.Algorithm{keyring.Ed25519, keyring.ECDSAP256} {
		for _, auth := range []bool{false, true} {
			name := string(alg)
			if auth {
				name += "-auth"
			}
			b.Run(name, func(b *testing.B) { benchHTTPE2E(b, alg, auth) })
		}
	}
}

func benchHTTPE2E(b *testing.B, alg keyring.Algorithm, auth bool) {
	var addr transport.Addr
	var rs *wireclient.RequestSigner
	if auth {
		var secret []byte
		addr, secret = benchAuthDaemon(b, alg, false)
		var err error
		if rs, err = wireclient.NewRequestSigner(wireclient.Credentials{Client: "app1", Secret: secret, Audience: testAudience}); err != nil {
			b.Fatal(err)
		}
	} else {
		addr = benchDaemon(b, alg)
	}
	dir := b.TempDir()
	cfg := &shim.Config{Enclave: addr.String(), Region: "eu-west-1", Identity: filepath.Join(dir, "id"), Keyrings: []string{filepath.Join(dir, "k")}}
	for _, f := range []string{cfg.Identity, cfg.Keyrings[0]} {
		if err := os.WriteFile(f, []byte("ciphertext stand-in"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	s, err := shim.New(cfg, shim.Options{AWS: aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * e2eCallers, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	msg := make([]byte, 32)
	rand.Read(msg)
	url := srv.URL + "/v1/keys/k/sign"
	body := []byte(`{"message":"` + base64.StdEncoding.EncodeToString(msg) + `"}`)
	runE2E(b, func() error {
		req, err := http.NewRequest("POST", url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if rs != nil {
			if err := rs.Authorize(req, body); err != nil {
				return err
			}
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return &httpStatusError{resp.Status}
		}
		return nil
	})
}

type httpStatusError struct{ status string }

func (e *httpStatusError) Error() string { return "sign: " + e.status }

package wire

import (
	"context"
	"crypto/ed25519"
	"net"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func BenchmarkEncodeDecode(b *testing.B) {
	for _, m := range []Message{
		&SignRequest{KeyID: "payments", Data: make([]byte, 32)},
		&SignResponse{KeyID: "payments", Algorithm: "ed25519", Signature: make([]byte, 64)},
		&Error{Code: CodeUnknownKey, Message: `no key "payments"`},
	} {
		b.Run(m.MessageType().String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf := getBuf()
				if err := appendFrame(buf, 12345, m); err != nil {
					b.Fatal(err)
				}
				if _, _, err := Unmarshal(buf.Bytes()[HeaderSize:]); err != nil {
					b.Fatal(err)
				}
				putBuf(buf)
			}
		})
	}
}

// benchConn serves h on a unix socket and returns a Conn to it.
func benchConn(b *testing.B, h Handler) *Conn {
	b.Helper()
	path := filepath.Join(b.TempDir(), "b.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	srv := &Server{Handler: h}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	c, err := Dial(b.Context(), unixDialer(path))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// runCallers runs b.N calls of req on c from 64 goroutines, and reports
// cpu-ns/op beside the usual figures.
func runCallers(b *testing.B, c *Conn, req Message) {
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	done := measureCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Call(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	done()
}

// measureCPU starts measuring the process's user+system CPU time; the
// function it returns reports it per operation as cpu-ns/op. Other load on
// a shared machine disturbs this far less than it disturbs wall time.
func measureCPU(b *testing.B) func() {
	b.ResetTimer()
	start := cpuTime()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRoundTrip is one Sign call through a unix socket to a trivial
// handler, from 64 parallel callers sharing one Conn (the host shim's
// shape). cpu-ns/op counts both sides.
func BenchmarkRoundTrip(b *testing.B) {
	resp := &SignResponse{KeyID: "k", Algorithm: "ed25519", Signature: make([]byte, 64)}
	c := benchConn(b, HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
		return resp, nil
	}))
	runCallers(b, c, &SignRequest{KeyID: "k", Data: make([]byte, 32)})
}

// BenchmarkSignEd25519 compares in-process ed25519 signing with signing
// through the protocol at 64 parallel callers. Client and server share
// this process's CPUs here, so the wire figures include the client's work,
// which in production runs outside the enclave.
func BenchmarkSignEd25519(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	msg := make([]byte, 64)
	b.Run("in-process", func(b *testing.B) {
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		done := measureCPU(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ed25519.Sign(priv, msg)
			}
		})
		done()
	})
	b.Run("wire", func(b *testing.B) {
		c := benchConn(b, HandlerFunc(func(ctx context.Context, req Message) (Message, error) {
			s := req.(*SignRequest)
			return &SignResponse{KeyID: s.KeyID, Algorithm: "ed25519", Signature: ed25519.Sign(priv, s.Data)}, nil
		}))
		runCallers(b, c, &SignRequest{KeyID: "k", Data: msg})
	})
}

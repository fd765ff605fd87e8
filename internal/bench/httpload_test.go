package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// signHandler answers like the shim: 200 with a signature for key "k",
// 404 otherwise; it checks the request it gets.
func signHandler(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" || string(body) != `{"message":"bXNn"}` {
			t.Errorf("request %s %s %q %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"), body)
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/keys/k/sign":
			w.Write([]byte(`{"key_id":"k","algorithm":"ed25519","signature":"AAAA"}`))
		case "/v1/keys/close/sign":
			w.Header().Set("Connection", "close")
			w.Write([]byte(`{"key_id":"close","algorithm":"ed25519","signature":"AAAA"}`))
		case "/v1/keys/chunked/sign":
			w.Write([]byte(`{"key_id":"chunked",`))
			w.(http.Flusher).Flush()
			w.Write([]byte(`"signature":"AAAA"}`))
		case "/v1/keys/nosig/sign":
			w.Write([]byte(`{"key_id":"nosig"}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"code":"unknown_key","message":"no key"}}`))
		}
	})
}

func TestHTTPSigner(t *testing.T) {
	srv := httptest.NewUnstartedServer(signHandler(t))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	hs, err := NewHTTPSigner(srv.URL, "k", []byte("msg"), 4)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(t.Context(), Options{Concurrency: 4, Duration: 100 * time.Millisecond}, hs.Op())
	hs.Close()
	if err != nil || res.Errors != 0 || res.Ops < 10 {
		t.Fatalf("run: ops %d errors %d (%v), %v", res.Ops, res.Errors, res.FirstError, err)
	}
	if n := conns.Load(); n != 4 {
		t.Errorf("%d connections for %d requests from 4 workers, want 4 (kept alive)", n, res.Ops)
	}

	for _, c := range []struct{ key, want string }{
		{"missing", `HTTP 404: {"error":{"code":"unknown_key"`},
		{"chunked", "reads only answers with a Content-Length"},
		{"nosig", "200 without a signature"},
	} {
		hs, _ := NewHTTPSigner(srv.URL, c.key, []byte("msg"), 1)
		err := hs.Op()(t.Context(), 0)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "POST /v1/keys/"+c.key+"/sign") {
			t.Errorf("key %s: error %v, want …%s… naming the request", c.key, err, c.want)
		}
		hs.Close()
	}

	// Connection: close is honoured: the next request dials again.
	before := conns.Load()
	hs, _ = NewHTTPSigner(srv.URL, "close", []byte("msg"), 1)
	for range 3 {
		if err := hs.Op()(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
	}
	hs.Close()
	if n := conns.Load() - before; n != 3 {
		t.Errorf("%d connections for 3 requests answered Connection: close, want 3", n)
	}
}

func TestHTTPSignerUnixAndContexts(t *testing.T) {
	dir, err := os.MkdirTemp("", "bench")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "shim.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: signHandler(t)}
	go srv.Serve(ln)
	defer srv.Close()

	hs, err := NewHTTPSigner("unix://"+sock, "k", []byte("msg"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	// A first context that ends must not spoil the connection for the next.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	if err := hs.Op()(ctx, 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(10 * time.Millisecond)
	if err := hs.Op()(t.Context(), 0); err != nil {
		t.Fatalf("after the first context ended: %v", err)
	}
	// A cancelled context ends a request that would wait forever.
	stuck, _ := net.Listen("tcp", "127.0.0.1:0")
	defer stuck.Close()
	go func() {
		c, err := stuck.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	hs2, _ := NewHTTPSigner(stuck.Addr().String(), "k", []byte("msg"), 1)
	defer hs2.Close()
	ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := hs2.Op()(ctx, 0); err != context.DeadlineExceeded {
		t.Fatalf("request to a server that never answers: %v, want the context's deadline", err)
	}
}

func TestNewHTTPSignerRefuses(t *testing.T) {
	for _, c := range []struct{ endpoint, want string }{
		{"https://127.0.0.1:8443", "plain HTTP"},
		{"unix://", "no socket path"},
		{"http://127.0.0.1:8080/prefix", "want http://HOST:PORT"},
	} {
		if _, err := NewHTTPSigner(c.endpoint, "k", nil, 1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewHTTPSigner(%q): %v, want …%s…", c.endpoint, err, c.want)
		}
	}
	if _, err := NewHTTPSigner("127.0.0.1:1", "k", nil, 0); err == nil {
		t.Error("0 workers: no error")
	}
}

// FuzzReadHead checks the answer-head parser on arbitrary bytes: no
// panic, and an accepted head has a status of three digits and a
// Content-Length of 0 or more.
func FuzzReadHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 404 Not Found\r\ncontent-length: 0\r\nConnection: keep-alive\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 2x0 OK\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		status, n, _, err := readHead(bufio.NewReaderSize(bytes.NewReader(b), maxHeaderLine))
		if err != nil {
			return
		}
		if status < 0 || status > 999 || n < 0 {
			t.Fatalf("accepted status %d, Content-Length %d", status, n)
		}
	})
}

// TestHTTPSignerAuthorize: with Authorize, every request carries a header
// made afresh for its method, path and body.
func TestHTTPSignerAuthorize(t *testing.T) {
	var seen sync.Map
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		want := "sig POST /v1/keys/k/sign " + string(body)
		got := r.Header.Get("Authorization")
		if !strings.HasPrefix(got, want) || string(body) != `{"message":"bXNn"}` {
			t.Errorf("Authorization %q, want %q…", got, want)
		}
		if _, dup := seen.LoadOrStore(got, true); dup {
			t.Errorf("Authorization %q sent twice", got)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"key_id":"k","algorithm":"ed25519","signature":"AAAA"}`))
	}))
	defer srv.Close()
	hs, err := NewHTTPSigner(srv.URL, "k", []byte("msg"), 2)
	if err != nil {
		t.Fatal(err)
	}
	hs.Authorize(func(method, path string, body []byte) (string, error) {
		return fmt.Sprintf("sig %s %s %s %d", method, path, body, n.Add(1)), nil
	})
	res, err := Run(t.Context(), Options{Concurrency: 2, Duration: 50 * time.Millisecond}, hs.Op())
	hs.Close()
	if err != nil || res.Errors != 0 || res.Ops < 5 {
		t.Fatalf("run: ops %d errors %d (%v), %v", res.Ops, res.Errors, res.FirstError, err)
	}
	hs, _ = NewHTTPSigner(srv.URL, "k", []byte("msg"), 1)
	hs.Authorize(func(string, string, []byte) (string, error) { return "", errors.New("no secret") })
	if err := hs.Op()(t.Context(), 0); err == nil || !strings.Contains(err.Error(), "no secret") {
		t.Errorf("a failing Authorize: %v", err)
	}
	hs.Close()
}

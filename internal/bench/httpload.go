package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTPSigner is the load generator's HTTP client: one keep-alive HTTP/1.1
// connection per worker, each sending one prebuilt sign request at a time
// and reading the answer with a small strict parser. It exists because the
// load generator shares its CPUs with the shim: net/http's client (a
// goroutine pair and some hundred allocations per request) costs about as
// much CPU per request as the shim's own server, which would halve what
// the shim can serve. What it measures is the shim, as curl or a client in
// another process would reach it.
type HTTPSigner struct {
	dial    func(ctx context.Context) (net.Conn, error)
	target  string // for errors
	request []byte
	conns   []httpConn

	// With Authorize, each request is signed anew (a fresh nonce and
	// timestamp): head is the request up to its headers' end, without
	// the blank line; path and body are what the MAC covers.
	authorize func(method, path string, body []byte) (string, error)
	head      []byte
	path      string
	body      []byte
}

type httpConn struct {
	nc   net.Conn
	br   *bufio.Reader
	body []byte
	req  []byte          // the signed request being sent, with Authorize
	ctx  context.Context // the context whose end closes nc
	stop func() bool
	_    [32]byte // keep workers' connections off each other's cache lines
}

// NewHTTPSigner prepares POST /v1/keys/{keyID}/sign with body
// {"message": base64(msg)} against the shim at endpoint (http://HOST:PORT,
// HOST:PORT, tcp://HOST:PORT or unix:///PATH), for the given number of
// workers. It dials nothing yet.
func NewHTTPSigner(endpoint, keyID string, msg []byte, workers int) (*HTTPSigner, error) {
	var network, addr, host string
	if p, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		if p == "" {
			return nil, fmt.Errorf("endpoint %q: no socket path", endpoint)
		}
		network, addr, host = "unix", p, "shim"
	} else {
		s := endpoint
		if rest, ok := strings.CutPrefix(s, "tcp://"); ok {
			s = "http://" + rest
		} else if !strings.Contains(s, "://") {
			s = "http://" + s
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("endpoint %q: want http://HOST:PORT, HOST:PORT, tcp://HOST:PORT or unix:///PATH (plain HTTP)", endpoint)
		}
		network, addr, host = "tcp", u.Host, u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	if workers < 1 {
		return nil, fmt.Errorf("workers: want 1 or more, got %d", workers)
	}
	path := "/v1/keys/" + url.PathEscape(keyID) + "/sign"
	body := `{"message":"` + base64.StdEncoding.EncodeToString(msg) + `"}`
	head := "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n"
	var d net.Dialer
	return &HTTPSigner{
		dial:    func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, network, addr) },
		target:  "POST " + path,
		request: []byte(head + "\r\n" + body),
		conns:   make([]httpConn, workers),
		head:    []byte(head),
		path:    path,
		body:    []byte(body),
	}, nil
}

// Authorize makes every request carry an Authorization header, made by f
// for the request's method, path and body (an authenticated client, as
// internal/wireclient's RequestSigner signs). Call it before the first Op.
func (h *HTTPSigner) Authorize(f func(method, path string, body []byte) (string, error)) {
	h.authorize = f
}

// requestFor returns the bytes of the next request on c.
func (h *HTTPSigner) requestFor(c *httpConn) ([]byte, error) {
	if h.authorize == nil {
		return h.request, nil
	}
	auth, err := h.authorize("POST", h.path, h.body)
	if err != nil {
		return nil, err
	}
	c.req = append(append(append(append(c.req[:0], h.head...), "Authorization: "...), auth...), "\r\n\r\n"...)
	c.req = append(c.req, h.body...)
	return c.req, nil
}

// Op returns the operation: one request on worker's connection, dialed
// on first use and again after any failure.
func (h *HTTPSigner) Op() Op {
	return func(ctx context.Context, worker int) error {
		c := &h.conns[worker]
		err := h.do(ctx, c)
		if err != nil {
			c.close()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", h.target, err)
		}
		return nil
	}
}

// Close closes every connection. Call it when no Op is running.
func (h *HTTPSigner) Close() {
	for i := range h.conns {
		h.conns[i].close()
	}
}

func (c *httpConn) close() {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
	c.ctx = nil
}

// maxHeaderLine bounds one line of the answer's head.
const maxHeaderLine = 4 << 10

func (h *HTTPSigner) do(ctx context.Context, c *httpConn) error {
	if c.nc != nil && c.ctx != ctx {
		// Another context's watch: if it has fired, the connection's
		// deadline is in the past and it is closed for a new one.
		if c.stop() {
			c.ctx, c.stop = nil, nil
		} else {
			c.close()
		}
	}
	if c.nc == nil {
		nc, err := h.dial(ctx)
		if err != nil {
			return err
		}
		c.nc = nc
		c.br = bufio.NewReaderSize(nc, maxHeaderLine)
	}
	if c.ctx == nil {
		// A blocked read or write ends when ctx does: the connection's
		// deadline is moved to the past under it.
		nc := c.nc
		c.ctx, c.stop = ctx, context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	}
	req, err := h.requestFor(c)
	if err != nil {
		return err
	}
	if _, err := c.nc.Write(req); err != nil {
		return err
	}
	status, n, keepAlive, err := readHead(c.br)
	if err != nil {
		return err
	}
	if n > maxAnswer {
		return fmt.Errorf("answer of %d bytes, want at most %d", n, maxAnswer)
	}
	if cap(c.body) < n {
		c.body = make([]byte, n)
	}
	c.body = c.body[:n]
	if _, err := io.ReadFull(c.br, c.body); err != nil {
		return fmt.Errorf("reading the answer's body: %w", err)
	}
	if !keepAlive {
		c.close()
	}
	if status != 200 {
		return fmt.Errorf("HTTP %d: %s", status, bytes.TrimSpace(c.body))
	}
	if !bytes.Contains(c.body, []byte(`"signature":"`)) {
		return fmt.Errorf("200 without a signature: %.200s", c.body)
	}
	return nil
}

// readHead reads an HTTP/1.1 answer's status line and headers: the status
// code, the Content-Length (required: the shim's answers are small and
// always carry one), and whether the connection stays open.
func readHead(br *bufio.Reader) (status, contentLength int, keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return 0, 0, false, errors.New("the shim closed the connection")
		}
		return 0, 0, false, fmt.Errorf("reading the status line: %w", err)
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, 0, false, fmt.Errorf("malformed status line %.80q", line)
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, false, fmt.Errorf("malformed status line %.80q", line)
		}
		status = status*10 + int(c-'0')
	}
	keepAlive = line[7] == '1' // HTTP/1.1 keeps alive by default, 1.0 not
	contentLength = -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, 0, false, fmt.Errorf("reading the headers: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, 0, false, fmt.Errorf("malformed header line %.80q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 || value[0] == '+' {
				return 0, 0, false, fmt.Errorf("malformed Content-Length %.40q", value)
			}
			contentLength = n
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keepAlive = false
			} else if bytes.EqualFold(value, []byte("keep-alive")) {
				keepAlive = true
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, 0, false, fmt.Errorf("transfer-encoding %.40q: the load generator reads only answers with a Content-Length", value)
		}
	}
	if contentLength < 0 {
		return 0, 0, false, errors.New("answer without a Content-Length")
	}
	return status, contentLength, keepAlive, nil
}

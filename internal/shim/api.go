package shim

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/enclave-signer/enclave-signer/internal/audit"
	"github.com/enclave-signer/enclave-signer/internal/signreq"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

// MaxBodySize is the largest request body the API reads; larger bodies get
// 413 too_large.
const MaxBodySize = 1 << 20

// The API's error codes (docs/shim.md#errors). The first seven are those
// of the first release; not_found and method_not_allowed answer requests
// outside the API;
// forbidden_origin and unsupported_media_type refuse requests a web page
// could send (guard.go); forbidden passes on the enclave's refusal to be
// provisioned by an unprivileged peer.
const (
	codeMalformed        = "malformed_request"      // 400
	codeUnknownKey       = "unknown_key"            // 404
	codeTooLarge         = "too_large"              // 413
	codeInvalidDigest    = "invalid_digest"         // 422
	codeDigestNotAllowed = "digest_not_allowed"     // 422
	codeInternal         = "internal"               // 500
	codeNotReady         = "not_ready"              // 503
	codeNotFound         = "not_found"              // 404, no such route
	codeMethodNotAllowed = "method_not_allowed"     // 405
	codeForbiddenOrigin  = "forbidden_origin"       // 403, Host, Origin or Sec-Fetch-Site
	codeForbidden        = "forbidden"              // 403, the enclave refused the shim (an unprivileged source port)
	codeUnsupportedMedia = "unsupported_media_type" // 415
	codeUnauthenticated  = "unauthenticated"        // 401, with WWW-Authenticate
	codeRateLimited      = "rate_limited"           // 429, with Retry-After
	codeAuthUnavailable  = "auth_unavailable"       // 503, the enclave cannot check credentials now
	codeAuditUnavailable = "audit_unavailable"      // 503, the enclave's audit buffer is full (fail closed)
)

var (
	jsonContentType    = []string{"application/json"}
	metricsContentType = []string{"text/plain; version=0.0.4; charset=utf-8"}
	noSniff            = []string{"nosniff"}
)

// apiFunc serves one request and returns the status it answered, for the
// metrics.
type apiFunc func(w http.ResponseWriter, r *http.Request) int

type api struct {
	client  *wireclient.Client
	prov    *provisioner
	cfg     *Config
	metrics *metrics
	version string
	mux     *http.ServeMux
	timeout time.Duration
	hosts   *hostGuard
	other   *routeMetrics // requests that match no route, or are refused before routing
	audit   *auditDrain   // nil without audit_log
}

// shimState is the provisioner's state and the audit drain's.
func (h *api) shimState() shimState {
	ss := h.prov.state()
	if h.audit != nil {
		st := h.audit.state()
		ss.AuditLog = &st
	}
	return ss
}

func newAPI(c *wireclient.Client, p *provisioner, cfg *Config, m *metrics, version string) *api {
	h := &api{client: c, prov: p, cfg: cfg, metrics: m, version: version, mux: http.NewServeMux(), timeout: cfg.RequestTimeout.D(), hosts: newHostGuard(cfg)}
	other := m.route("other")
	h.other = other
	routes := []struct {
		method, path string
		f            apiFunc
	}{
		{"GET", "/healthz", h.healthz},
		{"GET", "/readyz", h.readyz},
		{"GET", "/v1/status", h.status},
		{"POST", "/v1/provision", h.provision},
		{"GET", "/v1/keys", h.keys},
		{"POST", "/v1/keys/{id}/sign", h.sign},
		{"POST", "/v1/attestation", h.attest},
		{"GET", "/v1/audit/head", h.auditHead},
		{"GET", "/metrics", h.serveMetrics},
	}
	for _, rt := range routes {
		pattern := rt.method + " " + rt.path
		f := rt.f
		if rt.method == "POST" {
			f = h.jsonOnly(f)
		}
		h.handle(pattern, m.route(pattern), f)
		allow := rt.method
		if allow == "GET" {
			allow = "GET, HEAD"
		}
		h.handle(rt.path, other, func(w http.ResponseWriter, r *http.Request) int {
			w.Header().Set("Allow", allow)
			return h.fail(w, http.StatusMethodNotAllowed, codeMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed; want %s", r.Method, r.URL.Path, allow))
		})
	}
	h.handle("/", other, func(w http.ResponseWriter, r *http.Request) int {
		return h.fail(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no such endpoint: %s %s (see docs/shim.md)", r.Method, r.URL.Path))
	})
	return h
}

func (h *api) handle(pattern string, rm *routeMetrics, f apiFunc) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status := f(w, r)
		rm.observe(status, time.Since(start))
	})
}

func (h *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if status := h.refuse(w, r); status != 0 {
		h.other.observe(status, 0) // a refusal takes well under the first bucket's 100 µs
		return
	}
	h.mux.ServeHTTP(w, r)
}

// refuse answers a request that a web page could have sent (guard.go) or
// whose path ServeMux would redirect, and returns its status; 0 lets the
// request through.
func (h *api) refuse(w http.ResponseWriter, r *http.Request) int {
	if !h.hosts.allows(r.Host) {
		return h.fail(w, http.StatusForbidden, codeForbiddenOrigin, fmt.Sprintf(
			"Host %q does not name this listener: want a loopback address, localhost, the listen address or a name in allowed_hosts (a web page reaching the API through DNS rebinding sends its own site's name)",
			truncate(r.Host, 100)))
	}
	if why := crossSite(r); why != "" {
		return h.fail(w, http.StatusForbidden, codeForbiddenOrigin, why+"; the API serves local programs, not web pages")
	}
	if p := r.URL.EscapedPath(); !isCleanPath(p) {
		return h.fail(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no such endpoint: %s %s: the path is not canonical (no empty, \".\" or \"..\" segments; see docs/shim.md)", r.Method, truncate(p, 200)))
	}
	return 0
}

// jsonOnly refuses, before f reads anything, a body that is not JSON.
func (h *api) jsonOnly(f apiFunc) apiFunc {
	return func(w http.ResponseWriter, r *http.Request) int {
		if why := contentTypeProblem(r); why != "" {
			return h.fail(w, http.StatusUnsupportedMediaType, codeUnsupportedMedia, why)
		}
		return f(w, r)
	}
}

// buffers are pooled per request: body in, decoded data, answer out.
type buffers struct{ in, data, out []byte }

var bufPool = sync.Pool{New: func() any { return &buffers{in: make([]byte, 0, 512), out: make([]byte, 0, 512)} }}

// maxPooled keeps one huge request from pinning its buffers.
const maxPooled = 64 << 10

func getBuffers() *buffers { return bufPool.Get().(*buffers) }

func putBuffers(b *buffers) {
	if cap(b.in) > maxPooled || cap(b.data) > maxPooled || cap(b.out) > maxPooled {
		return
	}
	b.in, b.data, b.out = b.in[:0], b.data[:0], b.out[:0]
	bufPool.Put(b)
}

// realm is the WWW-Authenticate realm: the audience of the loaded
// keyrings when the enclave last reported exactly one (what a client
// signs for), else a fixed name.
func (h *api) realm() string {
	if s := h.prov.seen.Load(); s != nil && s.st != nil && s.st.Auth != nil && len(s.st.Auth.Audiences) == 1 {
		return s.st.Auth.Audiences[0]
	}
	return "enclave-signer"
}

// fail writes an error answer and counts it.
func (h *api) fail(w http.ResponseWriter, status int, code, msg string) int {
	h.metrics.countError(code)
	b := getBuffers()
	b.out = appendErrorBody(b.out[:0], code, msg)
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	w.Write(b.out)
	putBuffers(b)
	return status
}

func (h *api) writeJSON(w http.ResponseWriter, status int, v any) int {
	data, err := json.Marshal(v)
	if err != nil {
		return h.fail(w, http.StatusInternalServerError, codeInternal, "encoding the answer: "+err.Error())
	}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
	return status
}

// readBody reads the request body, at most MaxBodySize bytes, into buf.
func readBody(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, error) {
	if r.ContentLength > MaxBodySize {
		return nil, &http.MaxBytesError{Limit: MaxBodySize}
	}
	if r.ContentLength > 0 && int64(cap(buf)) < r.ContentLength+1 {
		buf = make([]byte, 0, r.ContentLength+1)
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodySize)
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// bodyFailure answers a body that could not be read.
func (h *api) bodyFailure(w http.ResponseWriter, err error) int {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return h.fail(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBodySize))
	}
	return h.fail(w, http.StatusBadRequest, codeMalformed, "reading the request body: "+err.Error())
}

// enclaveFailure answers a failed exchange with the enclave, mapping wire
// error codes as docs/protocol.md's table says.
func (h *api) enclaveFailure(w http.ResponseWriter, err error) int {
	status, code, msg := mapError(err, h.timeout)
	switch code {
	case codeNotReady:
		h.prov.nudge()
	case codeUnauthenticated:
		h.challenge(w)
	case codeRateLimited:
		var we *wire.Error
		if errors.As(err, &we) {
			w.Header().Set("Retry-After", retryAfterSeconds(we.RetryAfterMillis))
		}
	}
	return h.fail(w, status, code, msg)
}

// challenge sets the WWW-Authenticate header of a 401. The realm is
// quoted: audiences hold no quote or backslash.
func (h *api) challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", signreq.Scheme+` realm="`+h.realm()+`"`)
}

// retryAfterSeconds is Retry-After for a wait of ms milliseconds: whole
// seconds, rounded up, at least 1 (HTTP has no finer unit, and 0 would
// invite an immediate retry that is refused again).
func retryAfterSeconds(ms uint32) string {
	return strconv.FormatUint(max((uint64(ms)+999)/1000, 1), 10)
}

func mapError(err error, timeout time.Duration) (status int, code, msg string) {
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		msg = we.Message
		if msg == "" {
			msg = we.Code.String()
		}
		switch we.Code {
		case wire.CodeMalformedFrame, wire.CodeInvalidRequest:
			return http.StatusBadRequest, codeMalformed, msg
		case wire.CodeFrameTooLarge:
			return http.StatusRequestEntityTooLarge, codeTooLarge, msg
		case wire.CodeNotReady, wire.CodeTooManyConnections:
			return http.StatusServiceUnavailable, codeNotReady, msg
		case wire.CodeUnknownKey:
			return http.StatusNotFound, codeUnknownKey, msg
		case wire.CodeInvalidDigest:
			return http.StatusUnprocessableEntity, codeInvalidDigest, msg
		case wire.CodeDigestNotAllowed:
			return http.StatusUnprocessableEntity, codeDigestNotAllowed, msg
		case wire.CodeForbidden:
			return http.StatusForbidden, codeForbidden, msg
		case wire.CodeUnauthenticated:
			return http.StatusUnauthorized, codeUnauthenticated, msg
		case wire.CodeRateLimited:
			return http.StatusTooManyRequests, codeRateLimited, msg
		case wire.CodeAuthUnavailable:
			return http.StatusServiceUnavailable, codeAuthUnavailable, msg
		case wire.CodeAuditUnavailable:
			return http.StatusServiceUnavailable, codeAuditUnavailable, msg
		}
		return http.StatusInternalServerError, codeInternal, "enclave: " + we.Error()
	case errors.Is(err, wireclient.ErrUnavailable):
		return http.StatusServiceUnavailable, codeNotReady, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, codeNotReady, fmt.Sprintf("the enclave did not answer within %s", timeout)
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, codeNotReady, "request cancelled"
	}
	return http.StatusInternalServerError, codeInternal, err.Error()
}

func (h *api) healthz(w http.ResponseWriter, r *http.Request) int {
	return h.writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *api) readyz(w http.ResponseWriter, r *http.Request) int {
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	st, err := h.client.Status(ctx)
	cancel()
	h.prov.observe(st, err)
	if err != nil {
		return h.enclaveFailure(w, err)
	}
	if st.State == wire.StateReady {
		return h.writeJSON(w, http.StatusOK, map[string]any{"state": st.State, "keys": st.Keys})
	}
	h.prov.nudge()
	return h.fail(w, http.StatusServiceUnavailable, codeNotReady, notReadyReason(st, h.prov.state(), h.cfg))
}

// notReadyReason says why an enclave that is not ready is not, and what
// to do about it.
func notReadyReason(st *wire.Status, ss shimState, cfg *Config) string {
	var msg string
	switch st.State {
	case wire.StateWaiting:
		msg = "the enclave is waiting to be provisioned"
	case wire.StateProvisioning:
		msg = "the enclave is being provisioned"
	case wire.StateFailed:
		msg = "provisioning failed"
		if e := st.Error; e != nil {
			msg += describeStatusError(e)
			if len(e.PCR0) > 0 {
				msg += "; PCR0 presented: " + hex.EncodeToString(e.PCR0)
			}
		}
	default:
		msg = "the enclave is in state " + strconv.Quote(string(st.State))
	}
	if st.State == wire.StateFailed && st.Error != nil {
		msg += "; to fix: " + hint(st.Error, cfg)
	}
	if ss.LastError != "" && st.State != wire.StateFailed {
		msg += "; last attempt: " + ss.LastError
	}
	if ss.LastErrorPermanent {
		msg += "; not retried automatically, as the same inputs would fail again: fix the cause, then signer provision (POST /v1/provision)"
	}
	if ss.NextAttempt != nil {
		msg += "; next attempt at " + ss.NextAttempt.Format(time.RFC3339)
	}
	return msg
}

// statusJSON is the JSON rendering of wire.Status (GET /v1/status), plus
// the shim's own provisioning state.
type statusJSON struct {
	State       wire.State       `json:"state"`
	Attestation string           `json:"attestation"`
	DebugMode   bool             `json:"debug_mode"`
	PCRs        pcr.HexMap       `json:"pcrs"`
	Keys        int              `json:"keys"`
	Error       *statusErrorJSON `json:"error,omitempty"`
	Version     string           `json:"version"`
	Pinned      bool             `json:"pinned"`
	Pins        *pinsJSON        `json:"pins,omitempty"`
	Auth        *authJSON        `json:"auth,omitempty"`
	Audit       *auditJSON       `json:"audit,omitempty"`
	Shim        shimState        `json:"shim"`
}

// authJSON renders wire.AuthStatus.
type authJSON struct {
	RequireAuth        bool     `json:"require_auth"`
	Policed            bool     `json:"policed"`
	Clients            int      `json:"clients"`
	Audiences          []string `json:"audiences"`
	ClockOK            bool     `json:"clock_ok"`
	ClockSkewMillis    int64    `json:"clock_skew_ms"`
	ClockChecked       int64    `json:"clock_checked"`
	NonceCacheSize     int      `json:"nonce_cache_size"`
	NonceCacheCapacity int      `json:"nonce_cache_capacity"`
	Unauthenticated    uint64   `json:"unauthenticated"`
	Forbidden          uint64   `json:"forbidden"`
	RateLimited        uint64   `json:"rate_limited"`
	AuthUnavailable    uint64   `json:"auth_unavailable"`
}

// auditJSON renders wire.AuditStatus: signerd's audit buffer.
type auditJSON struct {
	Buffered   uint64     `json:"buffered"`
	Capacity   uint64     `json:"capacity"`
	State      string     `json:"state"`
	Unrecorded uint64     `json:"unrecorded"`
	Refused    uint64     `json:"refused"`
	LastSeq    uint64     `json:"last_seq"`
	LastDrain  *time.Time `json:"last_drain,omitempty"`
}

// pinsJSON renders wire.Pins.
type pinsJSON struct {
	KMSKeys          []string `json:"kms_keys"`
	KeyringSigners   []string `json:"keyring_signers,omitempty"`
	KeyringThreshold int      `json:"keyring_threshold,omitempty"`
	RequireAuth      bool     `json:"require_auth,omitempty"`
	AuditOverflow    string   `json:"audit_overflow,omitempty"`
}

type statusErrorJSON struct {
	Step       string `json:"step"`
	Message    string `json:"message"`
	KMSCode    string `json:"kms_code,omitempty"`
	KMSMessage string `json:"kms_message,omitempty"`
	PCR0       string `json:"pcr0,omitempty"`
	Hint       string `json:"hint,omitempty"` // what to do, from the shim (hint.go)
}

func renderStatus(st *wire.Status, ss shimState, cfg *Config) statusJSON {
	out := statusJSON{
		State: st.State, Attestation: st.Attestation, DebugMode: st.DebugMode,
		PCRs: make(pcr.HexMap, len(st.PCRs)), Keys: st.Keys, Version: st.Version, Shim: ss,
		Pinned: st.Pinned,
	}
	if st.Pins != nil {
		out.Pins = &pinsJSON{KMSKeys: st.Pins.KMSKeys, KeyringSigners: st.Pins.KeyringSigners, KeyringThreshold: st.Pins.KeyringThreshold, RequireAuth: st.Pins.RequireAuth, AuditOverflow: st.Pins.AuditOverflow}
	}
	if a := st.Auth; a != nil {
		out.Auth = &authJSON{RequireAuth: a.RequireAuth, Policed: a.Policed, Clients: a.Clients, Audiences: a.Audiences,
			ClockOK: a.ClockOK, ClockSkewMillis: a.ClockSkewMillis, ClockChecked: a.ClockChecked,
			NonceCacheSize: a.NonceCacheSize, NonceCacheCapacity: a.NonceCacheCapacity,
			Unauthenticated: a.Unauthenticated, Forbidden: a.Forbidden, RateLimited: a.RateLimited, AuthUnavailable: a.AuthUnavailable}
		if out.Auth.Audiences == nil {
			out.Auth.Audiences = []string{}
		}
	}
	if a := st.Audit; a != nil {
		out.Audit = &auditJSON{Buffered: a.Buffered, Capacity: a.Capacity, State: a.State, Unrecorded: a.Unrecorded, Refused: a.Refused, LastSeq: a.LastSeq}
		if a.LastDrain > 0 {
			out.Audit.LastDrain = timePtr(time.UnixMilli(int64(a.LastDrain)))
		}
	}
	for i, v := range st.PCRs {
		out.PCRs[int(i)] = v
	}
	if e := st.Error; e != nil {
		out.Error = &statusErrorJSON{Step: e.Step, Message: e.Message, KMSCode: e.KMSCode, KMSMessage: e.KMSMessage, Hint: hint(e, cfg)}
		if len(e.PCR0) > 0 {
			out.Error.PCR0 = hex.EncodeToString(e.PCR0)
		}
	}
	return out
}

func (h *api) status(w http.ResponseWriter, r *http.Request) int {
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	st, err := h.client.Status(ctx)
	cancel()
	h.prov.observe(st, err)
	if err != nil {
		return h.enclaveFailure(w, err)
	}
	return h.writeJSON(w, http.StatusOK, renderStatus(st, h.shimState(), h.cfg))
}

func (h *api) provision(w http.ResponseWriter, r *http.Request) int {
	// Provisioning runs to its end even if the caller hangs up: stopping
	// it halfway would only leave the enclave failed.
	st, err := h.prov.provision(context.WithoutCancel(r.Context()))
	if err == nil {
		return h.writeJSON(w, http.StatusOK, renderStatus(st, h.shimState(), h.cfg))
	}
	status, code := http.StatusInternalServerError, codeInternal
	switch {
	case errors.Is(err, wireclient.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		status, code = http.StatusServiceUnavailable, codeNotReady
	case errors.Is(err, wire.ErrForbidden):
		status, code = http.StatusForbidden, codeForbidden
	}
	h.metrics.countError(code)
	body := map[string]any{"error": map[string]string{"code": code, "message": err.Error()}}
	if st != nil {
		body["status"] = renderStatus(st, h.shimState(), h.cfg)
	}
	data, _ := json.Marshal(body)
	w.Header()["Content-Type"] = jsonContentType
	w.Header()["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
	return status
}

type keyJSON struct {
	ID              string `json:"id"`
	Algorithm       string `json:"algorithm"`
	PublicKeyPEM    string `json:"public_key_pem"`
	EthereumAddress string `json:"ethereum_address,omitempty"`
}

func (h *api) keys(w http.ResponseWriter, r *http.Request) int {
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	kl, err := h.client.KeyList(ctx)
	cancel()
	if err != nil {
		return h.enclaveFailure(w, err)
	}
	// keyset_digest is passed on as signerd sent it: a relying party
	// recomputes it from the keys (it is here to compare by eye, and with
	// the "keyset" of an attestation document's user_data).
	out := struct {
		Keys         []keyJSON `json:"keys"`
		KeySetDigest string    `json:"keyset_digest,omitempty"`
	}{Keys: make([]keyJSON, len(kl.Keys)), KeySetDigest: hex.EncodeToString(kl.KeySetDigest)}
	for i, k := range kl.Keys {
		out.Keys[i] = keyJSON{ID: k.ID, Algorithm: k.Algorithm, PublicKeyPEM: k.PublicKeyPEM, EthereumAddress: k.EthereumAddress}
	}
	return h.writeJSON(w, http.StatusOK, out)
}

func (h *api) sign(w http.ResponseWriter, r *http.Request) int {
	if _, ok := r.Header["Authorization"]; ok {
		return h.authSign(w, r)
	}
	id := r.PathValue("id")
	if id == "" || !utf8.ValidString(id) {
		// Sent on, a non-UTF-8 id would be a malformed frame, which
		// closes the connection and fails every request on it.
		return h.fail(w, http.StatusBadRequest, codeMalformed, "key id: want a non-empty UTF-8 string")
	}
	b := getBuffers()
	defer putBuffers(b)
	var err error
	b.in, err = readBody(w, r, b.in)
	if err != nil {
		return h.bodyFailure(w, err)
	}
	sb, err := signreq.ParseBody(b.in)
	if err != nil {
		return h.fail(w, http.StatusBadRequest, codeMalformed, err.Error())
	}
	data, err := sb.Decode(b.data)
	if err != nil {
		return h.fail(w, http.StatusBadRequest, codeMalformed, err.Error())
	}
	b.data = data
	if data == nil {
		data = []byte{} // an empty message is still sent as one
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	resp, err := h.client.Sign(ctx, &wire.SignRequest{KeyID: id, Data: data, IsDigest: sb.IsDigest})
	cancel()
	if err != nil {
		return h.enclaveFailure(w, err)
	}
	return writeSignResponse(w, b, resp)
}

// writeSignResponse answers 200 with resp, encoded into b.out.
func writeSignResponse(w http.ResponseWriter, b *buffers, resp *wire.SignResponse) int {
	b.out = appendSignResponse(b.out[:0], resp.KeyID, resp.Algorithm, resp.Signature, resp.RecoveryID, resp.SignatureRSV)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	w.Write(b.out)
	return http.StatusOK
}

// authSign forwards an authenticated sign request as it came: method,
// request target, body bytes and Authorization header, unchanged and
// unparsed. signerd verifies the MAC over exactly these bytes and reads
// the key and what to sign from them alone; anything the shim changed
// would fail the MAC.
func (h *api) authSign(w http.ResponseWriter, r *http.Request) int {
	auth := r.Header["Authorization"]
	if len(auth) != 1 {
		h.challenge(w)
		return h.fail(w, http.StatusUnauthorized, codeUnauthenticated, fmt.Sprintf("%d Authorization headers: want one", len(auth)))
	}
	b := getBuffers()
	defer putBuffers(b)
	var err error
	b.in, err = readBody(w, r, b.in)
	if err != nil {
		return h.bodyFailure(w, err)
	}
	body := b.in
	if body == nil {
		body = []byte{}
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	resp, err := h.client.AuthSign(ctx, &wire.AuthSignRequest{Method: r.Method, Path: r.RequestURI, Body: body, Authorization: auth[0]})
	cancel()
	if err != nil {
		return h.enclaveFailure(w, err)
	}
	return writeSignResponse(w, b, resp)
}

func (h *api) attest(w http.ResponseWriter, r *http.Request) int {
	b := getBuffers()
	defer putBuffers(b)
	var err error
	b.in, err = readBody(w, r, b.in)
	if err != nil {
		return h.bodyFailure(w, err)
	}
	var req struct {
		Nonce    []byte `json:"nonce"`
		UserData []byte `json:"user_data"`
	}
	if len(bytes.TrimSpace(b.in)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(b.in))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return h.fail(w, http.StatusBadRequest, codeMalformed, `want {"nonce": BASE64, "user_data": BASE64}, both optional: `+err.Error())
		}
		if _, err := dec.Token(); err != io.EOF {
			return h.fail(w, http.StatusBadRequest, codeMalformed, "unexpected data after the JSON object")
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	doc, err := h.client.Attest(ctx, req.Nonce, req.UserData)
	cancel()
	if err != nil {
		return h.enclaveFailure(w, err)
	}
	return h.writeJSON(w, http.StatusOK, map[string][]byte{"document": doc})
}

// auditHead is GET /v1/audit/head?nonce=HEX: the enclave's audit chain
// end signed with the caller's nonce, as JSON (docs/audit.md#heads).
func (h *api) auditHead(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	nonce, err := hex.DecodeString(q.Get("nonce"))
	if err == nil {
		err = audit.CheckNonce(nonce)
	}
	if err != nil || len(q) != 1 || len(q["nonce"]) != 1 {
		return h.fail(w, http.StatusBadRequest, codeMalformed, fmt.Sprintf("want ?nonce=HEX, the only parameter: %d to %d random bytes in hex", audit.MinNonceSize, audit.MaxNonceSize))
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	hd, err := h.client.AuditHead(ctx, nonce)
	cancel()
	if err != nil {
		return h.enclaveFailure(w, err)
	}
	head := &audit.Head{AuditKey: hd.AuditKey, Seq: hd.Seq, Time: time.Unix(0, hd.Time), Nonce: hd.Nonce, Sig: hd.Sig}
	copy(head.Hash[:], hd.Hash)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	w.Write(append(head.AppendJSON(nil), '\n'))
	return http.StatusOK
}

func (h *api) serveMetrics(w http.ResponseWriter, r *http.Request) int {
	g := gauges{state: "unreachable", connects: h.client.Connects()}
	if s := h.prov.seen.Load(); s != nil && s.st != nil {
		g.state, g.keys, g.auth = string(s.st.State), s.st.Keys, s.st.Auth
	}
	ss := h.prov.state()
	if ss.CredentialsExpiration != nil {
		g.credsExpire = *ss.CredentialsExpiration
	}
	if ss.LastSuccess != nil {
		g.lastProvided = *ss.LastSuccess
	}
	if s := h.prov.seen.Load(); s != nil && s.st != nil && s.st.Audit != nil {
		g.audit = s.st.Audit
	}
	if h.audit != nil {
		st := h.audit.state()
		g.auditLog = &st
	}
	w.Header()["Content-Type"] = metricsContentType
	w.WriteHeader(http.StatusOK)
	h.metrics.write(w, g)
	return http.StatusOK
}

package shim

import (
	"io"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// Metrics are written in the Prometheus text exposition format (0.0.4) by
// hand rather than with prometheus/client_golang: the set is small and
// fixed, every counter is a plain atomic (no locks or label-map lookups on
// the request path), and the shim keeps its dependency tree to the AWS SDK.

// statusCodes are the HTTP statuses the API answers; others count as "other".
var statusCodes = [...]int{200, 400, 401, 403, 404, 405, 413, 415, 422, 429, 500, 503}

const nStatus = len(statusCodes) + 1

func statusIndex(code int) int {
	for i, c := range statusCodes {
		if c == code {
			return i
		}
	}
	return len(statusCodes)
}

// errorCodes are the API's error codes, counted by signer_http_errors_total.
var errorCodes = [...]string{
	codeMalformed, codeUnknownKey, codeTooLarge, codeInvalidDigest, codeDigestNotAllowed,
	codeInternal, codeNotReady, codeNotFound, codeMethodNotAllowed, codeForbiddenOrigin, codeUnsupportedMedia, codeForbidden,
	codeUnauthenticated, codeRateLimited, codeAuthUnavailable, codeAuditUnavailable,
}

// latencyBuckets are the histogram's upper bounds in seconds.
var latencyBuckets = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type routeMetrics struct {
	name     string
	byStatus [nStatus]atomic.Uint64
	buckets  [len(latencyBuckets) + 1]atomic.Uint64 // per bucket, not cumulative; last is +Inf
	sumNanos atomic.Uint64
}

func (m *routeMetrics) observe(status int, d time.Duration) {
	m.byStatus[statusIndex(status)].Add(1)
	s := d.Seconds()
	i := 0
	for i < len(latencyBuckets) && s > latencyBuckets[i] {
		i++
	}
	m.buckets[i].Add(1)
	m.sumNanos.Add(uint64(max(d, 0)))
}

type metrics struct {
	routes     []*routeMetrics
	errors     [len(errorCodes)]atomic.Uint64
	provisions [2]atomic.Uint64 // ok, failed
}

func (m *metrics) route(name string) *routeMetrics {
	r := &routeMetrics{name: name}
	m.routes = append(m.routes, r)
	return r
}

func (m *metrics) countError(code string) {
	for i, c := range errorCodes {
		if c == code {
			m.errors[i].Add(1)
			return
		}
	}
}

// gauges are the values read when metrics are scraped.
type gauges struct {
	state        string // an enclave state, or "unreachable"
	keys         int
	credsExpire  time.Time
	connects     uint64
	lastProvided time.Time
	auth         *wire.AuthStatus  // from the status last seen; nil from a signerd without it
	audit        *wire.AuditStatus // the enclave's audit buffer, as last seen; nil if unknown
	auditLog     *AuditLogState    // the shim's drain; nil without audit_log
}

var (
	auditStates    = [...]string{wire.AuditOK, wire.AuditFull, wire.AuditDropping}
	auditLogStates = [...]string{"draining", "paused", "failing"}
)

var enclaveStates = [...]string{string(wire.StateWaiting), string(wire.StateProvisioning), string(wire.StateReady), string(wire.StateFailed), "unreachable"}

func (m *metrics) write(w io.Writer, g gauges) error {
	b := make([]byte, 0, 16<<10)
	header := func(name, typ, help string) {
		b = append(b, "# HELP "...)
		b = append(b, name...)
		b = append(b, ' ')
		b = append(b, help...)
		b = append(b, "\n# TYPE "...)
		b = append(b, name...)
		b = append(b, ' ')
		b = append(b, typ...)
		b = append(b, '\n')
	}
	sample := func(name, labels string, v float64) {
		b = append(b, name...)
		if labels != "" {
			b = append(b, '{')
			b = append(b, labels...)
			b = append(b, '}')
		}
		b = append(b, ' ')
		b = appendFloat(b, v)
		b = append(b, '\n')
	}
	route := func(r *routeMetrics) string { return `route=` + strconv.Quote(r.name) }

	header("signer_http_requests_total", "counter", "HTTP requests answered, by route and status code.")
	for _, r := range m.routes {
		for i := range nStatus {
			n := r.byStatus[i].Load()
			if n == 0 {
				continue
			}
			code := "other"
			if i < len(statusCodes) {
				code = strconv.Itoa(statusCodes[i])
			}
			sample("signer_http_requests_total", route(r)+`,code="`+code+`"`, float64(n))
		}
	}
	header("signer_http_errors_total", "counter", "HTTP error answers, by API error code.")
	for i, c := range errorCodes {
		sample("signer_http_errors_total", `code="`+c+`"`, float64(m.errors[i].Load()))
	}
	header("signer_http_request_duration_seconds", "histogram", "Time to answer HTTP requests, by route.")
	for _, r := range m.routes {
		var cum uint64
		for i := range r.buckets {
			cum += r.buckets[i].Load()
			le := "+Inf"
			if i < len(latencyBuckets) {
				le = strconv.FormatFloat(latencyBuckets[i], 'g', -1, 64)
			}
			sample("signer_http_request_duration_seconds_bucket", route(r)+`,le="`+le+`"`, float64(cum))
		}
		sample("signer_http_request_duration_seconds_sum", route(r), float64(r.sumNanos.Load())/1e9)
		sample("signer_http_request_duration_seconds_count", route(r), float64(cum))
	}
	header("signer_enclave_state", "gauge", "The enclave's state as the shim last saw it: 1 for the current state, 0 for the others.")
	for _, s := range enclaveStates {
		v := 0.0
		if s == g.state {
			v = 1
		}
		sample("signer_enclave_state", `state="`+s+`"`, v)
	}
	header("signer_enclave_keys", "gauge", "Keys loaded in the enclave, as last seen.")
	sample("signer_enclave_keys", "", float64(g.keys))
	header("signer_enclave_connects_total", "counter", "Connections opened to the enclave (one more each time it is redialed).")
	sample("signer_enclave_connects_total", "", float64(g.connects))
	if a := g.auth; a != nil {
		writeAuth(header, sample, a)
	}
	header("signer_provisions_total", "counter", "Provisioning attempts, by result.")
	sample("signer_provisions_total", `result="ok"`, float64(m.provisions[0].Load()))
	sample("signer_provisions_total", `result="failed"`, float64(m.provisions[1].Load()))
	header("signer_last_provision_timestamp_seconds", "gauge", "Unix time of the last successful provisioning; 0 if none.")
	sample("signer_last_provision_timestamp_seconds", "", unixSeconds(g.lastProvided))
	header("signer_credentials_expiry_timestamp_seconds", "gauge", "Unix time at which the credentials last pushed to the enclave expire; 0 if they do not or none were pushed.")
	sample("signer_credentials_expiry_timestamp_seconds", "", unixSeconds(g.credsExpire))
	if a := g.audit; a != nil {
		header("signer_audit_buffered", "gauge", "Audit records in the enclave's buffer waiting to be drained, as last seen.")
		sample("signer_audit_buffered", "", float64(a.Buffered))
		header("signer_audit_capacity", "gauge", "How many audit records the enclave's buffer holds.")
		sample("signer_audit_capacity", "", float64(a.Capacity))
		header("signer_audit_state", "gauge", "The enclave's audit buffer: 1 for its state (ok, full: signing refused, dropping: gap entries), 0 for the others.")
		for _, s := range auditStates {
			sample("signer_audit_state", `state="`+s+`"`, boolValue(s == a.State))
		}
		header("signer_audit_refused_total", "counter", "Sign requests the enclave refused with audit_unavailable since it started.")
		sample("signer_audit_refused_total", "", float64(a.Refused))
		header("signer_audit_unrecorded_total", "counter", "Decisions the enclave counted into gap entries (its buffer was full) since it started.")
		sample("signer_audit_unrecorded_total", "", float64(a.Unrecorded))
		header("signer_audit_last_sequence", "gauge", "The sequence number of the enclave's last audit entry.")
		sample("signer_audit_last_sequence", "", float64(a.LastSeq))
	}
	if l := g.auditLog; l != nil {
		header("signer_audit_log_state", "gauge", "The shim's audit drain: 1 for its state (draining, paused by the test hook, failing), 0 for the others.")
		for _, s := range auditLogStates {
			sample("signer_audit_log_state", `state="`+s+`"`, boolValue(s == l.State))
		}
		header("signer_audit_log_records_total", "counter", "Audit records (entries and checkpoints) appended to audit_log since the shim started.")
		sample("signer_audit_log_records_total", "", float64(l.Records))
		header("signer_audit_log_boots_total", "counter", "Boot records appended to audit_log since the shim started.")
		sample("signer_audit_log_boots_total", "", float64(l.Boots))
		header("signer_audit_log_errors_total", "counter", "Failed attempts to drain the audit trail into audit_log.")
		sample("signer_audit_log_errors_total", "", float64(l.Errors))
		header("signer_audit_log_last_sequence", "gauge", "The sequence number of the last audit record appended to audit_log.")
		sample("signer_audit_log_last_sequence", "", float64(l.LastSeq))
	}
	_, err := w.Write(b)
	return err
}

// writeAuth writes the enclave's authentication state, as last seen.
func writeAuth(header func(name, typ, help string), sample func(name, labels string, v float64), a *wire.AuthStatus) {
	header("signer_enclave_clock_ok", "gauge", "1 while the enclave's clock agrees with its NSM's (authenticated requests are refused otherwise), as last seen.")
	sample("signer_enclave_clock_ok", "", boolValue(a.ClockOK))
	header("signer_enclave_nonce_cache_nonces", "gauge", "Nonces of authenticated requests the enclave remembers, as last seen.")
	sample("signer_enclave_nonce_cache_nonces", "", float64(a.NonceCacheSize))
	header("signer_enclave_nonce_cache_capacity", "gauge", "How many nonces the enclave can remember (signerd --nonce-cache); when full it refuses authenticated requests.")
	sample("signer_enclave_nonce_cache_capacity", "", float64(a.NonceCacheCapacity))
	header("signer_enclave_sign_refusals_total", "counter", "Sign requests the enclave refused since it started, by reason, as last seen.")
	for _, r := range []struct {
		reason string
		n      uint64
	}{{"unauthenticated", a.Unauthenticated}, {"forbidden", a.Forbidden}, {"rate_limited", a.RateLimited}, {"auth_unavailable", a.AuthUnavailable}} {
		sample("signer_enclave_sign_refusals_total", `reason="`+r.reason+`"`, float64(r.n))
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

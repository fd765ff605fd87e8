package doctor

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

const maxShimResponse = 1 << 20

// ShimStatus is the host shim's GET /v1/status answer.
type ShimStatus struct {
	State       string            `json:"state"` // waiting, provisioning, ready or failed
	Attestation string            `json:"attestation"`
	DebugMode   bool              `json:"debug_mode"`
	PCRs        map[string]string `json:"pcrs"`
	Keys        int               `json:"keys"`
	Error       *StatusError      `json:"error,omitempty"`
	Version     string            `json:"version"`
	// Pinned says whether signerd accepts an identity only under the KMS
	// keys of Pins; nil when the status has no such field (a signerd or
	// shim older than key pinning, so unpinned).
	Pinned *bool `json:"pinned"`
	Pins   *struct {
		KMSKeys          []string `json:"kms_keys"`
		KeyringSigners   []string `json:"keyring_signers"`
		KeyringThreshold int      `json:"keyring_threshold"`
	} `json:"pins"`
	// Auth is signerd's authentication of sign requests; nil from a
	// signerd older than it.
	Auth *struct {
		RequireAuth        bool  `json:"require_auth"`
		Policed            bool  `json:"policed"`
		ClockOK            bool  `json:"clock_ok"`
		ClockSkewMillis    int64 `json:"clock_skew_ms"`
		NonceCacheSize     int   `json:"nonce_cache_size"`
		NonceCacheCapacity int   `json:"nonce_cache_capacity"`
	} `json:"auth"`
	// Shim is the shim's own provisioning state (enclave-signer's shim
	// adds it to the enclave's status).
	Shim struct {
		// Enclave is the address the shim reaches signerd at, e.g.
		// vsock://16:5005.
		Enclave   string `json:"enclave"`
		LastError string `json:"last_error"`
	} `json:"shim"`
}

// StatusError is the error of a failed status: what failed, KMS's error
// code and message, and the PCR0 the enclave presented.
type StatusError struct {
	Step       string `json:"step"`
	Message    string `json:"message"`
	KMSCode    string `json:"kms_code"`
	KMSMessage string `json:"kms_message"`
	PCR0       string `json:"pcr0"`
}

// UnmarshalJSON accepts the error as an object or, from a shim that
// renders it flat, a string (the message).
func (e *StatusError) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*e = StatusError{Message: s}
		return nil
	}
	type plain StatusError
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("status error: %v", err)
	}
	*e = StatusError(p)
	return nil
}

// PCR returns PCR n as lowercase hex, "" when absent. Values may be hex or,
// from a shim that renders bytes as JSON does, base64.
func (s *ShimStatus) PCR(n int) string {
	return pcrHex(s.PCRs[fmt.Sprint(n)])
}

func pcrHex(v string) string {
	if v == "" {
		return ""
	}
	if b, err := hex.DecodeString(v); err == nil && len(b) == 48 {
		return strings.ToLower(v)
	}
	if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) == 48 {
		return hex.EncodeToString(b)
	}
	return strings.ToLower(v)
}

type shimFacts struct {
	results []Result
	status  *ShimStatus // nil when the shim did not answer /v1/status
}

type shimAnswer struct {
	status int
	body   []byte
}

func shimGet(ctx context.Context, cfg *Config, base, path string) (*shimAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := cfg.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxShimResponse+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %v", path, err)
	}
	if len(body) > maxShimResponse {
		return nil, fmt.Errorf("%s: answer longer than %d bytes", path, maxShimResponse)
	}
	return &shimAnswer{resp.StatusCode, body}, nil
}

// apiErrorMessage returns the message of the shim's error body
// {"error": {"code", "message"}}, or the body itself, on one line.
func apiErrorMessage(body []byte) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && (e.Error.Message != "" || e.Error.Code != "") {
		if e.Error.Code != "" && e.Error.Message != "" {
			return oneLine(e.Error.Code+": "+e.Error.Message, 400)
		}
		return oneLine(e.Error.Code+e.Error.Message, 400)
	}
	if len(body) == 0 {
		return "(empty body)"
	}
	return oneLine(string(body), 400)
}

func checkShim(ctx context.Context, cfg *Config, enclave *Enclave) shimFacts {
	res := func(s Status, fix, format string, a ...any) Result {
		return Result{Check: CheckShim, Status: s, Message: fmt.Sprintf(format, a...), Fix: fix}
	}
	var f shimFacts
	if cfg.HTTP == nil {
		f.results = append(f.results, res(Skipped, "", "no HTTP client configured"))
		return f
	}
	base := trimBase(cfg.ShimEndpoint, DefaultShimEndpoint)
	health, err := shimGet(ctx, cfg, base, "/healthz")
	if err != nil {
		f.results = append(f.results, res(Error,
			"start the shim: signer serve --config FILE (or its systemd unit); if it listens elsewhere, pass --endpoint URL",
			"the shim at %s does not answer: %s", base, oneLine(errText(err), 300)))
		return f
	}
	if health.status != http.StatusOK {
		f.results = append(f.results, res(Error, "check the shim's log; --endpoint must name the shim's --http address",
			"the shim at %s answers /healthz with HTTP %d: %s", base, health.status, apiErrorMessage(health.body)))
		return f
	}
	ready, err := shimGet(ctx, cfg, base, "/readyz")
	if err != nil {
		f.results = append(f.results, res(Error, "check the shim's log", "the shim at %s: /readyz: %s", base, oneLine(errText(err), 300)))
		return f
	}
	readyMsg := ""
	if ready.status != http.StatusOK {
		readyMsg = fmt.Sprintf("/readyz answers HTTP %d: %s", ready.status, apiErrorMessage(ready.body))
	}

	st, err := shimGet(ctx, cfg, base, "/v1/status")
	if err == nil && st.status == http.StatusServiceUnavailable {
		f.results = append(f.results, res(Error,
			"the enclave must be running (see nitro-cli above) and the shim's config must name it: \"enclave\": \"vsock://CID:5005\" with the CID nitro-cli describe-enclaves shows",
			"the shim at %s cannot reach the enclave: /v1/status answers HTTP 503: %s", base, apiErrorMessage(st.body)))
		return f
	}
	if err == nil && st.status != http.StatusOK {
		err = fmt.Errorf("HTTP %d: %s", st.status, apiErrorMessage(st.body))
	}
	var status ShimStatus
	if err == nil {
		if jerr := json.Unmarshal(st.body, &status); jerr != nil {
			err = fmt.Errorf("not a status object: %v", jerr)
		}
	}
	if err != nil {
		msg := fmt.Sprintf("the shim at %s: /v1/status: %s", base, oneLine(errText(err), 300))
		if readyMsg != "" {
			msg += "; " + readyMsg
		}
		f.results = append(f.results, res(Error, "check that --endpoint names enclave-signer's shim and that signer and signerd are the same version", "%s", msg))
		return f
	}
	f.status = &status

	detail := []string{}
	if status.Attestation != "" {
		detail = append(detail, "attestation "+oneLine(status.Attestation, 20))
	}
	if p := status.PCR(0); p != "" {
		detail = append(detail, "PCR0 "+short(p))
	}
	if status.DebugMode {
		detail = append(detail, "debug mode")
	}
	if status.Version != "" {
		detail = append(detail, "signerd "+oneLine(status.Version, 40))
	}
	switch status.State {
	case "ready":
		if readyMsg != "" {
			f.results = append(f.results, res(Error, "check the shim's log; signer provision asks it to provision again",
				"state ready with %s, but %s", plural(status.Keys, "key"), readyMsg))
			break
		}
		f.results = append(f.results, res(OK, "", "%s: ready, %s (%s)", base, plural(status.Keys, "key"), strings.Join(detail, ", ")))
		if status.Attestation == "simulated" {
			f.results = append(f.results, res(Warning,
				"production enclaves run signerd with --attestation nsm (the default); simulated attestation is for signer dev",
				"signerd runs with simulated attestation: its keys are not protected by a Nitro enclave"))
		}
	case "waiting", "provisioning":
		msg := fmt.Sprintf("state %s: the enclave has no keys yet", status.State)
		if readyMsg != "" {
			msg += "; " + readyMsg
		}
		if e := status.Shim.LastError; e != "" && !strings.Contains(msg, e) {
			msg += "; the shim's last attempt: " + oneLine(e, 300)
		}
		f.results = append(f.results, res(Warning,
			"wait a few seconds and run doctor again; if it stays there, the shim cannot provision: its log and signer status say why",
			"%s", msg))
	case "failed":
		msg, fix := explainFailure(status.Error)
		if readyMsg != "" && !strings.Contains(readyMsg, msg) {
			msg += "; " + readyMsg
		}
		f.results = append(f.results, res(Error, fix, "provisioning failed: %s", msg))
	default:
		f.results = append(f.results, res(Error, "signer and signerd must be the same version",
			"/v1/status has state %q, want waiting, provisioning, ready or failed", oneLine(status.State, 40)))
	}
	if r, ok := checkPinned(&status); ok {
		f.results = append(f.results, r)
	}
	if r, ok := checkKeyringSigners(&status); ok {
		f.results = append(f.results, r)
	}
	f.results = append(f.results, checkAuth(&status)...)
	// The shim must talk to the enclave nitro-cli runs.
	if cid, ok := vsockCID(status.Shim.Enclave); ok && enclave != nil && cid != enclave.EnclaveCID {
		f.results = append(f.results, res(Error,
			fmt.Sprintf("set \"enclave\": \"vsock://%d:PORT\" in the shim's config (or run the enclave with --enclave-cid %d)", enclave.EnclaveCID, cid),
			"the shim reaches the enclave at %s, but the running enclave has CID %d", oneLine(status.Shim.Enclave, 60), enclave.EnclaveCID))
	}
	return f
}

// checkPinned reports a signerd that pins no KMS key: it accepts an
// identity sealed under any key, so whoever can provision it (root on
// the parent) can load keys of its own choosing. An error on a production
// enclave, a warning in debug mode (whose parent can read the enclave's
// memory anyway). Nothing to report when pinned.
func checkPinned(st *ShimStatus) (Result, bool) {
	if st.Pinned != nil && *st.Pinned {
		return Result{}, false
	}
	msg := "signerd pins no KMS key: it accepts an identity sealed under any KMS key, so whoever can provision it (root on this parent) can load signing keys of its own choosing, and callers would trust them"
	if st.Pinned == nil {
		msg = "the status says nothing of pinned KMS keys (a signerd or shim older than key pinning): " + msg
	}
	status := Error
	if st.DebugMode {
		status = Warning
		msg += " (a debug-mode enclave: for development only)"
	}
	return Result{Check: CheckShim, Status: status, Message: msg,
		Fix: "build the image with the KMS key the identity is sealed under pinned, make image KMS_KEYS=arn:aws:kms:REGION:ACCOUNT:key/ID, then make eif and signer policy update --key-id KEY --measurements measurements.json for its new PCR0 (docs/image.md, Pins)"}, true
}

// checkKeyringSigners reports a signerd that pins its KMS key but no
// keyring signer: it loads any keyring encrypted to the identity's public
// recipient, so root on the parent can add keys of its own under the real
// key ids without touching the identity. Only a status that lists the pins
// (from a signerd that knows signed keyrings) is judged; an unpinned one
// has checkPinned's error already.
func checkKeyringSigners(st *ShimStatus) (Result, bool) {
	if st.Pinned == nil || !*st.Pinned || st.Pins == nil || len(st.Pins.KeyringSigners) > 0 {
		return Result{}, false
	}
	status := Error
	msg := "signerd pins no keyring signer: it loads any keyring encrypted to its identity's public recipient (recipient.txt), so whoever can provision it (root on this parent) can add signing keys of its own under the real key ids, and callers would trust them"
	if st.DebugMode {
		status = Warning
		msg += " (a debug-mode enclave: for development only)"
	}
	return Result{Check: CheckShim, Status: status, Message: msg,
		Fix: "sign the keyrings (signer keyring sign --sign-with kms:KEY or file:KEY.pem) and build the image with that signer pinned, make image KMS_KEYS=… KEYRING_SIGNERS=$(signer keyring signer-key SIGNER), then make eif and signer policy update for its new PCR0 (docs/keyring.md, docs/image.md)"}, true
}

// nonceCacheWarn is the share of the nonce cache in use from which doctor
// warns: when it is full, authenticated requests are refused.
const nonceCacheWarn = 0.8

// checkAuth reports on a ready signerd's authentication of sign requests
// (docs/protocol.md, Authenticated sign requests): keyrings that declare
// no clients, a clock the NSM does not confirm, a nonce cache filling up.
// Nothing from a signerd that predates it.
func checkAuth(st *ShimStatus) []Result {
	a := st.Auth
	if a == nil || st.State != "ready" {
		return nil
	}
	var out []Result
	if !a.RequireAuth {
		msg := "signerd does not pin --require-auth, and the loaded keyrings declare no clients: any process that reaches the shim (or signerd's vsock port) signs with every key, at any rate"
		fix := "declare clients and key policies in the keyrings (signer keyring new --client …; docs/keyring.md), sign requests as a client (docs/shim.md, Authenticated requests), and build the image with make image REQUIRE_AUTH=true"
		if a.Policed {
			msg = "signerd does not pin --require-auth: its keyrings declare clients now, but a keyring without clients, signed by a keyring signer, would load and sign for anyone"
			fix = "build the image with make image REQUIRE_AUTH=true, then make eif and signer policy update for its new PCR0 (docs/image.md)"
		}
		out = append(out, Result{Check: CheckShim, Status: Warning, Message: msg, Fix: fix})
	}
	if !a.ClockOK {
		out = append(out, Result{Check: CheckShim, Status: Error,
			Message: fmt.Sprintf("signerd's clock is not confirmed by its NSM's (skew %d ms at the last check, 60 s allowed): it refuses every authenticated request (auth_unavailable)", a.ClockSkewMillis),
			Fix:     "restart the enclave (signerd takes its clock from the enclave at start); if it persists, the enclave's clock source is broken: see signerd's log"})
	}
	if a.NonceCacheCapacity > 0 && float64(a.NonceCacheSize) >= nonceCacheWarn*float64(a.NonceCacheCapacity) {
		out = append(out, Result{Check: CheckShim, Status: Warning,
			Message: fmt.Sprintf("signerd's nonce cache holds %d of %d nonces: when it is full, authenticated requests are refused (auth_unavailable)", a.NonceCacheSize, a.NonceCacheCapacity),
			Fix:     "size --nonce-cache at 60 times the peak authenticated requests per second (docs/signerd.md)"})
	}
	return out
}

// vsockCID returns the CID of a vsock://CID:PORT address.
func vsockCID(addr string) (uint64, bool) {
	rest, ok := strings.CutPrefix(addr, "vsock://")
	if !ok {
		return 0, false
	}
	cid, _, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(cid, 10, 32)
	return n, err == nil
}

// explainFailure maps a failed provisioning to a message and a fix: the
// operator guide's three errors (AccessDenied, KMS proxy connection
// failed, InvalidCiphertext) and the other KMS errors signerd can meet.
func explainFailure(e *StatusError) (msg, fix string) {
	if e == nil {
		return "no error detail in /v1/status", "signer status shows the state; the shim's log says why"
	}
	parts := []string{}
	if e.Step != "" {
		parts = append(parts, "step "+oneLine(e.Step, 40))
	}
	if e.Message != "" {
		parts = append(parts, oneLine(e.Message, 400))
	}
	if e.KMSCode != "" {
		k := "KMS " + oneLine(e.KMSCode, 80)
		if e.KMSMessage != "" && !strings.Contains(e.Message, e.KMSMessage) {
			k += ": " + oneLine(e.KMSMessage, 400)
		}
		parts = append(parts, k)
	}
	pcr0 := pcrHex(e.PCR0)
	if pcr0 != "" {
		parts = append(parts, "PCR0 presented "+short(pcr0))
	}
	msg = strings.Join(parts, "; ")

	code := e.KMSCode
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	low := strings.ToLower(e.Step + " " + e.Message)
	if e.Step == "kms_key" {
		fix = "the sealed identity is not sealed under a KMS key the enclave's image pins (the message names the key and the pins): if it is yours, seal it again under a pinned key (signer seal --key-id ARN) or build an image that pins its key (make image KMS_KEYS=ARN,…); if nobody on your side made it, someone who can reach the enclave tried to load keys of their own, which the enclave refused"
		return msg, fix
	}
	switch code {
	case "AccessDeniedException":
		fix = "KMS refused the enclave's attestation: the key policy must let the instance role decrypt with the PCR0 the enclave presents (see key-policy below; run doctor with --key-id). A rebuilt EIF has a new PCR0: signer policy update --key-id KEY --measurements FILE. A debug-mode enclave presents an all-zero PCR0: for development only, signer policy render --debug"
		if pcr0 != "" && strings.Trim(pcr0, "0") == "" {
			fix = "the enclave runs in debug mode and presents an all-zero PCR0, which the key policy does not allow: for development, signer policy render --debug (AllowDebugEnclaveDecrypt) and signer policy update; for production, run the enclave without --debug-mode"
		}
	case "InvalidCiphertextException", "IncorrectKeyException":
		fix = "the sealed identity was not made by this KMS key (or with another encryption context), or is damaged: check the shim's key id and identity file; signer seal --key-id KEY makes a new one (then re-encrypt the keyrings to its recipient)"
	case "NotFoundException":
		fix = "the key does not exist in this region: check the key id and region in the shim's config (KMS keys are regional)"
	case "DisabledException", "KMSInvalidStateException", "KeyUnavailableException":
		fix = "the key is disabled, pending deletion or unavailable: aws kms describe-key --key-id KEY shows its state; aws kms enable-key or cancel-key-deletion"
	case "ExpiredTokenException", "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignature", "InvalidClientTokenId":
		fix = "KMS refused the credentials the shim provisioned: check the credentials result above and the instance clock (chronyc tracking; SigV4 allows 5 minutes of skew); signer provision retries now"
	case "ValidationException":
		fix = "KMS could not read the request's attestation document (Recipient): signer and signerd must be the same version; signer attest shows the document"
	case "":
		switch {
		case anyOf(low, "proxy", "vsock", "dial", "connection refused", "connection reset", "no such device", "timeout", "deadline exceeded", "unexpected eof", "tls:", "tls handshake", "unreachable"):
			fix = "the enclave cannot reach KMS through vsock-proxy: see the vsock-proxy result above (a proxy running on signerd's --kms-proxy port, forwarding to kms.<region>.amazonaws.com 443, admitted by its allowlist)"
		case anyOf(low, "keyring", "age:", "identity"):
			fix = "the keyrings must be age-encrypted to the sealed identity's recipient (recipient.txt from signer seal) and unchanged since: re-encrypt them, or check the shim's keyring files"
		default:
			fix = "signer status shows the detail and the shim's log the history; the shim retries with backoff, signer provision retries now"
		}
	default:
		fix = "KMS error " + oneLine(code, 80) + ": signer status shows the detail; signer provision retries"
	}
	return msg, fix
}

func anyOf(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

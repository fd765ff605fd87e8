package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/shim"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// The shim's HTTP clients: signer sign, keys, status, attest, provision.
// Each prints the answer's JSON on stdout (indented). A non-2xx answer is
// printed too, and the command exits 1 with the error's code and message
// on stderr; a shim that cannot be reached is exit 1 with a hint.

const defaultEndpoint = "http://127.0.0.1:8080"

// maxAnswer bounds what the client reads from the shim.
const maxAnswer = 16 << 20

type shimClientFlags struct {
	endpoint *string
}

func addEndpointFlag(e *env, fs *flag.FlagSet) *shimClientFlags {
	def := defaultEndpoint
	if v := e.getenv("SIGNER_ENDPOINT"); v != "" {
		def = v
	}
	return &shimClientFlags{endpoint: fs.String("endpoint", def,
		"the shim's `URL`: http://HOST:PORT, HOST:PORT or unix:///PATH (default from SIGNER_ENDPOINT, else "+defaultEndpoint+")")}
}

// shimCall sends one request to the shim and prints the answer.
func shimCall(e *env, f *shimClientFlags, cmd, method, path string, body []byte, timeout time.Duration) ([]byte, error) {
	return shimCallAuth(e, f, cmd, method, path, body, timeout, nil)
}

// shimCallAuth is shimCall, with the request signed by rs when it is not
// nil.
func shimCallAuth(e *env, f *shimClientFlags, cmd, method, path string, body []byte, timeout time.Duration, rs *wireclient.RequestSigner) ([]byte, error) {
	hc, base, err := shim.NewHTTPClient(*f.endpoint, timeout)
	if err != nil {
		return nil, usageErrorf("%s: --endpoint: %v", cmd, err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.ctx, method, base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if rs != nil {
		if err := rs.Authorize(req, body); err != nil {
			return nil, fmt.Errorf("signing the request: %w", err)
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &hintError{
			err:   fmt.Errorf("%s %s: %v", method, path, unwrapURLError(err)),
			hints: []string{fmt.Sprintf("is `signer serve` running and listening at %s? (--endpoint, SIGNER_ENDPOINT)", *f.endpoint)},
		}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %v", method, path, err)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, data, "", "  ") == nil {
		pretty.WriteByte('\n')
		e.stdout.Write(pretty.Bytes())
	} else {
		e.stdout.Write(data)
	}
	if resp.StatusCode/100 != 2 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			err := fmt.Errorf("the shim answered %d %s: %s", resp.StatusCode, eb.Error.Code, eb.Error.Message)
			if hints := answerHints(resp, eb.Error.Code); len(hints) > 0 {
				return nil, &hintError{err: err, hints: hints}
			}
			return nil, err
		}
		return nil, fmt.Errorf("the shim answered %s", resp.Status)
	}
	return data, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func clientFlagSet(e *env, name string) (*flag.FlagSet, *shimClientFlags) {
	fs := newFlagSet(e, name)
	return fs, addEndpointFlag(e, fs)
}

func noArgs(cmd string, pos []string) error {
	if len(pos) > 0 {
		return unexpectedArg(cmd, pos[0], "")
	}
	return nil
}

// answerHints says what to do about an authentication refusal.
func answerHints(resp *http.Response, code string) []string {
	switch code {
	case "unauthenticated":
		return []string{"a key of a keyring that declares clients signs only authenticated requests: pass --client ID --client-secret FILE (and --audience if the enclave has several); check the client's clock, which must be within 60 s of the enclave's"}
	case "rate_limited":
		return []string{"the key's or the client's rate (its keyring's policy) is spent: retry after " + resp.Header.Get("Retry-After") + " s"}
	}
	return nil
}

// authFlags are --client, --client-secret and --audience.
type authFlags struct {
	client, secretFile, audience *string
}

func addAuthFlags(fs *flag.FlagSet) *authFlags {
	return &authFlags{
		client:     fs.String("client", "", "sign the request as client `ID` of a keyring that declares clients (with --client-secret)"),
		secretFile: fs.String("client-secret", "", "the client's secret `FILE`: 64 hex digits and a newline, as signer keyring new writes it"),
		audience:   fs.String("audience", "", "the `AUDIENCE` of the client's keyring (default: the one GET /v1/status reports, if the enclave has exactly one)"),
	}
}

// check refuses one of --client and --client-secret without the other.
func (a *authFlags) check(cmd string) error {
	if (*a.client == "") != (*a.secretFile == "") {
		return usageErrorf("%s: --client ID and --client-secret FILE go together", cmd)
	}
	if *a.audience != "" && *a.client == "" {
		return usageErrorf("%s: --audience goes with --client and --client-secret", cmd)
	}
	return nil
}

// credentials reads cmd's secret file; audience is --audience, or fetch's
// answer when it is empty. nil without --client.
func (a *authFlags) credentials(cmd string, fetch func() (string, error)) (*wireclient.Credentials, error) {
	if *a.client == "" {
		return nil, nil
	}
	in := inputFile{cmd: cmd, arg: "--client-secret", path: *a.secretFile,
		want: "the client's secret file, as signer keyring new wrote it to --client-secret-dir (DIR/ID.secret: 64 hex digits and a newline)"}
	f, err := in.open() // to tell a missing file from a malformed one
	if err != nil {
		return nil, err
	}
	f.Close()
	secret, err := wireclient.ReadSecretFile(*a.secretFile)
	if err != nil {
		return nil, &hintError{err: fmt.Errorf("%s: --client-secret: %w", cmd, err), hints: []string{"--client-secret wants " + in.want}}
	}
	aud := *a.audience
	if aud == "" {
		if aud, err = fetch(); err != nil {
			clear(secret)
			return nil, err
		}
	}
	return &wireclient.Credentials{Client: *a.client, Secret: secret, Audience: aud}, nil
}

// shimAudience asks the shim at endpoint (GET /v1/status) for the
// audience of the loaded keyrings.
func shimAudience(e *env, endpoint string) (string, error) {
	hc, base, err := shim.NewHTTPClient(endpoint, 30*time.Second)
	if err != nil {
		return "", usageErrorf("--endpoint: %v", err)
	}
	req, err := http.NewRequestWithContext(e.ctx, "GET", base+"/v1/status", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("learning the audience (GET /v1/status): %v", unwrapURLError(err))
	}
	defer resp.Body.Close()
	var st struct {
		Auth *struct {
			Audiences []string `json:"audiences"`
		} `json:"auth"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&st); err != nil {
		return "", fmt.Errorf("learning the audience: GET /v1/status answered %s: %v", resp.Status, err)
	}
	if st.Auth == nil || len(st.Auth.Audiences) != 1 {
		var auds []string
		if st.Auth != nil {
			auds = st.Auth.Audiences
		}
		return "", usageErrorf("the enclave reports audiences [%s]: pass --audience, the audience of the client's keyring", strings.Join(auds, ", "))
	}
	return st.Auth.Audiences[0], nil
}

// runSign is `signer sign --key ID (--message-file F | --digest HEX)
// [--client ID --client-secret FILE [--audience A]]`.
func runSign(e *env) error {
	fs, cf := clientFlagSet(e, "sign")
	key := fs.String("key", "", "the key `ID` to sign with (required)")
	msgFile := fs.String("message-file", "", "sign the contents of `FILE` (- for stdin)")
	digestHex := fs.String("digest", "", "sign this precomputed digest, in `HEX` (32 bytes for the ECDSA keys; ed25519 refuses digests)")
	af := addAuthFlags(fs)
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if err := noArgs("sign", pos); err != nil {
		return err
	}
	if *key == "" {
		return usageErrorf("sign: --key ID is required")
	}
	if (*msgFile == "") == (*digestHex == "") {
		return usageErrorf("sign: want exactly one of --message-file FILE and --digest HEX")
	}
	if err := af.check("sign"); err != nil {
		return err
	}
	var field string
	var data []byte
	if *digestHex != "" {
		field = "digest"
		data, err = hex.DecodeString(strings.TrimPrefix(*digestHex, "0x"))
		if err != nil || len(data) == 0 {
			return usageErrorf("sign: --digest: want hexadecimal bytes, got %q", *digestHex)
		}
	} else {
		field = "message"
		// The shim takes bodies of shim.MaxBodySize at most, and the
		// message goes in base64: a larger file could never be signed.
		data, err = inputFile{cmd: "sign", arg: "--message-file", path: *msgFile, stdin: true,
			want: "the message to sign, any bytes (- reads stdin)"}.read(e, shim.MaxBodySize)
		if err != nil {
			return err
		}
	}
	body, _ := json.Marshal(map[string]string{field: base64.StdEncoding.EncodeToString(data)})
	creds, err := af.credentials("sign", func() (string, error) { return shimAudience(e, *cf.endpoint) })
	if err != nil {
		return err
	}
	var rs *wireclient.RequestSigner
	if creds != nil {
		rs, err = wireclient.NewRequestSigner(*creds)
		clear(creds.Secret)
		if err != nil {
			return usageErrorf("sign: %v", err)
		}
		defer rs.Destroy()
	}
	_, err = shimCallAuth(e, cf, "sign", "POST", "/v1/keys/"+url.PathEscape(*key)+"/sign", body, 30*time.Second, rs)
	return err
}

// runKeys is `signer keys`.
func runKeys(e *env) error {
	fs, cf := clientFlagSet(e, "keys")
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if err := noArgs("keys", pos); err != nil {
		return err
	}
	_, err = shimCall(e, cf, "keys", "GET", "/v1/keys", nil, 30*time.Second)
	return err
}

// runStatus is `signer status`.
func runStatus(e *env) error {
	fs, cf := clientFlagSet(e, "status")
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if err := noArgs("status", pos); err != nil {
		return err
	}
	_, err = shimCall(e, cf, "status", "GET", "/v1/status", nil, 30*time.Second)
	return err
}

// runProvision is `signer provision`: the shim provisions the enclave again
// now.
func runProvision(e *env) error {
	fs, cf := clientFlagSet(e, "provision")
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if err := noArgs("provision", pos); err != nil {
		return err
	}
	// Provisioning waits for KMS through the enclave: allow the shim's
	// default provision_timeout (60 s) and some.
	_, err = shimCall(e, cf, "provision", "POST", "/v1/provision", []byte("{}"), 90*time.Second)
	return err
}

// runAttest is `signer attest [--nonce HEX] [--user-data-file F] [--out FILE]`.
func runAttest(e *env) error {
	fs, cf := clientFlagSet(e, "attest")
	nonceHex := fs.String("nonce", "", "a nonce to put in the document, in `HEX`")
	userDataFile := fs.String("user-data-file", "", "put the contents of `FILE` in the document's user_data, under \"caller\" in signerd's map (901 bytes at most unpinned, fewer with pins)")
	out := fs.String("out", "", "also write the document (raw COSE_Sign1 bytes) to `FILE`, for signer attestation verify --doc")
	pos, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	if err := noArgs("attest", pos); err != nil {
		return err
	}
	if *out != "" {
		if err := checkOutput("attest", "--out", *out); err != nil {
			return err
		}
	}
	req := map[string][]byte{}
	if *nonceHex != "" {
		n, err := hex.DecodeString(strings.TrimPrefix(*nonceHex, "0x"))
		if err != nil {
			return usageErrorf("attest: --nonce: want hexadecimal bytes, got %q", *nonceHex)
		}
		req["nonce"] = n
	}
	if *userDataFile != "" {
		ud, err := inputFile{cmd: "attest", arg: "--user-data-file", path: *userDataFile,
			want: "the bytes to put in the document's user_data (at most 901 bytes, fewer with pins)"}.read(e, shim.MaxBodySize)
		if err != nil {
			return err
		}
		req["user_data"] = ud
	}
	body, _ := json.Marshal(req)
	answer, err := shimCall(e, cf, "attest", "POST", "/v1/attestation", body, 30*time.Second)
	if err != nil || *out == "" {
		return err
	}
	var doc struct {
		Document []byte `json:"document"`
	}
	if err := json.Unmarshal(answer, &doc); err != nil || len(doc.Document) == 0 {
		return fmt.Errorf("the shim's answer has no document")
	}
	if err := os.WriteFile(*out, doc.Document, 0o644); err != nil {
		return fmt.Errorf("attest: --out: %w", err)
	}
	return nil
}

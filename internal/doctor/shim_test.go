package doctor

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
)

// pinsSigned are pins with a KMS key and a keyring signer: nothing for
// doctor to report about them.
const pinsSigned = `{"kms_keys":["arn:aws:kms:us-east-1:111122223333:key/k"],"keyring_signers":["ed25519:MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="],"keyring_threshold":1}`

func TestCheckShim(t *testing.T) {
	readyz503 := fixture(t, "shim/readyz-503.json")
	tests := []struct {
		name    string
		shim    fakeShim
		wants   []want
		pcr0    string   // the status's PCR0, when it must be read
		enclave *Enclave // what nitro-cli described
	}{
		{name: "ready", shim: fakeShim{status: fixture(t, "shim/status-ready.json")}, pcr0: pcr0v1,
			wants: []want{{OK, ": ready, 3 keys (attestation nsm, PCR0 287b24930a9f0fe1…, signerd v0.1.0)", ""}}},
		{name: "ready, debug", shim: fakeShim{status: fixture(t, "shim/status-ready-debug.json")},
			wants: []want{{OK, "ready, 3 keys (attestation nsm, PCR0 0000000000000000…, debug mode, signerd v0.1.0)", ""}}},
		{name: "simulated", shim: fakeShim{status: []byte(`{"pinned":true,"state":"ready","attestation":"simulated","keys":1}`)},
			wants: []want{{OK, "ready, 1 key", ""}, {Warning, "simulated attestation", "--attestation nsm"}}},
		{name: "provisioning", shim: fakeShim{readyz: 503, readyzBody: []byte(`{"error":{"code":"not_ready","message":"provisioning"}}`), status: fixture(t, "shim/status-provisioning.json")},
			wants: []want{{Warning, "state provisioning: the enclave has no keys yet; /readyz answers HTTP 503: not_ready: provisioning", "wait a few seconds"}}},
		{name: "guide error 1: AccessDenied", shim: fakeShim{readyz: 503, readyzBody: readyz503, status: fixture(t, "shim/status-failed-accessdenied.json")}, pcr0: pcr0v1,
			wants: []want{{Error, "provisioning failed: step kms_decrypt; kms decrypt: access denied; KMS AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/NitroEnclaveInstanceRole/i-1234567890abcdef0 is not authorized to perform: kms:Decrypt",
				"A rebuilt EIF has a new PCR0: signer policy update"}}},
		{name: "guide error 1 in debug mode", shim: fakeShim{readyz: 503, readyzBody: readyz503, status: fixture(t, "shim/status-failed-debug-accessdenied.json")},
			wants: []want{{Error, "PCR0 presented 0000000000000000…", "signer policy render --debug"}}},
		{name: "guide error 2: proxy", shim: fakeShim{readyz: 503, readyzBody: readyz503, status: fixture(t, "shim/status-failed-proxy.json")},
			wants: []want{{Error, "kms decrypt: dial vsock://3:8000: connection refused", "cannot reach KMS through vsock-proxy"}}},
		{name: "guide error 3: InvalidCiphertext", shim: fakeShim{readyz: 503, readyzBody: readyz503, status: fixture(t, "shim/status-failed-invalidciphertext.json")},
			wants: []want{{Error, "KMS InvalidCiphertextException", "signer seal --key-id"}}},
		{name: "failed with a flat error string", shim: fakeShim{readyz: 503, status: []byte(`{"pinned":true,"state":"failed","error":"keyring: age: no identity matched any of the recipients"}`)},
			wants: []want{{Error, "provisioning failed: keyring: age: no identity matched", "age-encrypted to the sealed identity's recipient"}}},
		{name: "readyz 503 while ready", shim: fakeShim{readyz: 503, readyzBody: readyz503, status: fixture(t, "shim/status-ready.json")},
			wants: []want{{Error, "state ready with 3 keys, but /readyz answers HTTP 503: not_ready: provisioning failed at kms_decrypt", "signer provision"}}},
		{name: "healthz 500", shim: fakeShim{healthz: 500},
			wants: []want{{Error, "answers /healthz with HTTP 500", "--endpoint"}}},
		{name: "status not JSON", shim: fakeShim{status: []byte("<html>")},
			wants: []want{{Error, "/v1/status: not a status object", "same version"}}},
		{name: "status 404", shim: fakeShim{status: []byte("404 page not found"), statusCode: 404},
			wants: []want{{Error, "/v1/status: HTTP 404: 404 page not found", "enclave-signer's shim"}}},
		{name: "enclave unreachable", shim: fakeShim{readyz: 503, status: []byte(`{"error":{"code":"not_ready","message":"enclave vsock://16:5005 unreachable: connection reset"}}`), statusCode: 503},
			wants: []want{{Error, "cannot reach the enclave: /v1/status answers HTTP 503: not_ready: enclave vsock://16:5005 unreachable", `"enclave": "vsock://CID:5005"`}}},
		{name: "waiting, with the shim's last error", shim: fakeShim{readyz: 503, status: []byte(`{"pinned":true,"state":"waiting","attestation":"nsm","keys":0,"shim":{"enclave":"vsock://16:5005","last_error":"fetching credentials: IMDS: no role"}}`)},
			wants: []want{{Warning, "state waiting: the enclave has no keys yet; /readyz answers HTTP 503: (empty body); the shim's last attempt: fetching credentials: IMDS: no role", "wait"}}},
		{name: "shim talks to another CID", enclave: &Enclave{EnclaveID: "i-1-enc2", EnclaveCID: 16, State: StateRunning, Flags: FlagsNone},
			shim:  fakeShim{status: []byte(`{"pinned":true,"state":"ready","attestation":"nsm","keys":2,"shim":{"enclave":"vsock://17:5005"}}`)},
			wants: []want{{OK, "ready, 2 keys", ""}, {Error, "the shim reaches the enclave at vsock://17:5005, but the running enclave has CID 16", `"enclave": "vsock://16:PORT"`}}},
		{name: "shim talks to the right CID", enclave: &Enclave{EnclaveID: "i-1-enc2", EnclaveCID: 16, State: StateRunning, Flags: FlagsNone},
			shim:  fakeShim{status: []byte(`{"pinned":true,"state":"ready","attestation":"nsm","keys":2,"shim":{"enclave":"vsock://16:5005"}}`)},
			wants: []want{{OK, "ready, 2 keys", ""}}},
		{name: "unpinned", shim: fakeShim{status: []byte(`{"pinned":false,"state":"ready","attestation":"nsm","keys":2}`)},
			wants: []want{{OK, "ready, 2 keys", ""}, {Error, "signerd pins no KMS key: it accepts an identity sealed under any KMS key, so whoever can provision it (root on this parent) can load signing keys of its own choosing", "make image KMS_KEYS=arn:aws:kms:"}}},
		{name: "unpinned, failed", shim: fakeShim{readyz: 503, status: []byte(`{"pinned":false,"state":"failed","attestation":"nsm","error":{"step":"kms_decrypt","message":"kms decrypt: access denied","kms_code":"AccessDeniedException"}}`)},
			wants: []want{{Error, "provisioning failed", "signer policy update"}, {Error, "signerd pins no KMS key", "make image KMS_KEYS="}}},
		{name: "KMS key pinned, no keyring signer", shim: fakeShim{status: []byte(`{"pinned":true,"pins":{"kms_keys":["arn:aws:kms:us-east-1:111122223333:key/k"]},"state":"ready","attestation":"nsm","keys":2}`)},
			wants: []want{{OK, "ready, 2 keys", ""}, {Error, "signerd pins no keyring signer: it loads any keyring encrypted to its identity's public recipient", "KEYRING_SIGNERS="}}},
		{name: "KMS key and keyring signer pinned", shim: fakeShim{status: []byte(`{"pinned":true,"pins":{"kms_keys":["arn:aws:kms:us-east-1:111122223333:key/k"],"keyring_signers":["ed25519:MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="],"keyring_threshold":1},"state":"ready","attestation":"nsm","keys":2}`)},
			wants: []want{{OK, "ready, 2 keys", ""}}},
		{name: "unpinned, debug mode", shim: fakeShim{status: []byte(`{"pinned":false,"state":"ready","attestation":"nsm","debug_mode":true,"keys":2}`)},
			wants: []want{{OK, "ready, 2 keys", ""}, {Warning, "signerd pins no KMS key", "make image KMS_KEYS="}}},
		{name: "no pinned field", shim: fakeShim{status: []byte(`{"state":"ready","attestation":"nsm","keys":2}`)},
			wants: []want{{OK, "ready, 2 keys", ""}, {Error, "the status says nothing of pinned KMS keys (a signerd or shim older than key pinning): signerd pins no KMS key", "make image KMS_KEYS="}}},
		{name: "identity under an unpinned key", shim: fakeShim{readyz: 503, status: []byte(`{"pinned":true,"state":"failed","attestation":"nsm","error":{"step":"kms_key","message":"the identity is sealed under KMS key arn:aws:kms:us-east-1:999999999999:key/1234abcd-12ab-34cd-56ef-1234567890ab, which is not pinned"}}`)},
			wants: []want{{Error, "step kms_key; the identity is sealed under KMS key arn:aws:kms:us-east-1:999999999999", "signer seal --key-id ARN"}}},
		{name: "open keyrings, no --require-auth", shim: fakeShim{status: []byte(`{"pinned":true,"pins":` + pinsSigned + `,"state":"ready","attestation":"nsm","keys":2,"auth":{"clock_ok":true,"nonce_cache_capacity":1048576}}`)},
			wants: []want{{OK, "ready, 2 keys", ""}, {Warning, "the loaded keyrings declare no clients: any process that reaches the shim", "REQUIRE_AUTH=true"}}},
		{name: "policed, no --require-auth", shim: fakeShim{status: []byte(`{"pinned":true,"pins":` + pinsSigned + `,"state":"ready","attestation":"nsm","keys":2,"auth":{"policed":true,"clock_ok":true,"nonce_cache_capacity":1048576}}`)},
			wants: []want{{OK, "ready, 2 keys", ""}, {Warning, "a keyring without clients, signed by a keyring signer, would load", "REQUIRE_AUTH=true"}}},
		{name: "require-auth, clock off, nonce cache filling", shim: fakeShim{status: []byte(`{"pinned":true,"pins":` + pinsSigned + `,"state":"ready","attestation":"nsm","keys":2,"auth":{"require_auth":true,"policed":true,"clock_ok":false,"clock_skew_ms":-95000,"nonce_cache_size":900000,"nonce_cache_capacity":1000000}}`)},
			wants: []want{{OK, "ready, 2 keys", ""}, {Error, "skew -95000 ms", "restart the enclave"}, {Warning, "holds 900000 of 1000000 nonces", "--nonce-cache"}}},
		{name: "require-auth, all well", shim: fakeShim{status: []byte(`{"pinned":true,"pins":` + pinsSigned + `,"state":"ready","attestation":"nsm","keys":2,"auth":{"require_auth":true,"policed":true,"clock_ok":true,"nonce_cache_size":10,"nonce_cache_capacity":1000000}}`)},
			wants: []want{{OK, "ready, 2 keys", ""}}},
		{name: "unknown state", shim: fakeShim{status: []byte(`{"pinned":true,"state":"melting"}`)},
			wants: []want{{Error, `state "melting", want waiting, provisioning, ready or failed`, "same version"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.shim.t = t
			url := serve(t, &tt.shim)
			f := checkShim(context.Background(), &Config{HTTP: &http.Client{}, ShimEndpoint: url}, tt.enclave)
			checkResults(t, f.results, tt.wants)
			if tt.pcr0 != "" && (f.status == nil || f.status.PCR(0) != tt.pcr0) {
				t.Errorf("status PCR0 = %v, want %s", f.status, tt.pcr0)
			}
		})
	}
	t.Run("down", func(t *testing.T) {
		f := checkShim(context.Background(), &Config{HTTP: &http.Client{}, ShimEndpoint: "http://127.0.0.1:1"}, nil)
		checkResults(t, f.results, []want{{Error, "the shim at http://127.0.0.1:1 does not answer", "signer serve --config"}})
		if f.status != nil {
			t.Error("status from a shim that is down")
		}
	})
}

func TestStatusPCRBase64(t *testing.T) {
	// A shim that renders the PCR bytes as encoding/json does ([]byte →
	// base64) still yields hex.
	var st ShimStatus
	if err := json.Unmarshal([]byte(`{"pinned":true,"state":"ready","pcrs":{"0":"KHskkwqfD+FLAacezcANi+j62Q+YNNVHFYhUuCecdAlcQ/jX8EdxTpjet5A/IOPd"}}`), &st); err != nil {
		t.Fatal(err)
	}
	if got := st.PCR(0); got != pcr0v1 {
		t.Errorf("PCR(0) = %s, want %s", got, pcr0v1)
	}
	if got := st.PCR(5); got != "" {
		t.Errorf("absent PCR5 = %q", got)
	}
}

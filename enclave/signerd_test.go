package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyringsig"
	"github.com/enclave-signer/enclave-signer/internal/kms"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

func TestWaitingRefusesSigning(t *testing.T) {
	e := start(t)
	c := e.dial()
	st, err := call[*wire.Status](t.Context(), c, &wire.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.State != wire.StateWaiting || st.Keys != 0 || st.Error != nil || st.Attestation != wire.AttestationSimulated || st.Version == "" {
		t.Fatalf("status at start = %+v, want waiting, simulated, no keys, no error, a version", st)
	}
	_, err = call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "any", Data: []byte("m")})
	if !errors.Is(err, wire.ErrNotReady) || !strings.Contains(err.Error(), "waiting") {
		t.Errorf("Sign while waiting: %v, want not_ready naming the state", err)
	}
	if _, err := listKeys(t.Context(), c); !errors.Is(err, wire.ErrNotReady) {
		t.Errorf("ListKeys while waiting: %v, want not_ready", err)
	}
	if _, err := call[*wire.AttestResponse](t.Context(), c, &wire.AttestRequest{}); err != nil {
		t.Errorf("Attest while waiting: %v", err)
	}
	if !strings.Contains(e.logs.String(), "attestation is SIMULATED") {
		t.Errorf("no warning about simulated attestation in the log:\n%s", e.logs)
	}
}

func TestProvisionAndSignEveryAlgorithm(t *testing.T) {
	e := start(t)
	c := e.dial()
	keys := []testKey{
		newKey(t, "ed", keyring.Ed25519),
		newKey(t, "p256", keyring.ECDSAP256),
		newKey(t, "eth", keyring.ECDSASecp256k1),
	}
	st := e.provision(c, e.keyringFor("a.age", keys[0], keys[1]), e.keyringFor("b.age", keys[2]))
	if st.State != wire.StateReady || st.Keys != 3 || st.Error != nil {
		t.Fatalf("status after provisioning = %+v, want ready with 3 keys", st)
	}
	e.kms.mu.Lock()
	if len(e.kms.contexts) != 1 || !equalContext(e.kms.contexts[0], encryptionContext) {
		t.Errorf("KMS saw encryption contexts %v, want one Decrypt with %v", e.kms.contexts, encryptionContext)
	}
	e.kms.mu.Unlock()

	list, err := listKeys(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("ListKeys = %d keys, want 3", len(list))
	}
	for _, info := range list {
		t.Run(info.ID, func(t *testing.T) {
			pub := publicKey(t, info)
			if (info.Algorithm == string(keyring.ECDSASecp256k1)) != (info.EthereumAddress != "") {
				t.Errorf("ethereum_address %q for %s", info.EthereumAddress, info.Algorithm)
			}
			for _, msg := range [][]byte{nil, []byte("hello enclave"), bytes.Repeat([]byte{7}, 4096)} {
				resp, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: info.ID, Data: msg})
				if err != nil {
					t.Fatalf("Sign(%d-byte message): %v", len(msg), err)
				}
				if resp.KeyID != info.ID || resp.Algorithm != info.Algorithm {
					t.Errorf("answer names key %q alg %q", resp.KeyID, resp.Algorithm)
				}
				if err := verify(t, pub, msg, false, resp); err != nil {
					t.Errorf("message of %d bytes: %v", len(msg), err)
				}
				// The check can fail: the signature is not valid for another message.
				if verify(t, pub, append(msg, 'x'), false, resp) == nil {
					t.Errorf("signature verifies for another message too")
				}
			}
			digest := sha256.Sum256([]byte("digest"))
			resp, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: info.ID, Data: digest[:], IsDigest: true})
			if info.Algorithm == string(keyring.Ed25519) {
				if !errors.Is(err, wire.ErrDigestNotAllowed) {
					t.Errorf("digest for ed25519: %v, want digest_not_allowed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Sign(digest): %v", err)
			}
			if err := verify(t, pub, digest[:], true, resp); err != nil {
				t.Errorf("digest: %v", err)
			}
			if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: info.ID, Data: digest[:31], IsDigest: true}); !errors.Is(err, wire.ErrInvalidDigest) || !strings.Contains(err.Error(), "31 bytes") {
				t.Errorf("31-byte digest: %v, want invalid_digest saying 31 bytes", err)
			}
		})
	}
	if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "nope", Data: []byte("m")}); !errors.Is(err, wire.ErrUnknownKey) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown key: %v, want unknown_key naming it", err)
	}
	if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{Data: []byte("m")}); !errors.Is(err, wire.ErrInvalidRequest) {
		t.Errorf("empty key id: %v, want invalid_request", err)
	}
}

func TestProvisionFailures(t *testing.T) {
	e := start(t)
	c := e.dial()
	good := newKey(t, "good", keyring.Ed25519)

	// KMS refuses: failed, with KMS's code and message and the PCR0 the
	// enclave attested with; signing stays refused.
	e.kms.mu.Lock()
	e.kms.answer = func(w http.ResponseWriter, _ decryptBody) {
		kmsError(w, "AccessDeniedException", "User is not authorized to perform kms:Decrypt with the attestation document")
	}
	e.kms.mu.Unlock()
	st := e.provision(c, e.keyringFor("k.age", good))
	wantPCR0 := nsmsim.DefaultPCRs("")[0]
	if st.State != wire.StateFailed || st.Error == nil {
		t.Fatalf("after AccessDenied: %+v, want failed with an error", st)
	}
	if se := st.Error; se.Step != "kms_decrypt" || se.KMSCode != "AccessDeniedException" ||
		!strings.Contains(se.KMSMessage, "not authorized") || !bytes.Equal(se.PCR0, wantPCR0) ||
		!strings.Contains(se.Message, "PCR0 "+hex.EncodeToString(wantPCR0)[:16]+"…") {
		t.Errorf("StatusError = %+v\nwant step kms_decrypt, AccessDeniedException, PCR0 %x named (abbreviated) in the message", se, wantPCR0)
	}
	if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "good", Data: []byte("m")}); !errors.Is(err, wire.ErrNotReady) || !strings.Contains(err.Error(), "failed") {
		t.Errorf("Sign while failed: %v, want not_ready", err)
	}
	if !strings.Contains(e.logs.String(), `"step":"kms_decrypt"`) || !strings.Contains(e.logs.String(), `"code":"AccessDeniedException"`) || !strings.Contains(e.logs.String(), `"pcr0":"`+hex.EncodeToString(wantPCR0)) {
		t.Errorf("the failure is not logged with step, code and pcr0:\n%s", e.logs)
	}
	e.kms.mu.Lock()
	e.kms.answer = nil
	e.kms.mu.Unlock()

	other, err := newIdentityPair()
	if err != nil {
		t.Fatal(err)
	}
	dupA, dupB := newKey(t, "same", keyring.ECDSAP256), newKey(t, "same", keyring.Ed25519)
	tests := []struct {
		name     string
		req      func() *wire.ProvisionRequest
		step     string
		contains []string
	}{
		{"keyring for another identity", func() *wire.ProvisionRequest {
			return e.request(e.keyringFor("ok.age", good), wire.SealedKeyring{Name: "stranger.age", Data: sealKeyring(t, other.Recipient(), keyringJSON(newKey(t, "x", keyring.Ed25519)))})
		}, "keyring", []string{`keyring "stranger.age"`, "decrypt"}},
		{"malformed keyring JSON", func() *wire.ProvisionRequest {
			return e.request(wire.SealedKeyring{Name: "bad.age", Data: sealKeyring(t, e.identity.Recipient(), []byte(`{"version": 2, "keys": []}`))})
		}, "keyring", []string{`keyring "bad.age"`, "version"}},
		{"not an age file", func() *wire.ProvisionRequest {
			return e.request(wire.SealedKeyring{Name: "plain.json", Data: keyringJSON(good)})
		}, "keyring", []string{`keyring "plain.json"`}},
		{"duplicate key ids across keyrings", func() *wire.ProvisionRequest {
			return e.request(e.keyringFor("one.age", dupA), e.keyringFor("two.age", dupB))
		}, "keyring", []string{`"same"`, `"one.age"`, `"two.age"`}},
		{"sealed identity is not an age key file", func() *wire.ProvisionRequest {
			r := e.request(e.keyringFor("ok.age", good))
			r.IdentityCiphertext = e.kms.seal([]byte("not an identity\n"), encryptionContext)
			return r
		}, "identity", []string{"age identity", "line 1"}},
		{"wrong encryption context", func() *wire.ProvisionRequest {
			r := e.request(e.keyringFor("ok.age", good))
			r.EncryptionContext = map[string]string{"app": "other"}
			return r
		}, "kms_decrypt", []string{"InvalidCiphertextException", "encryption context"}},
		{"expired credentials", func() *wire.ProvisionRequest {
			r := e.request(e.keyringFor("ok.age", good))
			r.Credentials.Expiration = time.Now().Add(-time.Minute)
			return r
		}, "kms_decrypt", []string{"expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := call[*wire.Status](t.Context(), c, tt.req())
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			if st.State != wire.StateFailed || st.Error == nil || st.Error.Step != tt.step {
				t.Fatalf("status = %+v (error %+v), want failed at step %s", st, st.Error, tt.step)
			}
			for _, s := range tt.contains {
				if !strings.Contains(st.Error.Message, s) {
					t.Errorf("error message %q lacks %q", st.Error.Message, s)
				}
			}
			if !bytes.Equal(st.Error.PCR0, wantPCR0) {
				t.Errorf("error PCR0 = %x, want the attested %x", st.Error.PCR0, wantPCR0)
			}
		})
	}

	// A good attempt after all that: ready, error cleared.
	st = e.provision(c, e.keyringFor("k.age", good))
	if st.State != wire.StateReady || st.Error != nil || st.Keys != 1 {
		t.Fatalf("good provisioning after failures: %+v", st)
	}
}

func TestInvalidProvisionRequest(t *testing.T) {
	e := start(t)
	c := e.dial()
	kr := e.keyringFor("k.age", newKey(t, "k", keyring.Ed25519))
	tests := []struct {
		name   string
		modify func(*wire.ProvisionRequest)
		want   string
	}{
		{"no region", func(r *wire.ProvisionRequest) { r.Region = "" }, "region"},
		{"region that would change the host name", func(r *wire.ProvisionRequest) { r.Region = "evil.example/x?" }, "region"},
		{"no secret", func(r *wire.ProvisionRequest) { r.Credentials.SecretAccessKey = "" }, "secret_access_key"},
		{"no identity", func(r *wire.ProvisionRequest) { r.IdentityCiphertext = nil }, "identity_ciphertext"},
		{"no keyrings", func(r *wire.ProvisionRequest) { r.Keyrings = nil }, "keyrings"},
		{"unnamed keyring", func(r *wire.ProvisionRequest) { r.Keyrings[0].Name = "" }, "keyrings[0]: name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.request(kr)
			tt.modify(r)
			_, err := call[*wire.Status](t.Context(), c, r)
			if !errors.Is(err, wire.ErrInvalidRequest) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want invalid_request naming %s", err, tt.want)
			}
		})
	}
	st, err := call[*wire.Status](t.Context(), c, &wire.StatusRequest{})
	if err != nil || st.State != wire.StateWaiting || st.Error != nil {
		t.Errorf("invalid requests changed the state: %+v, %v", st, err)
	}
	e.kms.mu.Lock()
	defer e.kms.mu.Unlock()
	if e.kms.calls != 0 {
		t.Errorf("invalid requests reached KMS %d times", e.kms.calls)
	}
}

func TestReprovisionSwapsWhileSigning(t *testing.T) {
	e := start(t)
	c := e.dial()
	oldShared, oldOnly := newKey(t, "shared", keyring.ECDSAP256), newKey(t, "old", keyring.Ed25519)
	newShared, newOnly := newKey(t, "shared", keyring.ECDSASecp256k1), newKey(t, "new", keyring.Ed25519)
	if st := e.provision(c, e.keyringFor("v1.age", oldShared, oldOnly)); st.State != wire.StateReady {
		t.Fatalf("first provisioning: %+v", st)
	}

	// Signers hammer "shared" on several connections while the set is
	// replaced: none may fail, whichever set answers.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var signed atomic.Int64
	errs := make(chan error, 8)
	for range 4 {
		sc := e.dial()
		wg.Go(func() {
			for !stop.Load() {
				resp, err := call[*wire.SignResponse](t.Context(), sc, &wire.SignRequest{KeyID: "shared", Data: []byte("during swap")})
				if err != nil {
					errs <- err
					return
				}
				if resp.Algorithm != string(keyring.ECDSAP256) && resp.Algorithm != string(keyring.ECDSASecp256k1) {
					errs <- fmt.Errorf("answer from algorithm %q", resp.Algorithm)
					return
				}
				signed.Add(1)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	st := e.provision(c, e.keyringFor("v2.age", newShared, newOnly))
	time.Sleep(50 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("signing during the swap: %v", err)
	}
	if st.State != wire.StateReady || st.Keys != 2 || st.Error != nil {
		t.Fatalf("after re-provisioning: %+v", st)
	}
	if signed.Load() == 0 {
		t.Fatal("no signature was made during the swap")
	}
	t.Logf("%d signatures during the swap", signed.Load())

	list, err := listKeys(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, k := range list {
		ids = append(ids, k.ID+"/"+k.Algorithm)
	}
	if strings.Join(ids, ",") != "new/ed25519,shared/ecdsa-secp256k1" {
		t.Errorf("keys after the swap: %v, want new/ed25519,shared/ecdsa-secp256k1", ids)
	}
	if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "old", Data: []byte("m")}); !errors.Is(err, wire.ErrUnknownKey) {
		t.Errorf("old key after the swap: %v, want unknown_key", err)
	}
	resp, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "shared", Data: []byte("m")})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range list {
		if k.ID == "shared" {
			if err := verify(t, publicKey(t, k), []byte("m"), false, resp); err != nil {
				t.Errorf("shared key after the swap: %v", err)
			}
		}
	}
}

func TestFailedReprovisionKeepsOldSet(t *testing.T) {
	e := start(t)
	c := e.dial()
	k := newKey(t, "k1", keyring.ECDSASecp256k1)
	if st := e.provision(c, e.keyringFor("v1.age", k)); st.State != wire.StateReady {
		t.Fatalf("first provisioning: %+v", st)
	}
	bad := wire.SealedKeyring{Name: "broken.age", Data: sealKeyring(t, e.identity.Recipient(), []byte(`{"version":1,"keys":[{"id":"x","algorithm":"rsa","private_key_pem":""}]}`))}
	st := e.provision(c, e.keyringFor("v2.age", newKey(t, "k2", keyring.Ed25519)), bad)
	if st.State != wire.StateReady || st.Keys != 1 {
		t.Fatalf("after a failed re-provisioning: %+v, want still ready with the old key", st)
	}
	if st.Error == nil || st.Error.Step != "keyring" || !strings.Contains(st.Error.Message, `keyring "broken.age"`) || !strings.Contains(st.Error.Message, "algorithm") {
		t.Fatalf("Status.Error = %+v, want the keyring failure naming broken.age and the field", st.Error)
	}
	if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "k1", Data: []byte("m")}); err != nil {
		t.Errorf("old key after a failed re-provisioning: %v", err)
	}
	if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "k2", Data: []byte("m")}); !errors.Is(err, wire.ErrUnknownKey) {
		t.Errorf("key of the failed attempt: %v, want unknown_key", err)
	}
	// A successful provisioning clears the error.
	st = e.provision(c, e.keyringFor("v3.age", newKey(t, "k3", keyring.Ed25519)))
	if st.State != wire.StateReady || st.Error != nil || st.Keys != 1 {
		t.Fatalf("after a good re-provisioning: %+v", st)
	}
}

func TestConcurrentProvisioningIsSerialized(t *testing.T) {
	e := start(t)
	e.kms.mu.Lock()
	e.kms.delay = 100 * time.Millisecond
	e.kms.mu.Unlock()
	var wg sync.WaitGroup
	sts := make([]*wire.Status, 3)
	for i := range sts {
		c := e.dial()
		kr := e.keyringFor(fmt.Sprintf("r%d.age", i), newKey(t, fmt.Sprintf("k%d", i), keyring.Ed25519))
		wg.Go(func() {
			st, err := call[*wire.Status](t.Context(), c, e.request(kr))
			if err != nil {
				t.Error(err)
				return
			}
			sts[i] = st
		})
	}
	wg.Wait()
	for i, st := range sts {
		if st == nil || st.State != wire.StateReady || st.Keys != 1 {
			t.Errorf("provisioning %d: %+v", i, st)
		}
	}
	if m := e.kms.maxSeen.Load(); m != 1 {
		t.Errorf("KMS saw %d Decrypts at once, want provisioning serialized (1)", m)
	}
	e.kms.mu.Lock()
	defer e.kms.mu.Unlock()
	if e.kms.calls != 3 {
		t.Errorf("KMS calls = %d, want 3", e.kms.calls)
	}
}

func TestAttest(t *testing.T) {
	e := start(t)
	c := e.dial()
	nonce, userData := []byte("nonce-0123456789"), []byte(`{"purpose":"audit"}`)
	resp, err := call[*wire.AttestResponse](t.Context(), c, &wire.AttestRequest{Nonce: nonce, UserData: userData})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := attestation.Verify(resp.Document, attestation.VerifyOptions{Roots: e.simCA.Roots()})
	if err != nil {
		t.Fatalf("the document does not verify against the simulator root: %v", err)
	}
	if !bytes.Equal(doc.Nonce, nonce) || doc.PublicKey != nil {
		t.Errorf("document nonce %q public_key %x, want the request's and a null public key", doc.Nonce, doc.PublicKey)
	}
	// user_data is signerd's map: the caller's bytes are inside, beside
	// the key set (none loaded yet) and the pins (none).
	ud, err := doc.SignerdUserData()
	if err != nil {
		t.Fatalf("user_data %x is not signerd's map: %v", doc.UserData, err)
	}
	noKeys := sha512.Sum384(nil)
	if !bytes.Equal(ud.Caller, userData) || !bytes.Equal(ud.KeySet, noKeys[:]) || !ud.Pins.Unpinned() {
		t.Errorf("user_data map %+v, want caller %q, the digest of no keys, unpinned", ud, userData)
	}
	if _, err := attestation.Verify(resp.Document, attestation.VerifyOptions{}); err == nil {
		t.Error("a simulated document verifies against the AWS root")
	}
	// No nonce, no caller data: nonce null, no "caller" in the map.
	resp, err = call[*wire.AttestResponse](t.Context(), c, &wire.AttestRequest{})
	if err != nil {
		t.Fatal(err)
	}
	doc, err = attestation.Parse(resp.Document)
	if err != nil || doc.Nonce != nil || doc.PublicKey != nil {
		t.Fatalf("empty request: %v, nonce %x public_key %x", err, doc.Nonce, doc.PublicKey)
	}
	if ud, err := doc.SignerdUserData(); err != nil || ud.Caller != nil {
		t.Errorf("empty request: user_data map %+v, %v; want no caller", ud, err)
	}

	// The room for caller data is what the NSM's 1024 bytes leave beside
	// the map: 849 bytes unpinned (the map holds the audit key too). One
	// more is refused, naming the room.
	const room = 849
	if _, err := call[*wire.AttestResponse](t.Context(), c, &wire.AttestRequest{Nonce: make([]byte, 1024), UserData: bytes.Repeat([]byte{0xff}, room)}); err != nil {
		t.Errorf("1024-byte nonce and %d-byte user_data: %v", room, err)
	}
	for _, r := range []struct {
		req  *wire.AttestRequest
		want string
	}{
		{&wire.AttestRequest{Nonce: make([]byte, 1025)}, "nonce is 1025 bytes, want at most 1024"},
		{&wire.AttestRequest{UserData: make([]byte, room+1)}, "user_data is 850 bytes, want at most 849"},
		{&wire.AttestRequest{UserData: make([]byte, 1024)}, "leaves 849 bytes for yours"},
	} {
		if _, err := call[*wire.AttestResponse](t.Context(), c, r.req); !errors.Is(err, wire.ErrInvalidRequest) || !strings.Contains(err.Error(), r.want) {
			t.Errorf("got %v, want invalid_request containing %q", err, r.want)
		}
	}
	if _, err := call[*wire.Status](t.Context(), c, &wire.StatusRequest{}); err != nil {
		t.Errorf("the connection after refusals: %v", err)
	}
}

// keyList asks for the whole key list, digest included.
func keyList(t *testing.T, c *wire.Conn) *wire.KeyList {
	t.Helper()
	m, err := c.Call(t.Context(), &wire.ListKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return m.(*wire.KeyList)
}

// expectedKeys converts a wire key list as a relying party would from
// GET /v1/keys: the PEMs decoded, nothing of signerd's.
func expectedKeys(t *testing.T, kl *wire.KeyList) *attestation.KeyList {
	t.Helper()
	out := &attestation.KeyList{}
	for _, k := range kl.Keys {
		block, _ := pem.Decode([]byte(k.PublicKeyPEM))
		if block == nil {
			t.Fatalf("key %s: no PEM", k.ID)
		}
		out.Keys = append(out.Keys, attestation.PublicKey{ID: k.ID, Algorithm: k.Algorithm, SPKI: block.Bytes})
	}
	return out
}

// TestAttestedKeySet: the document's key set is the digest of the keys
// loaded, which ListKeys also gives; re-provisioning changes both; and a
// host that sends, as the caller's user_data, a map claiming other keys
// gets it back under "caller" only.
func TestAttestedKeySet(t *testing.T) {
	e := start(t)
	c := e.dial()
	keys := []testKey{newKey(t, "ed", keyring.Ed25519), newKey(t, "p256", keyring.ECDSAP256), newKey(t, "eth", keyring.ECDSASecp256k1)}
	if st := e.provision(c, e.keyringFor("a.age", keys[0], keys[1]), e.keyringFor("b.age", keys[2])); st.State != wire.StateReady {
		t.Fatalf("provisioning: %+v", st)
	}
	kl := keyList(t, c)
	want := expectedKeys(t, kl)
	digest, err := attestation.KeySetDigest(want.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kl.KeySetDigest, digest) {
		t.Fatalf("key_list digest %x, want %x", kl.KeySetDigest, digest)
	}

	attest := func(userData []byte) *attestation.Document {
		t.Helper()
		resp, err := call[*wire.AttestResponse](t.Context(), c, &wire.AttestRequest{Nonce: []byte("n"), UserData: userData})
		if err != nil {
			t.Fatal(err)
		}
		doc, err := attestation.Verify(resp.Document, attestation.VerifyOptions{Roots: e.simCA.Roots()})
		if err != nil {
			t.Fatal(err)
		}
		return doc
	}
	doc := attest(nil)
	pin := map[int][]byte{0: doc.PCRs[0]}
	if err := doc.Check(attestation.Expect{PCRs: pin, Keys: want}); err != nil {
		t.Fatalf("the document does not attest the listed keys: %v", err)
	}

	// The host forges the caller's user_data: a well-formed map with the
	// key set of keys it holds itself.
	fake, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := &attestation.KeyList{Keys: append([]attestation.PublicKey(nil), want.Keys...)}
	for i, k := range forged.Keys {
		if k.ID == "p256" {
			der, _ := x509.MarshalPKIXPublicKey(&fake.PublicKey)
			forged.Keys[i].SPKI = der
		}
	}
	fakeDigest, _ := attestation.KeySetDigest(forged.Keys)
	fakeMap, _ := (&attestation.UserData{KeySet: fakeDigest}).Marshal()
	doc = attest(fakeMap)
	ud, err := doc.SignerdUserData()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ud.KeySet, digest) || !bytes.Equal(ud.Caller, fakeMap) {
		t.Fatalf("forged caller data: keyset %x caller %x; want the real key set and the forgery under caller only", ud.KeySet, ud.Caller)
	}
	if err := doc.Check(attestation.Expect{PCRs: pin, Keys: forged}); !errors.Is(err, attestation.ErrMismatch) {
		t.Fatalf("the forged key list: %v, want a mismatch", err)
	}

	// Re-provisioning with other keys: the list and the next document
	// move together.
	if st := e.provision(c, e.keyringFor("c.age", keys[0])); st.State != wire.StateReady || st.Keys != 1 {
		t.Fatalf("re-provisioning: %+v", st)
	}
	kl2 := keyList(t, c)
	if bytes.Equal(kl2.KeySetDigest, digest) {
		t.Fatal("the key list's digest did not change with the keys")
	}
	doc = attest(nil)
	if err := doc.Check(attestation.Expect{PCRs: pin, Keys: want}); !errors.Is(err, attestation.ErrMismatch) {
		t.Errorf("the old key list against the new set: %v, want a mismatch", err)
	}
	if err := doc.Check(attestation.Expect{PCRs: pin, Keys: expectedKeys(t, kl2)}); err != nil {
		t.Errorf("the new key list: %v", err)
	}
}

// TestAttestedPins: the pins signerd starts with (--kms-key here) are in
// every caller's document, and shrink the caller's room; pins that leave
// too little room stop signerd at start.
func TestAttestedPins(t *testing.T) {
	e := start(t, "--kms-key", fakeKeyARN, "--kms-key", otherKeyARN)
	c := e.dial()
	want := attestation.Pins{KMSKeys: []string{fakeKeyARN, otherKeyARN}}
	anyAuditKey, _ := attestation.MarshalAuditKey(make([]byte, ed25519.PublicKeySize))
	wantRoom, _ := (&attestation.UserData{KeySet: make([]byte, 48), Pins: want, Audit: anyAuditKey}).CallerRoom()
	if wantRoom >= 849 || wantRoom < minCallerRoom {
		t.Fatalf("room %d with two KMS key pins", wantRoom)
	}
	resp, err := call[*wire.AttestResponse](t.Context(), c, &wire.AttestRequest{UserData: bytes.Repeat([]byte{1}, wantRoom)})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := attestation.Verify(resp.Document, attestation.VerifyOptions{Roots: e.simCA.Roots()})
	if err != nil {
		t.Fatal(err)
	}
	ud, err := doc.SignerdUserData()
	if err != nil || !ud.Pins.Equal(want) || len(ud.Pins.KMSKeys) != 2 || len(ud.Caller) != wantRoom {
		t.Fatalf("user_data map %+v, %v; want the pins %v and %d caller bytes", ud, err, want, wantRoom)
	}
	if _, err := call[*wire.AttestResponse](t.Context(), c, &wire.AttestRequest{UserData: make([]byte, wantRoom+1)}); !errors.Is(err, wire.ErrInvalidRequest) || !strings.Contains(err.Error(), fmt.Sprintf("leaves %d bytes", wantRoom)) {
		t.Errorf("one byte over the room: %v", err)
	}

	// Twelve KMS keys leave a caller less than 64 bytes: signerd does not
	// start, rather than fail every attestation.
	args := []string{"--listen", "unix://" + filepath.Join(t.TempDir(), "s.sock"), "--attestation", "simulated"}
	for i := range 12 {
		args = append(args, "--kms-key", fmt.Sprintf("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-%012d", i))
	}
	if err := run(t.Context(), args, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "pin fewer") {
		t.Errorf("12 KMS key pins: run = %v, want a refusal at start", err)
	}
}

// TestEveryPinIsAttested: a pin added to Pins must reach the user_data
// map (attested), or a verifier would not see it.
func TestEveryPinIsAttested(t *testing.T) {
	attestedFields := map[string]bool{"KMSKeys": true, "KeyringSigners": true, "KeyringThreshold": true, "RequireAuth": true, "AuditOverflow": true}
	for f := range reflect.TypeFor[Pins]().Fields() {
		if !attestedFields[f.Name] {
			t.Errorf("Pins.%s is not attested: add it to Pins.attested (and to attestation.Pins if it is new there), then to this list", f.Name)
		}
	}
	arn, err := kms.ParseKeyARN(fakeKeyARN)
	if err != nil {
		t.Fatal(err)
	}
	if got := (Pins{KMSKeys: []kms.KeyARN{arn}}).attested(); !slices.Equal(got.KMSKeys, []string{fakeKeyARN}) || got.KeyringSigners != nil || got.KeyringThreshold != 0 {
		t.Errorf("attested KMS keys %q, keyring signers %q (%d)", got.KMSKeys, got.KeyringSigners, got.KeyringThreshold)
	}
	if got := (Pins{RequireAuth: true}).attested(); !got.RequireAuth {
		t.Error("--require-auth is not attested")
	}
	a, b := newSigner(t, "ed25519"), newSigner(t, "ecdsa-p256")
	for _, tc := range []struct {
		threshold int
		want      uint64
	}{{0, 1}, {2, 2}} {
		got := (Pins{KeyringSigners: []keyringsig.SignerKey{a.pin, b.pin}, KeyringThreshold: tc.threshold}).attested()
		if !slices.Equal(got.KeyringSigners, []string{a.pin.String(), b.pin.String()}) || got.KeyringThreshold != tc.want {
			t.Errorf("threshold %d: attested keyring signers %q, threshold %d; want both, %d", tc.threshold, got.KeyringSigners, got.KeyringThreshold, tc.want)
		}
	}
}

func TestStatusPCRs(t *testing.T) {
	pcr8 := pcr.Image([]byte("signing certificate"))
	e := start(t, "--sim-pcr", "8="+hex.EncodeToString(pcr8))
	st, err := call[*wire.Status](t.Context(), e.dial(), &wire.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := nsmsim.DefaultPCRs("")
	want[8] = pcr8
	if len(st.PCRs) != 16 {
		t.Errorf("status has %d PCRs, want 16", len(st.PCRs))
	}
	for i := range 16 {
		if i == 4 {
			// PCR4 is the (random) simulated instance id's.
			if len(st.PCRs[4]) != 48 {
				t.Errorf("PCR4 has %d bytes", len(st.PCRs[4]))
			}
			continue
		}
		if !bytes.Equal(st.PCRs[uint16(i)], want[i]) {
			t.Errorf("PCR%d = %x\nwant %x", i, st.PCRs[uint16(i)], want[i])
		}
	}
	if st.DebugMode {
		t.Error("debug_mode is true without --sim-debug-mode")
	}

	d := start(t, "--sim-debug-mode")
	st, err = call[*wire.Status](t.Context(), d.dial(), &wire.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.DebugMode || !pcr.IsZero(st.PCRs[0]) || len(st.PCRs[0]) != 48 || pcr.IsZero(st.PCRs[3]) {
		t.Errorf("debug mode: debug_mode %v, PCR0 %x, PCR3 %x; want true, 48 zero bytes, PCR3 measured", st.DebugMode, st.PCRs[0], st.PCRs[3])
	}
	// The debug enclave attests its zero PCR0 to KMS, and a refusal says so.
	d.kms.mu.Lock()
	d.kms.answer = func(w http.ResponseWriter, _ decryptBody) { kmsError(w, "AccessDeniedException", "denied") }
	d.kms.mu.Unlock()
	st = d.provision(d.dial(), d.keyringFor("k.age", newKey(t, "k", keyring.Ed25519)))
	if st.Error == nil || !bytes.Equal(st.Error.PCR0, pcr.Zero()) || !strings.Contains(st.Error.Message, "debug-mode") {
		t.Errorf("debug-mode AccessDenied: %+v, want PCR0 all zero and a debug-mode hint", st.Error)
	}
}

// rawConn connects without the wire client, to send bad bytes.
func rawConn(t *testing.T, e *env, hello bool) net.Conn {
	t.Helper()
	nc, err := transport.Dial(t.Context(), e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if hello {
		body, err := wire.Marshal(0, &wire.Hello{Versions: []uint16{wire.Version}})
		if err != nil {
			t.Fatal(err)
		}
		if err := wire.WriteFrame(nc, body); err != nil {
			t.Fatal(err)
		}
		if _, m, err := readMessage(nc); err != nil {
			t.Fatal(err)
		} else if _, ok := m.(*wire.HelloAck); !ok {
			t.Fatalf("handshake answered %T", m)
		}
	}
	return nc
}

func readMessage(r io.Reader) (uint64, wire.Message, error) {
	body, err := wire.ReadFrame(r, nil)
	if err != nil {
		return 0, nil, err
	}
	return wire.Unmarshal(body)
}

func TestBadFramesKeepDaemonServing(t *testing.T) {
	e := start(t)
	c := e.dial()
	if st := e.provision(c, e.keyringFor("k.age", newKey(t, "k", keyring.Ed25519))); st.State != wire.StateReady {
		t.Fatalf("provisioning: %+v", st)
	}
	tests := []struct {
		name  string
		hello bool
		bytes []byte
		code  wire.Code
	}{
		{"garbage before hello", false, []byte{0, 0, 0, 3, 0xff, 0xff, 0xff}, wire.CodeMalformedFrame},
		{"garbage after hello", true, []byte{0, 0, 0, 3, 0xff, 0xff, 0xff}, wire.CodeMalformedFrame},
		{"2 MiB length prefix", true, binary.BigEndian.AppendUint32(nil, 2<<20), wire.CodeFrameTooLarge},
		{"4 GiB length prefix before hello", false, []byte{0xff, 0xff, 0xff, 0xff}, wire.CodeFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := rawConn(t, e, tt.hello)
			if _, err := nc.Write(tt.bytes); err != nil {
				t.Fatal(err)
			}
			_, m, err := readMessage(nc)
			if err != nil {
				t.Fatalf("no error frame: %v", err)
			}
			we, ok := m.(*wire.Error)
			if !ok || we.Code != tt.code {
				t.Fatalf("answer %#v, want an error frame with code %s", m, tt.code)
			}
			if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("connection not closed after %s: %v", tt.code, err)
			}
			// The daemon and the other connection carry on.
			if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "k", Data: []byte("still here")}); err != nil {
				t.Errorf("other connection after a bad frame: %v", err)
			}
			if _, err := call[*wire.Status](t.Context(), e.dial(), &wire.StatusRequest{}); err != nil {
				t.Errorf("new connection after a bad frame: %v", err)
			}
		})
	}
}

func TestShutdownDestroysKeys(t *testing.T) {
	var d *daemon
	setTestOnlyDaemon(func(x *daemon) { d = x })
	t.Cleanup(func() { setTestOnlyDaemon(nil) })
	e := start(t)
	c := e.dial()
	if st := e.provision(c, e.keyringFor("k.age", newKey(t, "k", keyring.ECDSAP256))); st.State != wire.StateReady {
		t.Fatalf("provisioning: %+v", st)
	}
	key, err := d.set.Load().Key("k")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := e.stop(); err != nil {
		t.Fatalf("run after cancellation: %v", err)
	}
	if el := time.Since(start); el > shutdownGrace {
		t.Errorf("shutdown took %v with nothing in flight", el)
	}
	if _, err := key.SignMessage([]byte("after shutdown")); !errors.Is(err, keyring.ErrDestroyed) {
		t.Errorf("key after shutdown: %v, want ErrDestroyed", err)
	}
	if _, err := transport.Dial(t.Context(), e.addr); err == nil {
		t.Error("the socket still accepts connections after shutdown")
	}
	if !strings.Contains(e.logs.String(), "key set destroyed") {
		t.Errorf("no log line about destroying the keys:\n%s", e.logs)
	}
}

func TestStateDuringProvisioningAndShutdown(t *testing.T) {
	e := start(t)
	c := e.dial()
	waitState := func(want wire.State) *wire.Status {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := call[*wire.Status](t.Context(), c, &wire.StatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if st.State == want {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("state %s, want %s", st.State, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	setDelay := func(d time.Duration) {
		e.kms.mu.Lock()
		e.kms.delay = d
		e.kms.mu.Unlock()
	}

	// First provisioning: the state is provisioning while KMS answers.
	setDelay(300 * time.Millisecond)
	done := make(chan *wire.Status, 1)
	go func() { done <- e.provision(c, e.keyringFor("a.age", newKey(t, "a", keyring.Ed25519))) }()
	waitState(wire.StateProvisioning)
	if st := <-done; st.State != wire.StateReady {
		t.Fatalf("after provisioning: %+v", st)
	}

	// Re-provisioning: the loaded keys keep serving and the state stays ready.
	go func() { done <- e.provision(c, e.keyringFor("b.age", newKey(t, "b", keyring.Ed25519))) }()
	for e.kms.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if st := waitState(wire.StateReady); st.Keys != 1 {
		t.Errorf("status during re-provisioning: %+v", st)
	}
	if _, err := call[*wire.SignResponse](t.Context(), c, &wire.SignRequest{KeyID: "a", Data: []byte("m")}); err != nil {
		t.Errorf("signing during re-provisioning: %v", err)
	}
	<-done

	// Shutdown in the middle of a slow provisioning does not wait for KMS.
	setDelay(10 * time.Second)
	go func() {
		st, err := call[*wire.Status](t.Context(), c, e.request(e.keyringFor("c.age", newKey(t, "c", keyring.Ed25519))))
		if err == nil && st.Error != nil {
			t.Logf("the cut-off provisioning answered: %+v", st.Error)
		}
	}()
	for e.kms.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	began := time.Now()
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(began); el > 3*time.Second {
		t.Errorf("shutdown during provisioning took %v", el)
	}
}

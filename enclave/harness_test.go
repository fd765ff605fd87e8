package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
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

	"filippo.io/age"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/enclave-signer/enclave-signer/internal/cms"
	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/testsupport"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// Test credentials. The secret and token are distinctive so that the
// log-capture test can look for them.
const (
	testAccessKeyID = "AKIDSIGNERDTEST"
	testSecretKey   = "sEcReT-aCcEsS-kEy-0123456789abcdefXYZ"
	testToken       = "sEsSiOn-ToKeN-9876543210fedcbaQRS"
)

// fakeKMS is a TLS server for kms.us-east-1.amazonaws.com on a unix socket,
// standing where vsock-proxy would (as in internal/kms's tests). It answers
// Decrypt with Recipient: it verifies the attestation document against the
// simulator's root, looks the ciphertext blob up among the sealed secrets it
// was given, checks the encryption context, and returns the plaintext as a
// CMS envelope to the attested key.
type fakeKMS struct {
	t      *testing.T
	addr   transport.Addr
	caFile string // the TLS root, PEM, for --kms-ca
	roots  *x509.CertPool

	mu     sync.Mutex
	sealed map[string]sealedSecret
	// answer, when set, answers instead (after authentication).
	answer func(w http.ResponseWriter, body decryptBody)
	// delay, when set, is slept before answering.
	delay    time.Duration
	calls    int
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	contexts []map[string]string
}

type sealedSecret struct {
	plaintext []byte
	context   map[string]string
}

// fakeKeyARN is the key fakeKMS decrypts with. Like KMS, it refuses a
// Decrypt naming another key (KeyId) with IncorrectKeyException.
const fakeKeyARN = "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-4000-8000-000000000001"

type decryptBody struct {
	CiphertextBlob    []byte
	EncryptionContext map[string]string
	KeyId             string
	Recipient         struct {
		AttestationDocument    []byte
		KeyEncryptionAlgorithm string
	}
}

func newFakeKMS(t *testing.T, dir string, simRoots *x509.CertPool) *fakeKMS {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signerd test KMS CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kms.us-east-1.amazonaws.com"}, DNSNames: []string{"kms.us-east-1.amazonaws.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeKMS{t: t, roots: simRoots, sealed: map[string]sealedSecret{}}
	// A public test certificate: fine on disk.
	f.caFile = filepath.Join(dir, "kms-ca.pem")
	if err := os.WriteFile(f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kms.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f.addr = transport.Addr{Scheme: transport.Unix, Path: path}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return f
}

// seal registers plaintext under a fresh random blob, as KMS Encrypt would.
func (f *fakeKMS) seal(plaintext []byte, ec map[string]string) []byte {
	blob := make([]byte, 64)
	rand.Read(blob)
	f.mu.Lock()
	f.sealed[string(blob)] = sealedSecret{plaintext: plaintext, context: ec}
	f.mu.Unlock()
	return blob
}

func (f *fakeKMS) serve(w http.ResponseWriter, r *http.Request) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxSeen.Load()
		if n <= m || f.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	f.mu.Lock()
	f.calls++
	answer, delay := f.answer, f.delay
	f.mu.Unlock()
	var body decryptBody
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		kmsError(w, "SerializationException", err.Error())
		return
	}
	io.Copy(io.Discard, r.Body) // so that the server notices a client hanging up
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	f.mu.Lock()
	f.contexts = append(f.contexts, body.EncryptionContext)
	f.mu.Unlock()
	if target := r.Header.Get("X-Amz-Target"); target != "TrentService.Decrypt" {
		kmsError(w, "UnknownOperationException", target)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+testAccessKeyID+"/") || r.Header.Get("X-Amz-Security-Token") != testToken {
		kmsError(w, "UnrecognizedClientException", "The security token included in the request is invalid.")
		return
	}
	if answer != nil {
		answer(w, body)
		return
	}
	doc, err := attestation.Verify(body.Recipient.AttestationDocument, attestation.VerifyOptions{Roots: f.roots})
	if err != nil || body.Recipient.KeyEncryptionAlgorithm != "RSAES_OAEP_SHA_256" || doc.PublicKey == nil {
		kmsError(w, "AccessDeniedException", "bad recipient")
		return
	}
	f.mu.Lock()
	s, ok := f.sealed[string(body.CiphertextBlob)]
	f.mu.Unlock()
	if ok && body.KeyId != "" && body.KeyId != fakeKeyARN {
		kmsError(w, "IncorrectKeyException", "The key ID in the request does not identify a KMS key that can perform this operation.")
		return
	}
	if !ok || !equalContext(s.context, body.EncryptionContext) {
		kmsError(w, "InvalidCiphertextException", "")
		return
	}
	env, err := cms.Seal(rand.Reader, s.plaintext, doc.PublicKey)
	if err != nil {
		f.t.Error(err)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(map[string]any{"KeyId": fakeKeyARN, "CiphertextForRecipient": env})
}

func equalContext(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func kmsError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(400)
	json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

// env is one signerd started in-process with run(), on a unix socket,
// with simulated attestation and the fake KMS behind --kms-proxy.
type env struct {
	t        *testing.T
	dir      string
	kms      *fakeKMS
	simCA    *nsmsim.CA
	addr     transport.Addr
	logs     *testsupport.SyncBuffer
	identity *age.X25519Identity
	// identityBlob is the identity key file sealed in the fake KMS under
	// encryptionContext.
	identityBlob []byte
	cancel       context.CancelFunc
	done         chan error
}

var encryptionContext = map[string]string{"app": "enclave-signer", "purpose": "identity"}

// start runs signerd with extra flags and waits until it accepts
// connections. It is stopped (and must exit cleanly) at the end of the test.
func start(t *testing.T, extra ...string) *env {
	t.Helper()
	return startEnv(t, nil, extra...)
}

// startEnv is start with environ as signerd's environment.
func startEnv(t *testing.T, environ map[string]string, extra ...string) *env {
	t.Helper()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	ca, err := nsmsim.LoadOrCreateCA(caDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, simCA: ca, logs: &testsupport.SyncBuffer{}, done: make(chan error, 1)}
	e.kms = newFakeKMS(t, dir, ca.Roots())
	e.identity, err = age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	e.identityBlob = e.kms.seal(identityFile(e.identity), encryptionContext)
	e.addr = transport.Addr{Scheme: transport.Unix, Path: filepath.Join(dir, "signerd.sock")}
	args := append([]string{
		"--listen", e.addr.String(),
		"--attestation", "simulated",
		"--kms-proxy", e.kms.addr.String(),
		"--kms-endpoint", "https://kms.us-east-1.amazonaws.com",
		"--kms-ca", e.kms.caFile,
		"--sim-ca-dir", caDir,
		"--log-level", "debug",
	}, extra...)
	for i := range args[:len(args)-1] {
		if args[i] == "--listen" {
			if e.addr, err = transport.ParseAddr(args[i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	getenv := func(name string) string { return environ[name] }
	go func() { e.done <- run(ctx, args, getenv, e.logs) }()
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("run returned %v\nlogs:\n%s", err, e.logs)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := transport.Dial(t.Context(), e.addr)
		if err == nil {
			c.Close()
			return e
		}
		select {
		case err := <-e.done:
			e.done <- err
			t.Fatalf("signerd exited at start: %v\nlogs:\n%s", err, e.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("signerd does not accept connections: %v\nlogs:\n%s", err, e.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop cancels run's context and returns what run returned (once).
func (e *env) stop() error {
	e.cancel()
	select {
	case err, ok := <-e.done:
		if !ok {
			return nil
		}
		close(e.done)
		return err
	case <-time.After(20 * time.Second):
		return errors.New("run did not return within 20s of cancellation")
	}
}

func (e *env) dial() *wire.Conn {
	e.t.Helper()
	c, err := wire.Dial(e.t.Context(), func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, e.addr) })
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// request is a good provision request for the given keyrings.
func (e *env) request(keyrings ...wire.SealedKeyring) *wire.ProvisionRequest {
	return &wire.ProvisionRequest{
		Region: "us-east-1",
		Credentials: wire.Credentials{
			AccessKeyID: testAccessKeyID, SecretAccessKey: testSecretKey, SessionToken: testToken,
			Expiration: time.Now().Add(time.Hour),
		},
		IdentityCiphertext: e.identityBlob,
		EncryptionContext:  encryptionContext,
		Keyrings:           keyrings,
	}
}

func (e *env) provision(c *wire.Conn, keyrings ...wire.SealedKeyring) *wire.Status {
	e.t.Helper()
	st, err := call[*wire.Status](e.t.Context(), c, e.request(keyrings...))
	if err != nil {
		e.t.Fatalf("Provision: %v", err)
	}
	return st
}

// keyringFor encrypts a keyring of keys to the env's identity.
func (e *env) keyringFor(name string, keys ...testKey) wire.SealedKeyring {
	e.t.Helper()
	return wire.SealedKeyring{Name: name, Data: sealKeyring(e.t, e.identity.Recipient(), keyringJSON(keys...))}
}

func identityFile(id *age.X25519Identity) []byte {
	return []byte("# created: 2026-01-01T00:00:00Z\n# public key: " + id.Recipient().String() + "\n" + id.String() + "\n")
}

// testKey is a private key generated for a test, with its PEM as the
// keyring carries it and its raw secret (seed or scalar) for the
// log-capture test.
type testKey struct {
	id     string
	alg    keyring.Algorithm
	pem    string
	der    []byte
	secret []byte
}

var oidSecp256k1 = asn1.ObjectIdentifier{1, 3, 132, 0, 10}

func newKey(t testing.TB, id string, alg keyring.Algorithm) testKey {
	t.Helper()
	k := testKey{id: id, alg: alg}
	typ := "PRIVATE KEY"
	var err error
	switch alg {
	case keyring.Ed25519:
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		k.secret = priv.Seed()
		k.der, err = x509.MarshalPKCS8PrivateKey(priv)
	case keyring.ECDSAP256:
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		k.secret, _ = priv.Bytes()
		typ = "EC PRIVATE KEY"
		k.der, err = x509.MarshalECPrivateKey(priv)
	case keyring.ECDSASecp256k1:
		priv, gerr := secp256k1.GeneratePrivateKey()
		if gerr != nil {
			t.Fatal(gerr)
		}
		k.secret = priv.Serialize()
		pub := priv.PubKey().SerializeUncompressed()
		typ = "EC PRIVATE KEY"
		k.der, err = asn1.Marshal(struct {
			Version    int
			PrivateKey []byte
			Curve      asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
			PublicKey  asn1.BitString        `asn1:"optional,explicit,tag:1"`
		}{1, k.secret, oidSecp256k1, asn1.BitString{Bytes: pub, BitLength: 8 * len(pub)}})
	default:
		t.Fatalf("algorithm %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	k.pem = string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: k.der}))
	return k
}

func keyringJSON(keys ...testKey) []byte {
	type jsonKey struct {
		ID            string `json:"id"`
		Algorithm     string `json:"algorithm"`
		PrivateKeyPEM string `json:"private_key_pem"`
	}
	doc := struct {
		Version int       `json:"version"`
		Keys    []jsonKey `json:"keys"`
	}{Version: 1}
	for _, k := range keys {
		doc.Keys = append(doc.Keys, jsonKey{k.id, string(k.alg), k.pem})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

func sealKeyring(t *testing.T, r age.Recipient, plaintext []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plaintext); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// publicKey parses a listed PEM SubjectPublicKeyInfo independently of
// internal/keyring (x509 does not know secp256k1).
func publicKey(t *testing.T, info wire.KeyInfo) crypto.PublicKey {
	t.Helper()
	block, _ := pem.Decode([]byte(info.PublicKeyPEM))
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("key %s: public_key_pem is not a PEM PUBLIC KEY:\n%s", info.ID, info.PublicKeyPEM)
	}
	if info.Algorithm == string(keyring.ECDSASecp256k1) {
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(block.Bytes, &spki); err != nil {
			t.Fatalf("key %s: SPKI: %v", info.ID, err)
		}
		pub, err := secp256k1.ParsePubKey(spki.PublicKey.Bytes)
		if err != nil {
			t.Fatalf("key %s: secp256k1 point: %v", info.ID, err)
		}
		return pub
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatalf("key %s: %v", info.ID, err)
	}
	return pub
}

// verify checks a signature over msg (or over the digest, if isDigest) with
// Go crypto, against the listed public key.
func verify(t *testing.T, pub crypto.PublicKey, data []byte, isDigest bool, resp *wire.SignResponse) error {
	t.Helper()
	digest := data
	if !isDigest {
		h := sha256.Sum256(data)
		digest = h[:]
	}
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, data, resp.Signature) {
			return errors.New("ed25519 signature does not verify")
		}
		if resp.RecoveryID != nil || resp.SignatureRSV != nil {
			return errors.New("ed25519 answer carries recovery id or rsv")
		}
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, resp.Signature) {
			return errors.New("ecdsa-p256 signature does not verify")
		}
	case *secp256k1.PublicKey:
		sig, err := secpecdsa.ParseDERSignature(resp.Signature)
		if err != nil || !sig.Verify(digest, pub) {
			return fmt.Errorf("secp256k1 DER signature does not verify (%v)", err)
		}
		s := sig.S()
		if s.IsOverHalfOrder() {
			return errors.New("secp256k1 signature has high S")
		}
		if resp.RecoveryID == nil || len(resp.SignatureRSV) != 65 || resp.SignatureRSV[64] != *resp.RecoveryID {
			return fmt.Errorf("secp256k1 recovery id %v, rsv %d bytes", resp.RecoveryID, len(resp.SignatureRSV))
		}
		compact := append([]byte{27 + *resp.RecoveryID}, resp.SignatureRSV[:64]...)
		rec, _, err := secpecdsa.RecoverCompact(compact, digest)
		if err != nil || !rec.IsEqual(pub) {
			return fmt.Errorf("signature_rsv does not recover the listed public key (%v)", err)
		}
	default:
		return fmt.Errorf("unexpected public key type %T", pub)
	}
	return nil
}

func newIdentityPair() (*age.X25519Identity, error) { return age.GenerateX25519Identity() }

// setTestOnlyDaemon sets the hook run hands its daemon to.
func setTestOnlyDaemon(f func(*daemon)) {
	testOnlyMu.Lock()
	testOnlyDaemon = f
	testOnlyMu.Unlock()
}

// call sends req on c and checks the answer's type. These tests drive one
// connection to the daemon directly (its source port, its refusal, its
// loss are what many of them check), so they call wire.Conn rather than
// internal/wireclient's pool, which redials.
func call[T wire.Message](ctx context.Context, c *wire.Conn, req wire.Message) (T, error) {
	var zero T
	resp, err := c.Call(ctx, req)
	if err != nil {
		return zero, err
	}
	r, ok := resp.(T)
	if !ok {
		return zero, fmt.Errorf("wire: %s answered with %s, want %s", req.MessageType(), resp.MessageType(), zero.MessageType())
	}
	return r, nil
}

// listKeys returns the keys of a ListKeysRequest's answer.
func listKeys(ctx context.Context, c *wire.Conn) ([]wire.KeyInfo, error) {
	kl, err := call[*wire.KeyList](ctx, c, &wire.ListKeysRequest{})
	if err != nil {
		return nil, err
	}
	return kl.Keys, nil
}

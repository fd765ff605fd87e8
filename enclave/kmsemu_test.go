package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/kms/kmsemu"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/testsupport"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

// The instance role's session, as KMS sees signerd's calls, and the
// administrator who creates the key and seals the identity.
const (
	emuEnclavePrincipal = "arn:aws:sts::000000000000:assumed-role/NitroEnclaveInstanceRole/i-0123456789abcdef0"
	emuAdminPrincipal   = "arn:aws:iam::000000000000:role/KMSAdminRole"
)

// emulatedKMS is the KMS emulator (internal/kms/kmsemu, the handler behind
// signer kms-emulator) behind TLS for kms.us-east-1.amazonaws.com on a unix
// socket, where vsock-proxy would be, trusting a simulator CA made for the
// test. Unlike fakeKMS it evaluates key policies and verifies documents as
// the emulator does.
type emulatedKMS struct {
	srv      *kmsemu.Server
	logs     *testsupport.SyncBuffer
	addr     transport.Addr
	caFile   string // the TLS root, for --kms-ca
	simCADir string // for --sim-ca-dir
	http     string // plain HTTP endpoint, for the administrator
}

func newEmulatedKMS(t *testing.T, configure func(*kmsemu.Server)) *emulatedKMS {
	t.Helper()
	dir := t.TempDir()
	k := &emulatedKMS{logs: &testsupport.SyncBuffer{}, simCADir: filepath.Join(dir, "simca")}
	ca, err := nsmsim.LoadOrCreateCA(k.simCADir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v := &kmsemu.AttestationVerifier{Roots: kmsemu.RootsWithAWS(ca.Root())}
	k.srv = &kmsemu.Server{
		Credentials: []kmsemu.Credential{
			{AccessKeyID: testAccessKeyID, SecretAccessKey: testSecretKey, SessionToken: testToken, Principal: emuEnclavePrincipal},
			{AccessKeyID: "admin", SecretAccessKey: "admin-secret", Principal: emuAdminPrincipal},
		},
		Log:           slog.New(slog.NewTextHandler(k.logs, nil)),
		OpenRecipient: v.Open,
	}
	if configure != nil {
		configure(k.srv)
	}
	if err := k.srv.Init(); err != nil {
		t.Fatal(err)
	}
	plain := httptest.NewServer(k.srv)
	t.Cleanup(plain.Close)
	k.http = plain.URL

	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signerd test KMS CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kms.us-east-1.amazonaws.com"}, DNSNames: []string{"kms.us-east-1.amazonaws.com"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	k.caFile = filepath.Join(dir, "kms-ca.pem")
	if err := os.WriteFile(k.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kms.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(k.srv)
	front.Listener.Close()
	front.Listener = ln
	front.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	front.StartTLS()
	t.Cleanup(front.Close)
	k.addr = transport.Addr{Scheme: transport.Unix, Path: path}
	return k
}

// flags points signerd at the emulator and its simulator CA.
func (k *emulatedKMS) flags() []string {
	return []string{"--kms-proxy", k.addr.String(), "--kms-ca", k.caFile, "--sim-ca-dir", k.simCADir}
}

// seal creates a key under policy and encrypts plaintext with it as the
// administrator would, with the SDK's standard retries (the emulator may
// be throttling).
func (k *emulatedKMS) seal(t *testing.T, policy string, plaintext []byte) []byte {
	t.Helper()
	blob, _ := k.sealUnderNewKey(t, policy, plaintext)
	return blob
}

// sealUnderNewKey is seal, returning the new key's ARN too.
func (k *emulatedKMS) sealUnderNewKey(t *testing.T, policy string, plaintext []byte) (blob []byte, keyARN string) {
	t.Helper()
	admin := awskms.New(awskms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(k.http),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "admin", SecretAccessKey: "admin-secret"}, nil
		}),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 5; o.MaxBackoff = 50 * time.Millisecond }),
	})
	key, err := admin.CreateKey(t.Context(), &awskms.CreateKeyInput{Policy: aws.String(policy)})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	out, err := admin.Encrypt(t.Context(), &awskms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: plaintext, EncryptionContext: encryptionContext})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return out.CiphertextBlob, aws.ToString(key.KeyMetadata.Arn)
}

// emuPolicy is a key policy in the shape `signer policy render` gives:
// the administrator manages the key, and the instance role may decrypt
// only with an attestation document meeting conditions (JSON).
func emuPolicy(conditions string) string {
	return `{"Version":"2012-10-17","Statement":[
		{"Sid":"KeyAdministration","Effect":"Allow","Principal":{"AWS":"` + emuAdminPrincipal + `"},"Action":"kms:*","Resource":"*"},
		{"Sid":"AllowEnclaveDecrypt","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:role/NitroEnclaveInstanceRole"},"Action":"kms:Decrypt","Resource":"*",
		 "Condition":` + conditions + `}]}`
}

// TestUnsealThroughThrottlingKMS: signerd's unseal path against the KMS
// emulator with --throttle-fraction 0.5: KMS throttles signerd's Decrypt,
// signerd's KMS client (the SDK's standard retryer, 5 attempts) retries it
// and the enclave becomes ready in that same provisioning.
func TestUnsealThroughThrottlingKMS(t *testing.T) {
	k := newEmulatedKMS(t, func(s *kmsemu.Server) { s.ThrottleFraction = 0.5 })
	e := start(t, k.flags()...)
	pcr0 := nsmsim.DefaultPCRs("")[0]
	blob := k.seal(t, emuPolicy(`{"StringEqualsIgnoreCase":{"kms:RecipientAttestation:ImageSha384":"`+hex.EncodeToString(pcr0)+`"}}`), identityFile(e.identity))
	throttledDecrypts := func() int {
		n := 0
		for line := range strings.Lines(k.logs.String()) {
			if strings.Contains(line, "request throttled") && strings.Contains(line, "op=Decrypt") {
				n++
			}
		}
		return n
	}

	c := e.dial()
	req := e.request(e.keyringFor("k.age", newKey(t, "k", keyring.Ed25519)))
	req.IdentityCiphertext = blob
	st, err := call[*wire.Status](t.Context(), c, req)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != wire.StateReady {
		t.Fatalf("after a throttled Decrypt: %+v (error %+v), want ready\nemulator log:\n%s", st, st.Error, k.logs)
	}
	if n := throttledDecrypts(); n < 1 {
		t.Fatalf("no Decrypt throttled: the test did not exercise a retry\nemulator log:\n%s", k.logs)
	}
}

// TestAccessDeniedStatusThroughEmulator: a key policy that pins another
// PCR3 (the image, PCR0, matching) makes KMS refuse signerd. signerd's
// status must not blame the image: it names every PCR it presented and
// sends the operator to signer doctor with the key KMS named.
func TestAccessDeniedStatusThroughEmulator(t *testing.T) {
	k := newEmulatedKMS(t, nil)
	e := start(t, k.flags()...)
	c := e.dial()
	st0, err := call[*wire.Status](t.Context(), c, &wire.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	otherPCR3 := pcr.RoleARN("arn:aws:iam::000000000000:role/SomeOtherRole")
	blob := k.seal(t, emuPolicy(`{"StringEqualsIgnoreCase":{
		"kms:RecipientAttestation:ImageSha384":"`+hex.EncodeToString(st0.PCRs[0])+`",
		"kms:RecipientAttestation:PCR3":"`+hex.EncodeToString(otherPCR3)+`"}}`), identityFile(e.identity))
	req := e.request(e.keyringFor("k.age", newKey(t, "k", keyring.Ed25519)))
	req.IdentityCiphertext = blob
	st, err := call[*wire.Status](t.Context(), c, req)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != wire.StateFailed || st.Error == nil || st.Error.KMSCode != "AccessDeniedException" {
		t.Fatalf("with another PCR3 pinned: %+v, want failed with AccessDeniedException", st)
	}
	msg := st.Error.Message
	keyARN := regexp.MustCompile(`arn:aws:kms:us-east-1:000000000000:key/[0-9a-f-]{36}`).FindString(st.Error.KMSMessage)
	if keyARN == "" {
		t.Fatalf("KMS's message names no key: %q", st.Error.KMSMessage)
	}
	for _, i := range []int{0, 1, 2, 3, 4, 8} {
		if want := fmt.Sprintf("PCR%d %s…", i, hex.EncodeToString(st0.PCRs[uint16(i)])[:16]); !strings.Contains(msg, want) {
			t.Errorf("status error does not name %q:\n%s", want, msg)
		}
	}
	if want := "signer doctor --key-id " + keyARN + " on the parent"; !strings.Contains(msg, want) {
		t.Errorf("status error lacks %q:\n%s", want, msg)
	}
	if strings.Contains(msg, "likely expects another image") || strings.Contains(msg, "debug-mode enclave") {
		t.Errorf("status error blames the image, which matches:\n%s", msg)
	}
}

// TestPinnedKeyThroughEmulator: signerd pinned to key A, against the KMS
// emulator. An identity sealed under another key B whose policy admits
// any enclave (an attacker's) is refused: KMS answers the Decrypt naming A
// with IncorrectKeyException, as AWS does, and signerd names B, which it
// learns from a Decrypt without KeyId whose plaintext it never opens. The
// identity sealed under A is accepted.
func TestPinnedKeyThroughEmulator(t *testing.T) {
	k := newEmulatedKMS(t, nil)
	pcr0 := hex.EncodeToString(nsmsim.DefaultPCRs("")[0])
	idA, err := newIdentityPair()
	if err != nil {
		t.Fatal(err)
	}
	blobA, arnA := k.sealUnderNewKey(t, emuPolicy(`{"StringEqualsIgnoreCase":{"kms:RecipientAttestation:ImageSha384":"`+pcr0+`"}}`), identityFile(idA))
	idB, err := newIdentityPair()
	if err != nil {
		t.Fatal(err)
	}
	blobB, arnB := k.sealUnderNewKey(t, emuPolicy(`{"Null":{"kms:RecipientAttestation:ImageSha384":"false"}}`), identityFile(idB))

	e := start(t, append(k.flags(), "--kms-key", arnA)...)
	c := e.dial()
	req := e.request(wire.SealedKeyring{Name: "b.age", Data: sealKeyring(t, idB.Recipient(), keyringJSON(newKey(t, "k", keyring.Ed25519)))})
	req.IdentityCiphertext = blobB
	st, err := call[*wire.Status](t.Context(), c, req)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != wire.StateFailed || st.Error == nil || st.Error.Step != "kms_key" {
		t.Fatalf("identity under an unpinned key: %+v (error %+v), want failed at kms_key\nemulator log:\n%s", st, st.Error, k.logs)
	}
	for _, want := range []string{"sealed under KMS key " + arnB + ", which is not pinned", arnA + ": IncorrectKeyException", "signerd accepts only an identity sealed under " + arnA} {
		if !strings.Contains(st.Error.Message, want) {
			t.Errorf("error lacks %q:\n%s", want, st.Error.Message)
		}
	}
	if !strings.Contains(k.logs.String(), "ciphertext is for another key") {
		t.Errorf("the emulator did not refuse the Decrypt naming %s as IncorrectKey:\n%s", arnA, k.logs)
	}

	req = e.request(wire.SealedKeyring{Name: "a.age", Data: sealKeyring(t, idA.Recipient(), keyringJSON(newKey(t, "k", keyring.Ed25519)))})
	req.IdentityCiphertext = blobA
	if st, err = call[*wire.Status](t.Context(), c, req); err != nil || st.State != wire.StateReady || st.Error != nil {
		t.Fatalf("identity under the pinned key: %+v, %v, want ready", st, err)
	}
}

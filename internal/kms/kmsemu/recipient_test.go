package kmsemu

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/enclave-signer/enclave-signer/internal/kms"
	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
)

const (
	enclaveRole = "arn:aws:sts::000000000000:assumed-role/NitroEnclaveInstanceRole/i-0123456789abcdef0"
	keyMgmtRole = "arn:aws:iam::000000000000:role/KeyManagementRole"
	kmsAdmin    = "arn:aws:iam::000000000000:role/KMSAdminRole"
	identity    = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
)

// attestedKMS is the emulator as the enclave reaches it: TLS for
// kms.us-east-1.amazonaws.com on a unix socket that stands where
// vsock-proxy would, with the simulator's root trusted for attestation.
type attestedKMS struct {
	t     *testing.T
	srv   *Server
	logs  *logBuffer
	sock  transport.Addr
	tlsCA *x509.CertPool
	http  string // plain HTTP endpoint for the admin and encrypt roles
	simCA *nsmsim.CA
	now   time.Time
}

func newAttestedKMS(t *testing.T, configure ...func(*Server)) *attestedKMS {
	t.Helper()
	a := &attestedKMS{t: t, logs: &logBuffer{}, now: time.Now()}
	var err error
	if a.simCA, err = nsmsim.NewCA(a.now); err != nil {
		t.Fatal(err)
	}
	v := &AttestationVerifier{Roots: RootsWithAWS(a.simCA.Root()), Log: slog.New(slog.NewTextHandler(a.logs, nil))}
	a.srv = &Server{
		Credentials: []Credential{
			{AccessKeyID: "enclave", SecretAccessKey: "enclave-secret", SessionToken: "enclave-token", Principal: enclaveRole, Expires: a.now.Add(time.Hour)},
			{AccessKeyID: "encryptor", SecretAccessKey: "encryptor-secret", Principal: keyMgmtRole},
			{AccessKeyID: "admin", SecretAccessKey: "admin-secret", Principal: kmsAdmin},
		},
		StatePath:     filepath.Join(t.TempDir(), "state.json"),
		Log:           slog.New(slog.NewTextHandler(a.logs, nil)),
		OpenRecipient: v.Open,
	}
	for _, c := range configure {
		c(a.srv)
	}
	env := start(t, a.srv)
	a.http = env.url

	// The TLS front: a certificate for KMS's name under a test CA.
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dev CA"}, NotBefore: a.now.Add(-time.Hour), NotAfter: a.now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kms.us-east-1.amazonaws.com"}, DNSNames: []string{"kms.us-east-1.amazonaws.com"}, NotBefore: a.now.Add(-time.Hour), NotAfter: a.now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, _ := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	a.tlsCA = x509.NewCertPool()
	a.tlsCA.AddCert(caCert)
	path := filepath.Join(t.TempDir(), "kms-proxy.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(a.srv)
	front.Listener.Close()
	front.Listener = ln
	front.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	front.StartTLS()
	t.Cleanup(front.Close)
	a.sock = transport.Addr{Scheme: transport.Unix, Path: path}
	return a
}

// sealIdentity creates a key under policy (as the admin role) and encrypts
// the identity with it (as the key management role), as an operator does.
func (a *attestedKMS) sealIdentity(policy string) []byte {
	t := a.t
	t.Helper()
	admin := retryingClientFor(a.http, aws.Credentials{AccessKeyID: "admin", SecretAccessKey: "admin-secret"})
	key, err := admin.CreateKey(t.Context(), &awskms.CreateKeyInput{Policy: aws.String(policy)})
	if err != nil {
		t.Fatalf("CreateKey with the policy: %v", err)
	}
	enc := retryingClientFor(a.http, aws.Credentials{AccessKeyID: "encryptor", SecretAccessKey: "encryptor-secret"})
	out, err := enc.Encrypt(t.Context(), &awskms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte(identity)})
	if err != nil {
		t.Fatalf("Encrypt as the key management role: %v", err)
	}
	return out.CiphertextBlob
}

// enclaveClient is the enclave's own client, in its production
// configuration but for the socket and the TLS root.
func (a *attestedKMS) enclaveClient() *kms.Client {
	c, err := kms.New(kms.Config{
		Region:      "us-east-1",
		Credentials: kms.Credentials{AccessKeyID: "enclave", SecretAccessKey: "enclave-secret", SessionToken: "enclave-token", Expires: a.now.Add(time.Hour)},
		Proxy:       a.sock,
		Roots:       a.tlsCA,
		MaxAttempts: 1,
	})
	if err != nil {
		a.t.Fatal(err)
	}
	return c
}

func (a *attestedKMS) recipient(nsm nsm.Module) *kms.Recipient {
	key, err := kms.NewKeySource(a.t.Context()).Take(a.t.Context())
	if err != nil {
		a.t.Fatal(err)
	}
	r, err := kms.NewRecipient(nsm, key)
	if err != nil {
		a.t.Fatal(err)
	}
	return r
}

func (a *attestedKMS) sim(opts nsmsim.Options) *nsmsim.Simulator {
	if opts.CA == nil {
		opts.CA = a.simCA
	}
	s, err := nsmsim.New(opts)
	if err != nil {
		a.t.Fatal(err)
	}
	return s
}

// decrypt unseals blob as an enclave with the given NSM would.
func (a *attestedKMS) decrypt(blob []byte, nsm nsm.Module) ([]byte, error) {
	out, err := a.enclaveClient().Decrypt(a.t.Context(), kms.DecryptInput{CiphertextBlob: blob}, a.recipient(nsm))
	if err != nil {
		return nil, err
	}
	return out.Plaintext, nil
}

func guideFile(t *testing.T, name string) string {
	t.Helper()
	// The guide's JSON blocks, verbatim, kept once for the whole tree.
	b, err := os.ReadFile(filepath.Join("..", "..", "policy", "testdata", "zh-guide", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// guidePolicy returns the guide's policy with its placeholders filled and
// its first statement (AllowEnclaveDecrypt) replaced by replacement, if any,
// and extra statements appended.
func guidePolicy(t *testing.T, fill map[string]string, replacement string, extra ...string) string {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(guideFile(t, "policy.json")), &doc); err != nil {
		t.Fatal(err)
	}
	stmts := doc["Statement"].([]any)
	parse := func(s string) any {
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if replacement != "" {
		stmts[0] = parse(replacement)
	}
	for _, e := range extra {
		stmts = append(stmts, parse(e))
	}
	doc["Statement"] = stmts
	b, _ := json.MarshalIndent(doc, "", "  ")
	s := string(b)
	fill["ACCOUNT_ID"] = "000000000000"
	for k, v := range fill {
		s = strings.ReplaceAll(s, k, v)
	}
	if strings.Contains(s, "YOUR_") || strings.Contains(s, "_VALUE") {
		t.Fatalf("unfilled placeholder in\n%s", s)
	}
	return s
}

func TestGuidePolicyWithRecipient(t *testing.T) {
	a := newAttestedKMS(t)
	pinned := pcr.Image([]byte("release 1"))
	other := pcr.Image([]byte("release 2"))
	third := pcr.Image([]byte("release 3"))
	roleARN := "arn:aws:iam::000000000000:role/NitroEnclaveInstanceRole"
	hexs := hex.EncodeToString

	enclave := func(pcr0 []byte) nsm.Module { return a.sim(nsmsim.Options{PCRs: map[int][]byte{0: pcr0}}) }
	debugEnclave := a.sim(nsmsim.Options{DebugMode: true})
	withPCR3 := func(pcr0, pcr3 []byte) nsm.Module {
		return a.sim(nsmsim.Options{PCRs: map[int][]byte{0: pcr0, 3: pcr3}})
	}

	type attempt struct {
		name string
		nsm  nsm.Module
		ok   bool
	}
	tests := []struct {
		name     string
		policy   string
		attempts []attempt
	}{
		{
			name:   "pinned PCR0",
			policy: guidePolicy(t, map[string]string{"YOUR_PCR0_VALUE_HERE": hexs(pinned)}, ""),
			attempts: []attempt{
				{"the pinned image", enclave(pinned), true},
				{"another image", enclave(other), false},
				{"a debug enclave", debugEnclave, false},
			},
		},
		{
			name:   "debug statement",
			policy: guidePolicy(t, map[string]string{"YOUR_PCR0_VALUE_HERE": hexs(pinned)}, "", guideFile(t, "debug-statement.json")),
			attempts: []attempt{
				{"a debug enclave (all-zero PCR0)", debugEnclave, true},
				{"the pinned image", enclave(pinned), true},
				{"another image", enclave(other), false},
			},
		},
		{
			name: "multi-version statement",
			policy: guidePolicy(t, map[string]string{"PCR0_VALUE_VERSION_1": hexs(pinned), "PCR0_VALUE_VERSION_2": strings.ToUpper(hexs(other))},
				guideFile(t, "multi-version-statement.json")),
			attempts: []attempt{
				{"version 1", enclave(pinned), true},
				{"version 2 (policy in upper case)", enclave(other), true},
				{"a third image", enclave(third), false},
			},
		},
		{
			name: "PCR0 and PCR3",
			policy: guidePolicy(t, map[string]string{"YOUR_PCR0_VALUE": hexs(pinned), "YOUR_PCR3_VALUE": hexs(pcr.RoleARN(roleARN))},
				guideFile(t, "pcr3-statement.json")),
			attempts: []attempt{
				{"both match", withPCR3(pinned, pcr.RoleARN(roleARN)), true},
				{"PCR3 of another role", withPCR3(pinned, pcr.RoleARN("arn:aws:iam::000000000000:role/Other")), false},
				{"PCR3 as the guide computes it (bare sha384 of the ARN)", withPCR3(pinned, sha384(roleARN)), false},
				{"PCR0 of another image", withPCR3(other, pcr.RoleARN(roleARN)), false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob := a.sealIdentity(tt.policy)
			for _, at := range tt.attempts {
				pt, err := a.decrypt(blob, at.nsm)
				if at.ok {
					if err != nil || string(pt) != identity {
						t.Errorf("%s: %v, want the identity", at.name, err)
					}
					continue
				}
				if !errors.Is(err, kms.ErrAccessDenied) {
					t.Errorf("%s: got %v, want AccessDeniedException", at.name, err)
				} else if !strings.Contains(err.Error(), "PCR0") {
					t.Errorf("%s: error %q does not name the PCR0 presented", at.name, err)
				}
			}
			// Without an attestation document the enclave role gets nothing:
			// the RecipientAttestation condition is unmet.
			plain := clientFor(a.http, aws.Credentials{AccessKeyID: "enclave", SecretAccessKey: "enclave-secret", SessionToken: "enclave-token"})
			_, err := plain.Decrypt(t.Context(), &awskms.DecryptInput{CiphertextBlob: blob})
			wantCode(t, err, CodeAccessDenied)
		})
	}
}

func sha384(s string) []byte {
	// What `echo -n ARN | sha384sum` gives: not a PCR3 any enclave presents.
	h := pcr.Extend(nil, []byte(s))
	return h
}

// tamperingNSM flips one byte of every document's signature.
type tamperingNSM struct{ nsm.Module }

func (n tamperingNSM) Send(req request.Request) (response.Response, error) {
	res, err := n.Module.Send(req)
	if res.Attestation != nil {
		d := res.Attestation.Document
		d[len(d)-1] ^= 1
	}
	return res, err
}

func TestRecipientDocumentRefused(t *testing.T) {
	a := newAttestedKMS(t)
	debugPolicy := guidePolicy(t, map[string]string{"YOUR_PCR0_VALUE_HERE": strings.Repeat("0", 96)}, "")
	blob := a.sealIdentity(debugPolicy)
	if _, err := a.decrypt(blob, a.sim(nsmsim.Options{DebugMode: true})); err != nil {
		t.Fatalf("a valid debug document: %v", err)
	}
	otherCA, _ := nsmsim.NewCA(time.Now())
	old := time.Now().Add(-10 * time.Minute)
	tests := []struct {
		name string
		nsm  nsm.Module
		log  string
	}{
		{"a CA the emulator does not trust", a.sim(nsmsim.Options{CA: otherCA, DebugMode: true}), "trusted root"},
		{"a flipped byte", tamperingNSM{a.sim(nsmsim.Options{DebugMode: true})}, "signature does not verify"},
		{"a document 10 minutes old", a.sim(nsmsim.Options{DebugMode: true, Now: func() time.Time { return old }}), "old, the limit is 5m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.decrypt(blob, tt.nsm)
			var ke *kms.Error
			if !errors.As(err, &ke) || ke.Code != CodeAccessDenied {
				t.Fatalf("got %v, want AccessDeniedException", err)
			}
			if !strings.Contains(a.logs.String(), tt.log) {
				t.Fatalf("the emulator's log does not say why (%q):\n%s", tt.log, a.logs.String())
			}
		})
	}
}

// TestRecipientResponseShape checks Plaintext is absent and the envelope
// opens, through the raw SDK (not the enclave's client), for the three
// operations that take a Recipient.
func TestRecipientResponseShape(t *testing.T) {
	a := newAttestedKMS(t)
	blob := a.sealIdentity(guidePolicy(t, map[string]string{"YOUR_PCR0_VALUE_HERE": strings.Repeat("0", 96)}, "",
		`{"Sid":"DataKeys","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:role/NitroEnclaveInstanceRole"},"Action":["kms:GenerateDataKey","kms:GenerateRandom"],"Resource":"*","Condition":{"StringEqualsIgnoreCase":{"kms:RecipientAttestation:ImageSha384":"`+strings.Repeat("0", 96)+`"}}}`))
	r := a.recipient(a.sim(nsmsim.Options{DebugMode: true}))
	c := clientFor(a.http, aws.Credentials{AccessKeyID: "enclave", SecretAccessKey: "enclave-secret", SessionToken: "enclave-token"})
	rec := &types.RecipientInfo{AttestationDocument: r.Document(), KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}
	out, err := c.Decrypt(t.Context(), &awskms.DecryptInput{CiphertextBlob: blob, Recipient: rec})
	if err != nil {
		t.Fatal(err)
	}
	if out.Plaintext != nil || len(out.CiphertextForRecipient) == 0 || !strings.HasPrefix(aws.ToString(out.KeyId), "arn:aws:kms:us-east-1:000000000000:key/") {
		t.Fatalf("Decrypt with Recipient: plaintext %v, envelope %d bytes, key %q", out.Plaintext, len(out.CiphertextForRecipient), aws.ToString(out.KeyId))
	}
	if len(out.CiphertextForRecipient) != 445+80 {
		t.Errorf("envelope for a 74-byte identity is %d bytes, want 525 as KMS's", len(out.CiphertextForRecipient))
	}
	gdk, err := c.GenerateDataKey(t.Context(), &awskms.GenerateDataKeyInput{KeyId: out.KeyId, NumberOfBytes: aws.Int32(32), Recipient: rec})
	if err != nil || gdk.Plaintext != nil || len(gdk.CiphertextBlob) == 0 || len(gdk.CiphertextForRecipient) != 445+48 {
		t.Fatalf("GenerateDataKey with Recipient: %v (plaintext %v, envelope %d bytes)", err, gdk.Plaintext, len(gdk.CiphertextForRecipient))
	}
	rnd, err := c.GenerateRandom(t.Context(), &awskms.GenerateRandomInput{NumberOfBytes: aws.Int32(16), Recipient: rec})
	if err != nil || rnd.Plaintext != nil || len(rnd.CiphertextForRecipient) != 445+32 {
		t.Fatalf("GenerateRandom with Recipient: %v", err)
	}
	// A recipient with a non-RSA key is a validation error.
	bad := &types.RecipientInfo{AttestationDocument: []byte{1, 2, 3}, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}
	_, err = c.Decrypt(t.Context(), &awskms.DecryptInput{CiphertextBlob: blob, Recipient: bad})
	wantCode(t, err, CodeValidation)
}

func TestPrincipalARN(t *testing.T) {
	for in, want := range map[string]string{
		"arn:aws:sts::000000000000:assumed-role/NitroEnclaveInstanceRole/i-0123": "arn:aws:iam::000000000000:role/NitroEnclaveInstanceRole",
		"arn:aws:iam::000000000000:role/dev":                                     "arn:aws:iam::000000000000:role/dev",
		"arn:aws:iam::000000000000:user/alice":                                   "arn:aws:iam::000000000000:user/alice",
	} {
		if got := principalARN(in); got != want {
			t.Errorf("principalARN(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAccessDeniedHintNamesEveryPCR: the enclave cannot see the key
// policy, so when KMS refuses it must not blame PCR0: its hint lists every
// PCR a policy can pin with the values the enclave presented, and sends
// the operator to signer doctor with the key KMS named. Refusals for
// another PCR3 (PCR0 matching) and for another PCR0 get the same honest
// hint.
func TestAccessDeniedHintNamesEveryPCR(t *testing.T) {
	a := newAttestedKMS(t)
	roleARN := "arn:aws:iam::000000000000:role/NitroEnclaveInstanceRole"
	sim := a.sim(nsmsim.Options{PCRs: map[int][]byte{3: pcr.RoleARN(roleARN)}})
	presented := map[int][]byte{}
	for _, i := range []int{0, 1, 2, 3, 4, 8} {
		presented[i] = sim.PCR(i)
	}
	hexs := hex.EncodeToString
	for _, tc := range []struct{ name, pcr0, pcr3 string }{
		{"another PCR3, PCR0 matching", hexs(presented[0]), hexs(pcr.RoleARN("arn:aws:iam::000000000000:role/Other"))},
		{"another PCR0, PCR3 matching", hexs(pcr.Image([]byte("another image"))), hexs(presented[3])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blob := a.sealIdentity(guidePolicy(t, map[string]string{"YOUR_PCR0_VALUE": tc.pcr0, "YOUR_PCR3_VALUE": tc.pcr3},
				guideFile(t, "pcr3-statement.json")))
			_, err := a.decrypt(blob, sim)
			var ke *kms.Error
			if !errors.As(err, &ke) || !errors.Is(err, kms.ErrAccessDenied) {
				t.Fatalf("got %v, want AccessDenied", err)
			}
			keyARN := ke.KeyARN
			if !strings.HasPrefix(keyARN, "arn:aws:kms:us-east-1:000000000000:key/") {
				t.Errorf("KeyARN %q: want the key KMS named in its message", keyARN)
			}
			msg := err.Error()
			for _, i := range []int{0, 1, 2, 3, 4, 8} {
				want := fmt.Sprintf("PCR%d %s…", i, hexs(presented[i])[:16])
				if !strings.Contains(msg, want) {
					t.Errorf("the hint does not name %q:\n%s", want, msg)
				}
				if ke.PCRs[i] != hexs(presented[i]) {
					t.Errorf("Error.PCRs[%d] = %q, want the presented %x", i, ke.PCRs[i], presented[i])
				}
			}
			for _, want := range []string{"signer doctor --key-id " + keyARN, "cannot see the key policy", "cannot tell which condition failed"} {
				if !strings.Contains(msg, want) {
					t.Errorf("the hint lacks %q:\n%s", want, msg)
				}
			}
			if strings.Contains(msg, "likely expects another image") {
				t.Errorf("the hint blames the image (PCR0) without knowing:\n%s", msg)
			}
		})
	}
}

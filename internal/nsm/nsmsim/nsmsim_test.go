package nsmsim_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/request"
)

func newSim(t *testing.T, opts nsmsim.Options) *nsmsim.Simulator {
	t.Helper()
	if opts.CA == nil {
		ca, err := nsmsim.NewCA(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		opts.CA = ca
	}
	s, err := nsmsim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDocumentForm checks the simulated bytes against the form of real
// documents with a plain CBOR reader, independently of the verifier.
func TestDocumentForm(t *testing.T) {
	s := newSim(t, nsmsim.Options{})
	before := time.Now()
	doc, err := nsm.Attest(s, nsm.AttestRequest{UserData: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	if doc[0] != 0x84 {
		t.Fatalf("first byte %#x, want 0x84 (untagged COSE_Sign1 array of 4)", doc[0])
	}
	if !bytes.HasPrefix(doc, []byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59}) {
		t.Fatalf("prefix % x, want 84 44 a1 01 38 22 a0 59 as in real documents", doc[:8])
	}
	var cose []cbor.RawMessage
	if err := cbor.Unmarshal(doc, &cose); err != nil || len(cose) != 4 {
		t.Fatalf("COSE_Sign1: %v, %d items", err, len(cose))
	}
	var payload, sig []byte
	cbor.Unmarshal(cose[2], &payload)
	cbor.Unmarshal(cose[3], &sig)
	if len(sig) != 96 {
		t.Fatalf("signature %d bytes, want 96", len(sig))
	}
	if payload[0] != 0xa9 {
		t.Fatalf("payload starts %#x, want a definite map of 9 (0xa9)", payload[0])
	}
	// Walk the map in wire order.
	rest := payload[1:]
	var keys []string
	values := map[string]cbor.RawMessage{}
	for range 9 {
		var k string
		var v cbor.RawMessage
		var err error
		if rest, err = cbor.UnmarshalFirst(rest, &k); err != nil {
			t.Fatal(err)
		}
		if rest, err = cbor.UnmarshalFirst(rest, &v); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		values[k] = v
	}
	want := []string{"module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key", "user_data", "nonce"}
	if len(rest) != 0 || len(keys) != len(want) {
		t.Fatalf("payload keys %q with %d trailing bytes", keys, len(rest))
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("payload keys in order %q\nwant %q", keys, want)
		}
	}
	for _, k := range []string{"public_key", "nonce"} {
		if !bytes.Equal(values[k], []byte{0xf6}) {
			t.Errorf("%s = % x, want CBOR null (f6)", k, values[k])
		}
	}
	if !bytes.Equal(values["user_data"], append([]byte{0x45}, "hello"...)) {
		t.Errorf("user_data = % x", values["user_data"])
	}
	if values["timestamp"][0] != 0x1b {
		t.Errorf("timestamp encoded with %#x, want 0x1b (8-byte uint) as real documents", values["timestamp"][0])
	}
	var digest string
	cbor.Unmarshal(values["digest"], &digest)
	if digest != "SHA384" {
		t.Errorf("digest %q", digest)
	}
	// PCRs 0-15, in order, 48 bytes each.
	p := values["pcrs"]
	if p[0] != 0xb0 {
		t.Fatalf("pcrs starts %#x, want a map of 16 (0xb0)", p[0])
	}
	r := p[1:]
	for i := range 16 {
		var idx uint64
		var val []byte
		r, _ = cbor.UnmarshalFirst(r, &idx)
		r, _ = cbor.UnmarshalFirst(r, &val)
		if idx != uint64(i) || len(val) != 48 {
			t.Fatalf("pcrs entry %d: index %d, %d bytes", i, idx, len(val))
		}
	}
	// The leaf lives 3 hours from the document's timestamp; cabundle has 4
	// certificates, root first.
	var certDER []byte
	var bundle [][]byte
	cbor.Unmarshal(values["certificate"], &certDER)
	cbor.Unmarshal(values["cabundle"], &bundle)
	leaf, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life != 3*time.Hour+3*time.Second {
		t.Errorf("leaf lifetime %v, want 3h3s", life)
	}
	if leaf.NotAfter.Before(before.Add(3*time.Hour-time.Second)) || leaf.IsCA {
		t.Errorf("leaf NotAfter %v, IsCA %v", leaf.NotAfter, leaf.IsCA)
	}
	if len(bundle) != 4 {
		t.Fatalf("cabundle %d certificates, want 4", len(bundle))
	}
	root, _ := x509.ParseCertificate(bundle[0])
	if root == nil || root.Subject.String() != root.Issuer.String() {
		t.Errorf("cabundle[0] is not the self-signed root")
	}
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := nsmsim.LoadOrCreateCA(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A second load reads the same CA back.
	ca2, err := nsmsim.LoadOrCreateCA(dir, time.Now())
	if err != nil || !ca2.Root().Equal(ca.Root()) {
		t.Fatalf("reloaded CA differs: %v", err)
	}
	s := newSim(t, nsmsim.Options{CA: ca2})
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	raw, err := nsm.Attest(s, nsm.AttestRequest{PublicKey: spki, Nonce: []byte{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := attestation.Verify(raw, attestation.VerifyOptions{Roots: ca.Roots()})
	if err != nil {
		t.Fatalf("simulated document against the simulator root: %v", err)
	}
	if !bytes.Equal(d.PublicKey, spki) || !bytes.Equal(d.Nonce, []byte{1, 2, 3}) || d.UserData != nil {
		t.Errorf("fields: public_key %d bytes, nonce %x, user_data %v", len(d.PublicKey), d.Nonce, d.UserData)
	}
	if d.ModuleID != s.ModuleID() || d.DebugMode() {
		t.Errorf("module_id %q, debug %v", d.ModuleID, d.DebugMode())
	}
	if !bytes.Equal(d.PCRs[0], nsmsim.DefaultPCRs("")[0]) {
		t.Errorf("PCR0 is not the default simulated value")
	}
	if _, err := attestation.Verify(raw, attestation.VerifyOptions{}); !errors.Is(err, attestation.ErrUntrustedRoot) {
		t.Fatalf("simulated document against the AWS root: %v, want ErrUntrustedRoot", err)
	}
	// A later document reuses the same leaf, as the hypervisor does.
	raw2, _ := nsm.Attest(s, nsm.AttestRequest{})
	d2, err := attestation.Verify(raw2, attestation.VerifyOptions{Roots: ca.Roots()})
	if err != nil || !bytes.Equal(d2.Certificate, d.Certificate) {
		t.Errorf("second document: %v, same leaf %v", err, bytes.Equal(d2.Certificate, d.Certificate))
	}
}

func TestDebugModeAndPCRs(t *testing.T) {
	custom := pcr.Image([]byte("custom"))
	s := newSim(t, nsmsim.Options{DebugMode: true, PCRs: map[int][]byte{0: custom, 3: custom}, InstanceID: "i-1234567890abcdef0"})
	raw, err := nsm.Attest(s, nsm.AttestRequest{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := attestation.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 2, 8} {
		if !pcr.IsZero(d.PCRs[i]) {
			t.Errorf("debug mode: PCR%d = %x, want zero", i, d.PCRs[i])
		}
	}
	if !bytes.Equal(d.PCRs[3], custom) {
		t.Errorf("PCR3 = %x, want the configured value (debug mode keeps PCR3 measured)", d.PCRs[3])
	}
	if !bytes.Equal(d.PCRs[4], pcr.InstanceID("i-1234567890abcdef0")) {
		t.Errorf("PCR4 = %x, want PCR4 of the instance id", d.PCRs[4])
	}
	if !d.DebugMode() {
		t.Error("DebugMode() = false")
	}
}

func TestNSMOperations(t *testing.T) {
	s := newSim(t, nsmsim.Options{})
	v, locked, err := nsm.DescribePCR(s, 0)
	if err != nil || !locked || len(v) != 48 {
		t.Fatalf("DescribePCR(0) = %x, %v, %v", v, locked, err)
	}
	// PCRs 0-15 are read-only; 16-31 can be extended until locked.
	if res, _ := s.Send(&request.ExtendPCR{Index: 0, Data: []byte("x")}); res.Error == "" {
		t.Error("ExtendPCR(0) succeeded on a locked PCR")
	}
	res, err := s.Send(&request.ExtendPCR{Index: 16, Data: []byte("x")})
	if err != nil || res.ExtendPCR == nil || !bytes.Equal(res.ExtendPCR.Data, pcr.Extend(pcr.Zero(), []byte("x"))) {
		t.Fatalf("ExtendPCR(16): %+v, %v", res, err)
	}
	if res, _ := s.Send(&request.LockPCR{Index: 16}); res.Error != "" {
		t.Fatalf("LockPCR(16): %v", res.Error)
	}
	if res, _ := s.Send(&request.ExtendPCR{Index: 16, Data: []byte("y")}); res.Error == "" {
		t.Error("ExtendPCR(16) succeeded after LockPCR")
	}
	// A locked application PCR appears in later documents.
	raw, _ := nsm.Attest(s, nsm.AttestRequest{})
	d, _ := attestation.Parse(raw)
	if len(d.PCRs) != 17 {
		t.Errorf("%d PCRs after locking PCR16, want 17", len(d.PCRs))
	}
	if _, err := nsm.Attest(s, nsm.AttestRequest{UserData: make([]byte, 1025)}); err == nil {
		t.Error("Attest accepted 1025 bytes of user data")
	}
	res, err = s.Send(&request.DescribeNSM{})
	if err != nil || res.DescribeNSM == nil || res.DescribeNSM.MaxPCRs != 32 || res.DescribeNSM.Digest != "SHA384" {
		t.Fatalf("DescribeNSM: %+v, %v", res.DescribeNSM, err)
	}
	buf := make([]byte, 64)
	if n, err := s.Read(buf); n != 64 || err != nil {
		t.Fatalf("Read: %d, %v", n, err)
	}
}

func TestLeafRenewal(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	ca, _ := nsmsim.NewCA(now)
	s := newSim(t, nsmsim.Options{CA: ca, Now: clock})
	raw1, _ := nsm.Attest(s, nsm.AttestRequest{})
	now = now.Add(3 * time.Hour)
	raw2, err := nsm.Attest(s, nsm.AttestRequest{})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := attestation.Parse(raw1)
	d2, err := attestation.Verify(raw2, attestation.VerifyOptions{Roots: ca.Roots(), CurrentTime: now})
	if err != nil {
		t.Fatalf("document after the first leaf expired: %v", err)
	}
	if bytes.Equal(d1.Certificate, d2.Certificate) {
		t.Error("leaf was not renewed after 3 hours")
	}
	// Two days on, the instance CA (1 day) has been renewed too.
	now = now.Add(48 * time.Hour)
	raw3, _ := nsm.Attest(s, nsm.AttestRequest{})
	if _, err := attestation.Verify(raw3, attestation.VerifyOptions{Roots: ca.Roots(), CurrentTime: now}); err != nil {
		t.Fatalf("document two days later: %v", err)
	}
}

func TestIssueTLSCertificate(t *testing.T) {
	ca, _ := nsmsim.NewCA(time.Now())
	cert, err := ca.IssueTLSCertificate([]string{"kms.us-east-1.amazonaws.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Roots(), DNSName: "kms.us-east-1.amazonaws.com"}); err != nil {
		t.Fatalf("TLS certificate does not verify under the dev root: %v", err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Roots(), DNSName: "kms.eu-west-1.amazonaws.com"}); err == nil {
		t.Fatal("TLS certificate verifies for another name")
	}
}

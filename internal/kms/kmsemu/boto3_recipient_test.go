package kmsemu

import (
	"bytes"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
)

// boto3RecipientScript encrypts a secret, then sends Decrypt with a
// Recipient (the attestation document in argv[2]) and writes the
// CiphertextForRecipient to argv[3]. It fails if Plaintext comes back.
const boto3RecipientScript = `
import sys, boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1")
key = kms.create_key()["KeyMetadata"]["KeyId"]
blob = kms.encrypt(KeyId=key, Plaintext=b"sealed for the enclave")["CiphertextBlob"]
doc = open(sys.argv[2], "rb").read()
out = kms.decrypt(CiphertextBlob=blob, Recipient={"AttestationDocument": doc, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
assert not out.get("Plaintext"), "Plaintext returned with a Recipient"
open(sys.argv[3], "wb").write(out["CiphertextForRecipient"])
`

// TestBoto3RecipientOpenSSL: clients no one here wrote on both ends. boto3
// sends Decrypt with a Recipient whose document carries an RSA key made by
// openssl; openssl cms -decrypt opens the CiphertextForRecipient.
func TestBoto3RecipientOpenSSL(t *testing.T) {
	t.Parallel()
	py := tool(t, "python3", "-c", "import boto3")
	openssl := tool(t, "openssl", "version")
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "recipient.pem") // a throwaway test key
	if out, err := exec.Command(openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keyPath).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, out)
	}
	pubPEM, err := exec.Command(openssl, "pkey", "-in", keyPath, "-pubout").Output()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pubPEM)

	ca, _ := nsmsim.NewCA(time.Now())
	sim, _ := nsmsim.New(nsmsim.Options{CA: ca})
	doc, err := nsm.Attest(sim, nsm.AttestRequest{PublicKey: block.Bytes})
	if err != nil {
		t.Fatal(err)
	}
	docPath := filepath.Join(dir, "doc.cbor")
	os.WriteFile(docPath, doc, 0o644)

	v := &AttestationVerifier{Roots: RootsWithAWS(ca.Root())}
	e := start(t, &Server{OpenRecipient: v.Open})
	envPath := filepath.Join(dir, "envelope.der")
	cmd := exec.Command(py, "-c", boto3RecipientScript, e.url, docPath, envPath)
	cmd.Env = clientEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("boto3: %v\n%s\nemulator log:\n%s", err, out, e.logs.String())
	}
	out, err := exec.Command(openssl, "cms", "-decrypt", "-inform", "DER", "-in", envPath, "-inkey", keyPath).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cms -decrypt: %v\n%s", err, out)
	}
	if !bytes.Equal(out, []byte("sealed for the enclave")) {
		t.Fatalf("openssl cms -decrypt gave %q", out)
	}
}

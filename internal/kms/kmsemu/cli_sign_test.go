package kmsemu

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAWSCLISignOpenSSL: the AWS CLI creates a signing key, signs and
// verifies; openssl verifies the CLI's signatures against the public key
// get-public-key exported, and the CLI verifies a signature over a digest
// openssl computed.
func TestAWSCLISignOpenSSL(t *testing.T) {
	t.Parallel()
	awsCLI := tool(t, "aws", "--version")
	openssl := tool(t, "openssl", "version")
	e := start(t, &Server{})
	dir := t.TempDir()
	env := clientEnv(t)
	run := func(wantOK bool, args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(awsCLI, append([]string{"--endpoint-url", e.url, "--region", "us-east-1", "--output", "json", "kms"}, args...)...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if (err == nil) != wantOK {
			t.Fatalf("aws kms %v: err %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	file := func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	opensslRun := func(wantOK bool, args ...string) string {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("openssl %v: err %v\n%s", args, err, out)
		}
		return string(out)
	}
	unb64 := func(s string) []byte {
		t.Helper()
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("%q is not base64: %v", s, err)
		}
		return b
	}

	out, _ := run(true, "create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY", "--description", "keyring signer")
	var ck struct {
		KeyMetadata struct {
			KeyId, Arn, KeySpec, KeyUsage string
			SigningAlgorithms             []string
		}
	}
	if err := json.Unmarshal([]byte(out), &ck); err != nil || ck.KeyMetadata.KeySpec != "ECC_NIST_P256" || ck.KeyMetadata.KeyUsage != "SIGN_VERIFY" ||
		strings.Join(ck.KeyMetadata.SigningAlgorithms, ",") != "ECDSA_SHA_256" {
		t.Fatalf("create-key output %s: %v", out, err)
	}
	arn := ck.KeyMetadata.Arn
	run(true, "create-alias", "--alias-name", "alias/keyring-signer", "--target-key-id", ck.KeyMetadata.KeyId)

	out, _ = run(true, "get-public-key", "--key-id", "alias/keyring-signer")
	var gp struct{ KeyId, PublicKey, KeySpec, KeyUsage string }
	if err := json.Unmarshal([]byte(out), &gp); err != nil || gp.KeyId != arn || gp.KeySpec != "ECC_NIST_P256" || gp.KeyUsage != "SIGN_VERIFY" {
		t.Fatalf("get-public-key output %s: %v", out, err)
	}
	pubDER := file("pub.der", unb64(gp.PublicKey))
	pubPEM := filepath.Join(dir, "pub.pem")
	opensslRun(true, "pkey", "-pubin", "-inform", "DER", "-in", pubDER, "-out", pubPEM)
	if txt := opensslRun(true, "pkey", "-pubin", "-in", pubPEM, "-noout", "-text"); !strings.Contains(txt, "prime256v1") {
		t.Fatalf("openssl reads the public key as:\n%s", txt)
	}

	msgPath := file("statement", []byte("enclave-signer keyring statement v1\nid payments\nversion 7\n"))
	out, _ = run(true, "sign", "--key-id", "alias/keyring-signer", "--message", "fileb://"+msgPath, "--message-type", "RAW", "--signing-algorithm", "ECDSA_SHA_256")
	var sg struct{ KeyId, Signature, SigningAlgorithm string }
	if err := json.Unmarshal([]byte(out), &sg); err != nil || sg.KeyId != arn || sg.SigningAlgorithm != "ECDSA_SHA_256" {
		t.Fatalf("sign output %s: %v", out, err)
	}
	sigPath := file("sig.der", unb64(sg.Signature))
	if got := opensslRun(true, "dgst", "-sha256", "-verify", pubPEM, "-signature", sigPath, msgPath); !strings.Contains(got, "Verified OK") {
		t.Fatalf("openssl dgst -verify: %s", got)
	}
	out, _ = run(true, "verify", "--key-id", arn, "--message", "fileb://"+msgPath, "--message-type", "RAW", "--signing-algorithm", "ECDSA_SHA_256", "--signature", "fileb://"+sigPath)
	var vf struct {
		KeyId          string
		SignatureValid bool
	}
	if err := json.Unmarshal([]byte(out), &vf); err != nil || !vf.SignatureValid || vf.KeyId != arn {
		t.Fatalf("verify output %s: %v", out, err)
	}

	// A digest from openssl, signed as DIGEST by KMS, verifies as the
	// message it hashes.
	digestPath := filepath.Join(dir, "digest")
	opensslRun(true, "dgst", "-sha256", "-binary", "-out", digestPath, msgPath)
	out, _ = run(true, "sign", "--key-id", ck.KeyMetadata.KeyId, "--message", "fileb://"+digestPath, "--message-type", "DIGEST", "--signing-algorithm", "ECDSA_SHA_256")
	if err := json.Unmarshal([]byte(out), &sg); err != nil {
		t.Fatal(err)
	}
	digestSig := file("digest-sig.der", unb64(sg.Signature))
	opensslRun(true, "dgst", "-sha256", "-verify", pubPEM, "-signature", digestSig, msgPath)
	run(true, "verify", "--key-id", arn, "--message", "fileb://"+digestPath, "--message-type", "DIGEST", "--signing-algorithm", "ECDSA_SHA_256", "--signature", "fileb://"+digestSig)

	// What does not verify fails in both.
	other := file("other", []byte("another statement"))
	if got := opensslRun(false, "dgst", "-sha256", "-verify", pubPEM, "-signature", sigPath, other); !strings.Contains(got, "Verification failure") {
		t.Errorf("openssl on the wrong message: %s", got)
	}
	_, stderr := run(false, "verify", "--key-id", arn, "--message", "fileb://"+other, "--signing-algorithm", "ECDSA_SHA_256", "--signature", "fileb://"+sigPath)
	if !strings.Contains(stderr, "KMSInvalidSignatureException") {
		t.Errorf("aws kms verify of the wrong message: stderr %q", stderr)
	}
	// A signature by another P-256 key (openssl's) does not verify under
	// the KMS key.
	ownKey := filepath.Join(dir, "own.pem") // a throwaway test key
	opensslRun(true, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ownKey)
	ownSig := filepath.Join(dir, "own-sig.der")
	opensslRun(true, "dgst", "-sha256", "-sign", ownKey, "-out", ownSig, msgPath)
	_, stderr = run(false, "verify", "--key-id", arn, "--message", "fileb://"+msgPath, "--signing-algorithm", "ECDSA_SHA_256", "--signature", "fileb://"+ownSig)
	if !strings.Contains(stderr, "KMSInvalidSignatureException") {
		t.Errorf("aws kms verify of another key's signature: stderr %q", stderr)
	}

	// Refusals the CLI reports by KMS's error names.
	_, stderr = run(false, "sign", "--key-id", arn, "--message", "fileb://"+msgPath, "--signing-algorithm", "ECDSA_SHA_384")
	if !strings.Contains(stderr, "InvalidKeyUsageException") || !strings.Contains(stderr, "Algorithm ECDSA_SHA_384 is incompatible with key spec ECC_NIST_P256.") {
		t.Errorf("sign with ECDSA_SHA_384: stderr %q", stderr)
	}
	_, stderr = run(false, "encrypt", "--key-id", arn, "--plaintext", "fileb://"+msgPath)
	if !strings.Contains(stderr, "InvalidKeyUsageException") || !strings.Contains(stderr, "key usage is SIGN_VERIFY which is not valid for Encrypt.") {
		t.Errorf("encrypt with a signing key: stderr %q", stderr)
	}
	out, _ = run(true, "create-key")
	if err := json.Unmarshal([]byte(out), &ck); err != nil {
		t.Fatal(err)
	}
	_, stderr = run(false, "sign", "--key-id", ck.KeyMetadata.KeyId, "--message", "fileb://"+msgPath, "--signing-algorithm", "ECDSA_SHA_256")
	if !strings.Contains(stderr, "InvalidKeyUsageException") || !strings.Contains(stderr, "key usage is ENCRYPT_DECRYPT which is not valid for Sign.") {
		t.Errorf("sign with a symmetric key: stderr %q", stderr)
	}
	_, stderr = run(false, "get-public-key", "--key-id", ck.KeyMetadata.KeyId)
	if !strings.Contains(stderr, "UnsupportedOperationException") {
		t.Errorf("get-public-key of a symmetric key: stderr %q", stderr)
	}
	_, stderr = run(false, "create-key", "--key-spec", "ECC_NIST_P256")
	if !strings.Contains(stderr, "ValidationException") || !strings.Contains(stderr, "KeyUsage ENCRYPT_DECRYPT is not compatible with KeySpec ECC_NIST_P256") {
		t.Errorf("create-key ECC_NIST_P256 without SIGN_VERIFY: stderr %q", stderr)
	}
}

// boto3SignScript signs with boto3, verifies the signature with boto3 and
// with the cryptography package against get_public_key's key, and reports
// the modelled exceptions boto3 raises for the refusals.
const boto3SignScript = `
import json, sys
import boto3
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.exceptions import InvalidSignature
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1")
key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
msg = b"statement from boto3"
sig = kms.sign(KeyId=key["Arn"], Message=msg, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")
valid = kms.verify(KeyId=key["KeyId"], Message=msg, Signature=sig["Signature"], SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"]
pub = kms.get_public_key(KeyId=key["KeyId"])
pk = serialization.load_der_public_key(pub["PublicKey"])
pk.verify(sig["Signature"], msg, ec.ECDSA(hashes.SHA256()))
try:
    pk.verify(sig["Signature"], b"other", ec.ECDSA(hashes.SHA256()))
    crypto_rejects = False
except InvalidSignature:
    crypto_rejects = True
errors = {}
try:
    kms.verify(KeyId=key["KeyId"], Message=b"other", Signature=sig["Signature"], SigningAlgorithm="ECDSA_SHA_256")
except kms.exceptions.KMSInvalidSignatureException as e:
    errors["verify_other"] = e.response["Error"]["Code"]
try:
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
except kms.exceptions.InvalidKeyUsageException as e:
    errors["encrypt"] = e.response["Error"]["Code"]
try:
    kms.sign(KeyId=key["KeyId"], Message=b"\0" * 31, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")
except kms.exceptions.ClientError as e:
    errors["short_digest"] = e.response["Error"]["Code"] + ": " + e.response["Error"]["Message"]
print(json.dumps({"arn": key["Arn"], "sign_key": sig["KeyId"], "valid": valid, "spec": pub["KeySpec"],
    "algorithms": pub["SigningAlgorithms"], "crypto_rejects": crypto_rejects, "errors": errors}))
`

func TestBoto3Sign(t *testing.T) {
	t.Parallel()
	py := tool(t, "python3", "-c", "import boto3, cryptography")
	e := start(t, &Server{})
	cmd := exec.Command(py, "-c", boto3SignScript, e.url)
	cmd.Env = clientEnv(t)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("boto3 script: %v\n%s", err, stderr)
	}
	var got struct {
		ARN           string `json:"arn"`
		SignKey       string `json:"sign_key"`
		Valid         bool   `json:"valid"`
		Spec          string
		Algorithms    []string
		CryptoRejects bool `json:"crypto_rejects"`
		Errors        map[string]string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("boto3 output %q: %v", out, err)
	}
	if got.SignKey != got.ARN || !got.Valid || got.Spec != "ECC_NIST_P256" || strings.Join(got.Algorithms, ",") != "ECDSA_SHA_256" || !got.CryptoRejects {
		t.Fatalf("boto3 round trip: %s", out)
	}
	if got.Errors["verify_other"] != CodeInvalidSignature || got.Errors["encrypt"] != CodeInvalidKeyUsage ||
		got.Errors["short_digest"] != "ValidationException: Digest is invalid length for algorithm ECDSA_SHA_256." {
		t.Fatalf("boto3 errors: %v", got.Errors)
	}
}

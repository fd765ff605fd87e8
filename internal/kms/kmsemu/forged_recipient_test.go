package kmsemu

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/fxamacker/cbor/v2"
)

// forgeDocument signs an attestation document whose payload edit shaped,
// under a throwaway root (returned) that a verifier may be told to trust:
// the document is correctly signed, only its content is odd.
func forgeDocument(t *testing.T, spki []byte, edit func(m map[string]any)) ([]byte, *x509.Certificate) {
	t.Helper()
	now := time.Now()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "forged root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "forged leaf"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{}
	for i := range 16 {
		pcrs[i] = make([]byte, 48)
	}
	m := map[string]any{
		"module_id": "i-0123456789abcdef0-enc0123456789abcdef", "digest": "SHA384",
		"timestamp": uint64(now.UnixMilli()), "pcrs": pcrs,
		"certificate": leafDER, "cabundle": [][]byte{rootDER},
		"public_key": spki, "user_data": nil, "nonce": nil,
	}
	if edit != nil {
		edit(m)
	}
	payload, err := cbor.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	protected := []byte{0xa1, 0x01, 0x38, 0x22}
	sigStructure, _ := cbor.Marshal([]any{"Signature1", protected, []byte{}, payload})
	digest := sha512.Sum384(sigStructure)
	r, s, err := ecdsa.Sign(rand.Reader, leafKey, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 96)
	r.FillBytes(sig[:48])
	s.FillBytes(sig[48:])
	doc, err := cbor.Marshal([]any{protected, map[int]any{}, payload, sig})
	if err != nil {
		t.Fatal(err)
	}
	return doc, root
}

// TestIfExistsPolicyAndForgedPCRs: a key policy whose PCR condition uses an
// …IfExists operator holds when the request lacks that key. A signed
// document that showed only PCR5 used to verify, so such a policy let it
// decrypt; the emulator must refuse the document instead, as it lacks the
// PCRs 0–15 every real document carries.
func TestIfExistsPolicyAndForgedPCRs(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pinned := make([]byte, 48) // the forged documents' PCR0: all zero

	full, root := forgeDocument(t, spki, nil)
	onlyPCR5, root5 := forgeDocument(t, spki, func(m map[string]any) {
		m["pcrs"] = map[int][]byte{5: make([]byte, 48)}
	})
	extraKey, rootX := forgeDocument(t, spki, func(m map[string]any) { m["pcr0_override"] = "anything" })

	v := &AttestationVerifier{Roots: RootsWithAWS(root, root5, rootX)}
	e := start(t, &Server{
		Credentials: []Credential{
			{AccessKeyID: "enclave", SecretAccessKey: "enclave-secret", Principal: enclaveRole},
			{AccessKeyID: "admin", SecretAccessKey: "admin-secret", Principal: kmsAdmin},
		},
		OpenRecipient: v.Open,
	})
	policy := `{"Version":"2012-10-17","Statement":[
		{"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"` + kmsAdmin + `"},"Action":"kms:*","Resource":"*"},
		{"Sid":"EnclaveDecrypt","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:role/NitroEnclaveInstanceRole"},"Action":"kms:Decrypt","Resource":"*",
		 "Condition":{"StringEqualsIgnoreCaseIfExists":{"kms:RecipientAttestation:ImageSha384":"` + hex.EncodeToString(pinned) + `"}}}]}`
	admin := clientFor(e.url, aws.Credentials{AccessKeyID: "admin", SecretAccessKey: "admin-secret"})
	k := must[*awskms.CreateKeyOutput](t)(admin.CreateKey(t.Context(), &awskms.CreateKeyInput{Policy: aws.String(policy)}))
	blob := must[*awskms.EncryptOutput](t)(admin.Encrypt(t.Context(), &awskms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("secret")})).CiphertextBlob

	enclave := clientFor(e.url, aws.Credentials{AccessKeyID: "enclave", SecretAccessKey: "enclave-secret"})
	decrypt := func(doc []byte) (*awskms.DecryptOutput, error) {
		return enclave.Decrypt(t.Context(), &awskms.DecryptInput{CiphertextBlob: blob, Recipient: &types.RecipientInfo{
			AttestationDocument: doc, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256,
		}})
	}
	// The control: a complete document with the pinned PCR0 decrypts.
	if out, err := decrypt(full); err != nil || len(out.CiphertextForRecipient) == 0 {
		t.Fatalf("complete document: %v", err)
	}
	for name, doc := range map[string][]byte{"only PCR5": onlyPCR5, "an unknown payload key": extraKey} {
		out, err := decrypt(doc)
		if err == nil {
			t.Fatalf("a signed document with %s decrypted (%d-byte envelope)", name, len(out.CiphertextForRecipient))
		}
		wantCode(t, err, CodeValidation)
	}
}

package kmsemu

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// wantError checks an SDK error's code and that its message contains msg.
func wantError(t *testing.T, err error, code, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v, want %s: %s", err, code, msg)
	}
	if ae.ErrorCode() != code || !strings.Contains(ae.ErrorMessage(), msg) {
		t.Fatalf("error:\n got  %s: %s\n want %s: …%s…", ae.ErrorCode(), ae.ErrorMessage(), code, msg)
	}
}

// publicKey parses GetPublicKey's answer and checks its fields.
func publicKey(t *testing.T, out *kms.GetPublicKeyOutput, arn string, spec types.KeySpec, alg types.SigningAlgorithmSpec, curve elliptic.Curve) *ecdsa.PublicKey {
	t.Helper()
	//lint:ignore SA1019 KMS still sends the deprecated CustomerMasterKeySpec; the emulator must too.
	cmkSpec := out.CustomerMasterKeySpec
	if aws.ToString(out.KeyId) != arn || out.KeySpec != spec || cmkSpec != types.CustomerMasterKeySpec(spec) ||
		out.KeyUsage != types.KeyUsageTypeSignVerify || !slices.Equal(out.SigningAlgorithms, []types.SigningAlgorithmSpec{alg}) ||
		out.EncryptionAlgorithms != nil || out.KeyAgreementAlgorithms != nil {
		t.Fatalf("GetPublicKey: KeyId %s KeySpec %s CMKSpec %s KeyUsage %s SigningAlgorithms %v EncryptionAlgorithms %v",
			aws.ToString(out.KeyId), out.KeySpec, cmkSpec, out.KeyUsage, out.SigningAlgorithms, out.EncryptionAlgorithms)
	}
	pk, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		t.Fatalf("GetPublicKey's PublicKey is not a DER SubjectPublicKeyInfo: %v", err)
	}
	pub, ok := pk.(*ecdsa.PublicKey)
	if !ok || pub.Curve != curve {
		t.Fatalf("GetPublicKey's key is %T, want an ECDSA key on %s", pk, curve.Params().Name)
	}
	return pub
}

func TestSDKSignVerify(t *testing.T) {
	e := start(t, &Server{})
	c := e.client("test", "test")
	ctx := t.Context()
	for _, tc := range []struct {
		spec  types.KeySpec
		alg   types.SigningAlgorithmSpec
		hash  crypto.Hash
		curve elliptic.Curve
		wrong types.SigningAlgorithmSpec
	}{
		{types.KeySpecEccNistP256, types.SigningAlgorithmSpecEcdsaSha256, crypto.SHA256, elliptic.P256(), types.SigningAlgorithmSpecEcdsaSha384},
		{types.KeySpecEccNistP384, types.SigningAlgorithmSpecEcdsaSha384, crypto.SHA384, elliptic.P384(), types.SigningAlgorithmSpecEcdsaSha256},
		{types.KeySpecEccNistP521, types.SigningAlgorithmSpecEcdsaSha512, crypto.SHA512, elliptic.P521(), types.SigningAlgorithmSpecEcdsaSha384},
	} {
		t.Run(string(tc.spec), func(t *testing.T) {
			md := must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: tc.spec, KeyUsage: types.KeyUsageTypeSignVerify, Description: aws.String("signing")})).KeyMetadata
			id := aws.ToString(md.KeyId)
			arn := "arn:aws:kms:us-east-1:000000000000:key/" + id
			alias := "alias/sign-" + strings.ToLower(string(tc.spec))
			must[*kms.CreateAliasOutput](t)(c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(id)}))
			for _, m := range []*types.KeyMetadata{md, must[*kms.DescribeKeyOutput](t)(c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(alias)})).KeyMetadata} {
				//lint:ignore SA1019 KMS still sends the deprecated CustomerMasterKeySpec; the emulator must too.
				cmkSpec := m.CustomerMasterKeySpec
				if aws.ToString(m.Arn) != arn || m.KeySpec != tc.spec || cmkSpec != types.CustomerMasterKeySpec(tc.spec) ||
					m.KeyUsage != types.KeyUsageTypeSignVerify || !slices.Equal(m.SigningAlgorithms, []types.SigningAlgorithmSpec{tc.alg}) ||
					m.EncryptionAlgorithms != nil || m.KeyState != types.KeyStateEnabled || !m.Enabled {
					t.Fatalf("key metadata: %+v", m)
				}
			}
			pub := publicKey(t, must[*kms.GetPublicKeyOutput](t)(c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(alias)})), arn, tc.spec, tc.alg, tc.curve)

			msg := []byte("keyring statement bytes")
			h := tc.hash.New()
			h.Write(msg)
			digest := h.Sum(nil)
			// By id, ARN and alias; MessageType RAW explicit and omitted
			// (KMS's default), and DIGEST over the same hash.
			var sigs [][]byte
			for _, in := range []*kms.SignInput{
				{KeyId: aws.String(id), Message: msg, SigningAlgorithm: tc.alg},
				{KeyId: aws.String(arn), Message: msg, MessageType: types.MessageTypeRaw, SigningAlgorithm: tc.alg},
				{KeyId: aws.String(alias), Message: digest, MessageType: types.MessageTypeDigest, SigningAlgorithm: tc.alg},
			} {
				out := must[*kms.SignOutput](t)(c.Sign(ctx, in))
				if aws.ToString(out.KeyId) != arn || out.SigningAlgorithm != tc.alg {
					t.Fatalf("Sign(%s): KeyId %s, SigningAlgorithm %s", aws.ToString(in.KeyId), aws.ToString(out.KeyId), out.SigningAlgorithm)
				}
				if !ecdsa.VerifyASN1(pub, digest, out.Signature) {
					t.Fatalf("Sign(%s, %s): the signature does not verify with crypto/ecdsa against GetPublicKey's key", aws.ToString(in.KeyId), in.MessageType)
				}
				sigs = append(sigs, out.Signature)
			}
			if bytes.Equal(sigs[0], sigs[1]) {
				t.Error("two signatures of one message are equal: ECDSA signatures are randomized")
			}
			for _, sig := range sigs {
				for _, in := range []*kms.VerifyInput{
					{KeyId: aws.String(alias), Message: msg, Signature: sig, SigningAlgorithm: tc.alg},
					{KeyId: aws.String(arn), Message: digest, MessageType: types.MessageTypeDigest, Signature: sig, SigningAlgorithm: tc.alg},
				} {
					v := must[*kms.VerifyOutput](t)(c.Verify(ctx, in))
					if !v.SignatureValid || aws.ToString(v.KeyId) != arn || v.SigningAlgorithm != tc.alg {
						t.Fatalf("Verify: %+v", v)
					}
				}
			}

			// Signatures that do not verify: KMSInvalidSignatureException.
			var bad *types.KMSInvalidSignatureException
			flipped := bytes.Clone(sigs[0])
			flipped[len(flipped)-1] ^= 1
			for name, in := range map[string]*kms.VerifyInput{
				"other message": {KeyId: aws.String(id), Message: []byte("another statement"), Signature: sigs[0], SigningAlgorithm: tc.alg},
				"flipped bit":   {KeyId: aws.String(id), Message: msg, Signature: flipped, SigningAlgorithm: tc.alg},
				"not DER":       {KeyId: aws.String(id), Message: msg, Signature: []byte("not a signature"), SigningAlgorithm: tc.alg},
				"digest as raw": {KeyId: aws.String(id), Message: digest, MessageType: types.MessageTypeRaw, Signature: sigs[0], SigningAlgorithm: tc.alg},
			} {
				_, err := c.Verify(ctx, in)
				if !errors.As(err, &bad) {
					t.Errorf("Verify, %s: got %v, want *types.KMSInvalidSignatureException", name, err)
				}
			}

			// The algorithm must be the curve's.
			_, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(id), Message: msg, SigningAlgorithm: tc.wrong})
			wantError(t, err, CodeInvalidKeyUsage, "Algorithm "+string(tc.wrong)+" is incompatible with key spec "+string(tc.spec)+".")
			var iku *types.InvalidKeyUsageException
			if !errors.As(err, &iku) {
				t.Errorf("Sign with %s: %T, want *types.InvalidKeyUsageException", tc.wrong, err)
			}
			_, err = c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(id), Message: msg, Signature: sigs[0], SigningAlgorithm: types.SigningAlgorithmSpecRsassaPssSha256})
			wantError(t, err, CodeInvalidKeyUsage, "Algorithm RSASSA_PSS_SHA_256 is incompatible with key spec "+string(tc.spec)+".")
			// A digest must have the hash's length.
			for _, n := range []int{tc.hash.Size() - 1, tc.hash.Size() + 1} {
				_, err = c.Sign(ctx, &kms.SignInput{KeyId: aws.String(id), Message: make([]byte, n), MessageType: types.MessageTypeDigest, SigningAlgorithm: tc.alg})
				wantError(t, err, CodeValidation, "Digest is invalid length for algorithm "+string(tc.alg)+".")
			}
		})
	}
}

func TestSDKSignRequestLimits(t *testing.T) {
	e := start(t, &Server{})
	c := e.client("test", "test")
	ctx := t.Context()
	id := aws.ToString(must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})).KeyMetadata.KeyId)
	pub := publicKey(t, must[*kms.GetPublicKeyOutput](t)(c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(id)})),
		"arn:aws:kms:us-east-1:000000000000:key/"+id, types.KeySpecEccNistP256, types.SigningAlgorithmSpecEcdsaSha256, elliptic.P256())

	// RAW messages: 1 to 4096 bytes.
	for _, n := range []int{1, 4096} {
		msg := bytes.Repeat([]byte{'m'}, n)
		out := must[*kms.SignOutput](t)(c.Sign(ctx, &kms.SignInput{KeyId: aws.String(id), Message: msg, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}))
		d := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(pub, d[:], out.Signature) {
			t.Fatalf("Sign of %d bytes: the signature does not verify", n)
		}
	}
	for _, tc := range []struct {
		name string
		in   *kms.SignInput
		code string
		msg  string
	}{
		{"4097 bytes", &kms.SignInput{KeyId: aws.String(id), Message: make([]byte, 4097), SigningAlgorithm: "ECDSA_SHA_256"}, CodeValidation, "Value at 'message' failed to satisfy constraint: Member must have length less than or equal to 4096"},
		{"empty message", &kms.SignInput{KeyId: aws.String(id), Message: []byte{}, SigningAlgorithm: "ECDSA_SHA_256"}, CodeValidation, "Member must have length greater than or equal to 1"},
		{"unknown algorithm", &kms.SignInput{KeyId: aws.String(id), Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_1"}, CodeValidation, "Value 'ECDSA_SHA_1' at 'signingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [RSASSA_PSS_SHA_256"},
		{"unknown message type", &kms.SignInput{KeyId: aws.String(id), Message: []byte("m"), MessageType: "HASHED", SigningAlgorithm: "ECDSA_SHA_256"}, CodeValidation, "Value 'HASHED' at 'messageType' failed to satisfy constraint: Member must satisfy enum value set: [RAW, DIGEST, EXTERNAL_MU]"},
		{"EXTERNAL_MU", &kms.SignInput{KeyId: aws.String(id), Message: make([]byte, 64), MessageType: types.MessageTypeExternalMu, SigningAlgorithm: "ECDSA_SHA_256"}, CodeValidation, "Message type EXTERNAL_MU is incompatible with key spec ECC_NIST_P256."},
		{"grant tokens", &kms.SignInput{KeyId: aws.String(id), Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256", GrantTokens: []string{"g"}}, CodeValidation, "does not model grants"},
		{"dry run", &kms.SignInput{KeyId: aws.String(id), Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256", DryRun: aws.Bool(true)}, CodeValidation, "does not model DryRun"},
		{"missing key", &kms.SignInput{KeyId: aws.String("alias/none"), Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"}, CodeNotFound, "alias/none is not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Sign(ctx, tc.in)
			wantError(t, err, tc.code, tc.msg)
		})
	}
	_, err := c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(id), Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256", Signature: make([]byte, 6145)})
	wantError(t, err, CodeValidation, "Value at 'signature' failed to satisfy constraint: Member must have length less than or equal to 6144")
}

// TestSignJSONShapes checks the bodies on the wire: blobs in base64, the
// key as its ARN, exactly the members KMS sends, and the refusals of
// requests the SDK would not send.
func TestSignJSONShapes(t *testing.T) {
	e := start(t, &Server{})
	creds := aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}
	now := time.Now()
	ck := post(t, e.url, "CreateKey", `{"KeySpec":"ECC_NIST_P256","KeyUsage":"SIGN_VERIFY"}`, creds, now, nil)
	md, _ := ck.body["KeyMetadata"].(map[string]any)
	if ck.status != 200 || md["KeySpec"] != "ECC_NIST_P256" || md["CustomerMasterKeySpec"] != "ECC_NIST_P256" || md["KeyUsage"] != "SIGN_VERIFY" ||
		fmt.Sprint(md["SigningAlgorithms"]) != "[ECDSA_SHA_256]" {
		t.Fatalf("CreateKey: %d %v", ck.status, ck.body)
	}
	if _, ok := md["EncryptionAlgorithms"]; ok {
		t.Errorf("a signing key's metadata lists EncryptionAlgorithms: %v", md)
	}
	arn := md["Arn"].(string)
	id := md["KeyId"].(string)
	keys := func(m map[string]any) string {
		var k []string
		for name := range m {
			k = append(k, name)
		}
		slices.Sort(k)
		return strings.Join(k, ",")
	}

	msg := []byte("statement")
	sign := post(t, e.url, "Sign", `{"KeyId":"`+id+`","Message":"`+base64.StdEncoding.EncodeToString(msg)+`","SigningAlgorithm":"ECDSA_SHA_256"}`, creds, now, nil)
	if sign.status != 200 || keys(sign.body) != "KeyId,Signature,SigningAlgorithm" || sign.body["KeyId"] != arn || sign.body["SigningAlgorithm"] != "ECDSA_SHA_256" {
		t.Fatalf("Sign: %d %v", sign.status, sign.body)
	}
	sig, err := base64.StdEncoding.DecodeString(sign.body["Signature"].(string))
	if err != nil {
		t.Fatalf("Sign's Signature is not base64: %v", err)
	}
	gp := post(t, e.url, "GetPublicKey", `{"KeyId":"`+id+`"}`, creds, now, nil)
	if gp.status != 200 || keys(gp.body) != "CustomerMasterKeySpec,KeyId,KeySpec,KeyUsage,PublicKey,SigningAlgorithms" || gp.body["KeyId"] != arn {
		t.Fatalf("GetPublicKey: %d %v", gp.status, gp.body)
	}
	spki, err := base64.StdEncoding.DecodeString(gp.body["PublicKey"].(string))
	if err != nil {
		t.Fatalf("GetPublicKey's PublicKey is not base64: %v", err)
	}
	pk, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(pk.(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("the signature on the wire does not verify against the public key on the wire")
	}
	v := post(t, e.url, "Verify", `{"KeyId":"`+id+`","Message":"`+base64.StdEncoding.EncodeToString(msg)+`","Signature":"`+base64.StdEncoding.EncodeToString(sig)+`","SigningAlgorithm":"ECDSA_SHA_256"}`, creds, now, nil)
	if v.status != 200 || keys(v.body) != "KeyId,SignatureValid,SigningAlgorithm" || v.body["SignatureValid"] != true || v.body["KeyId"] != arn {
		t.Fatalf("Verify: %d %v", v.status, v.body)
	}
	post(t, e.url, "Verify", `{"KeyId":"`+id+`","Message":"bWVzc2FnZQ==","Signature":"`+base64.StdEncoding.EncodeToString(sig)+`","SigningAlgorithm":"ECDSA_SHA_256"}`, creds, now, nil).
		wantError(t, 400, CodeInvalidSignature, "does not verify")
	post(t, e.url, "Sign", `{"KeyId":"`+id+`","Message":"bQ=="}`, creds, now, nil).wantError(t, 400, CodeValidation, "Value null at 'signingAlgorithm'")
	post(t, e.url, "Sign", `{"KeyId":"`+id+`","SigningAlgorithm":"ECDSA_SHA_256"}`, creds, now, nil).wantError(t, 400, CodeValidation, "Value null at 'message'")
	post(t, e.url, "Sign", `{"Message":"bQ==","SigningAlgorithm":"ECDSA_SHA_256"}`, creds, now, nil).wantError(t, 400, CodeValidation, "Value null at 'keyId'")
	post(t, e.url, "Sign", `{"KeyId":"`+id+`","Message":"bQ==","SigningAlgorithm":"ECDSA_SHA_256","Signature":"bQ=="}`, creds, now, nil).
		wantError(t, 400, CodeValidation, `does not model the Sign member "Signature"`)
	post(t, e.url, "Verify", `{"KeyId":"`+id+`","Message":"bQ==","SigningAlgorithm":"ECDSA_SHA_256"}`, creds, now, nil).wantError(t, 400, CodeValidation, "Value null at 'signature'")
	post(t, e.url, "GetPublicKey", `{}`, creds, now, nil).wantError(t, 400, CodeValidation, "Value null at 'keyId'")
}

// TestSDKKeyUsageRefusals: each operation refuses a key of the other
// usage with InvalidKeyUsageException, as KMS phrases it.
func TestSDKKeyUsageRefusals(t *testing.T) {
	e := start(t, &Server{})
	c := e.client("test", "test")
	ctx := t.Context()
	sym := aws.ToString(must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.Arn)
	signKey := aws.ToString(must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})).KeyMetadata.Arn)
	signKeyID := signKey[strings.LastIndex(signKey, "/")+1:]
	blob := must[*kms.EncryptOutput](t)(c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(sym), Plaintext: []byte("x")})).CiphertextBlob
	// A blob that names the signing key, as only a forger could make one.
	forged, err := sealBlob(bytes.NewReader(make([]byte, 64)), &keyRecord{ID: signKeyID, Material: make(material, 32)}, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}

	notFor := func(arn, usage, op string) string {
		return arn + " key usage is " + usage + " which is not valid for " + op + "."
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(signKey), Plaintext: []byte("x")})
	wantError(t, err, CodeInvalidKeyUsage, notFor(signKey, "SIGN_VERIFY", "Encrypt"))
	_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(signKey), KeySpec: types.DataKeySpecAes256})
	wantError(t, err, CodeInvalidKeyUsage, notFor(signKey, "SIGN_VERIFY", "GenerateDataKey"))
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: forged})
	wantError(t, err, CodeInvalidKeyUsage, notFor(signKey, "SIGN_VERIFY", "Decrypt"))
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, KeyId: aws.String(signKey)})
	wantCode(t, err, CodeIncorrectKey)

	_, err = c.Sign(ctx, &kms.SignInput{KeyId: aws.String(sym), Message: []byte("m"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantError(t, err, CodeInvalidKeyUsage, notFor(sym, "ENCRYPT_DECRYPT", "Sign"))
	var iku *types.InvalidKeyUsageException
	if !errors.As(err, &iku) {
		t.Errorf("Sign with a symmetric key: %T, want *types.InvalidKeyUsageException", err)
	}
	_, err = c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(sym), Message: []byte("m"), Signature: []byte("s"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantError(t, err, CodeInvalidKeyUsage, notFor(sym, "ENCRYPT_DECRYPT", "Verify"))
	_, err = c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(sym)})
	var uo *types.UnsupportedOperationException
	if !errors.As(err, &uo) {
		t.Fatalf("GetPublicKey of a symmetric key: got %v, want *types.UnsupportedOperationException", err)
	}
	if !strings.Contains(e.logs.String(), "key usage does not allow the operation") {
		t.Errorf("the refusals are not logged:\n%s", e.logs.String())
	}
}

func TestSDKCreateKeySpecs(t *testing.T) {
	e := start(t, &Server{})
	c := e.client("test", "test")
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		in   kms.CreateKeyInput
		spec types.KeySpec // when it succeeds
		msg  string        // ValidationException message part, when it fails
	}{
		{"default", kms.CreateKeyInput{}, types.KeySpecSymmetricDefault, ""},
		{"symmetric explicit", kms.CreateKeyInput{KeySpec: "SYMMETRIC_DEFAULT", KeyUsage: "ENCRYPT_DECRYPT"}, types.KeySpecSymmetricDefault, ""},
		//lint:ignore SA1019 clients still send the deprecated CustomerMasterKeySpec; the emulator must take it.
		{"deprecated CustomerMasterKeySpec", kms.CreateKeyInput{CustomerMasterKeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"}, types.KeySpecEccNistP256, ""},
		{"P-256 without usage", kms.CreateKeyInput{KeySpec: "ECC_NIST_P256"}, "", "KeyUsage ENCRYPT_DECRYPT is not compatible with KeySpec ECC_NIST_P256"},
		{"P-256 to encrypt", kms.CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "ENCRYPT_DECRYPT"}, "", "KeyUsage ENCRYPT_DECRYPT is not compatible with KeySpec ECC_NIST_P256"},
		{"symmetric to sign", kms.CreateKeyInput{KeyUsage: "SIGN_VERIFY"}, "", "KeyUsage SIGN_VERIFY is not compatible with KeySpec SYMMETRIC_DEFAULT"},
		{"symmetric for MACs", kms.CreateKeyInput{KeySpec: "SYMMETRIC_DEFAULT", KeyUsage: "GENERATE_VERIFY_MAC"}, "", "KeyUsage GENERATE_VERIFY_MAC is not compatible with KeySpec SYMMETRIC_DEFAULT"},
		//lint:ignore SA1019 clients still send the deprecated CustomerMasterKeySpec; the emulator must take it.
		{"both spec members", kms.CreateKeyInput{KeySpec: "ECC_NIST_P256", CustomerMasterKeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"}, "", "You cannot specify KeySpec and CustomerMasterKeySpec in the same request"},
		{"unknown spec", kms.CreateKeyInput{KeySpec: "ECC_NIST_P999", KeyUsage: "SIGN_VERIFY"}, "", "Value 'ECC_NIST_P999' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [RSA_2048"},
		{"unknown usage", kms.CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN"}, "", "Value 'SIGN' at 'keyUsage' failed to satisfy constraint"},
		{"RSA", kms.CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY"}, "", "kmsemu does not model KeySpec RSA_2048"},
		{"secp256k1", kms.CreateKeyInput{KeySpec: "ECC_SECG_P256K1", KeyUsage: "SIGN_VERIFY"}, "", "kmsemu does not model KeySpec ECC_SECG_P256K1"},
		{"HMAC", kms.CreateKeyInput{KeySpec: "HMAC_256", KeyUsage: "GENERATE_VERIFY_MAC"}, "", "kmsemu does not model KeySpec HMAC_256"},
		{"key agreement", kms.CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "KEY_AGREEMENT"}, "", "kmsemu does not model KeyUsage KEY_AGREEMENT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(must[*kms.ListKeysOutput](t)(c.ListKeys(ctx, &kms.ListKeysInput{})).Keys)
			out, err := c.CreateKey(ctx, &tc.in)
			if tc.msg != "" {
				wantError(t, err, CodeValidation, tc.msg)
				if after := len(must[*kms.ListKeysOutput](t)(c.ListKeys(ctx, &kms.ListKeysInput{})).Keys); after != before {
					t.Errorf("a refused CreateKey made a key: %d keys, want %d", after, before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.KeyMetadata.KeySpec != tc.spec {
				t.Errorf("KeySpec %s, want %s", out.KeyMetadata.KeySpec, tc.spec)
			}
		})
	}
}

// signPolicy lets admin do everything; dev may verify and read the public
// key, and sign only RAW messages with ECDSA_SHA_256 with a key whose
// KeyUsage is SIGN_VERIFY.
const signPolicy = `{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:role/admin"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "DevVerify", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:role/dev"}, "Action": ["kms:Verify", "kms:GetPublicKey"], "Resource": "*"},
    {"Sid": "DevSignRaw", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:role/dev"}, "Action": "kms:Sign", "Resource": "*",
     "Condition": {"StringEquals": {"kms:MessageType": "RAW", "kms:SigningAlgorithm": "ECDSA_SHA_256", "kms:KeyUsage": "SIGN_VERIFY", "kms:KeySpec": "ECC_NIST_P256"}}}
  ]
}`

func TestSDKSignKeyPolicy(t *testing.T) {
	e := start(t, &Server{Credentials: []Credential{
		{AccessKeyID: "AKIADEV", SecretAccessKey: "devsecret", Principal: devPrincipal},
		{AccessKeyID: "AKIAADMIN", SecretAccessKey: "adminsecret", Principal: adminPrincipal},
		{AccessKeyID: "AKIAOTHER", SecretAccessKey: "o", Principal: otherPrincipal},
	}})
	dev, admin, other := e.client("AKIADEV", "devsecret"), e.client("AKIAADMIN", "adminsecret"), e.client("AKIAOTHER", "o")
	ctx := t.Context()
	arn := aws.ToString(must[*kms.CreateKeyOutput](t)(admin.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify, Policy: aws.String(signPolicy),
	})).KeyMetadata.Arn)
	msg := []byte("statement")
	d := sha256.Sum256(msg)

	sig := must[*kms.SignOutput](t)(dev.Sign(ctx, &kms.SignInput{KeyId: aws.String(arn), Message: msg, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})).Signature
	must[*kms.VerifyOutput](t)(dev.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(arn), Message: msg, Signature: sig, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}))
	must[*kms.GetPublicKeyOutput](t)(dev.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(arn)}))
	// The condition on kms:MessageType: a DIGEST is denied to dev.
	_, err := dev.Sign(ctx, &kms.SignInput{KeyId: aws.String(arn), Message: d[:], MessageType: types.MessageTypeDigest, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantAccessDenied(t, err, "User: "+devPrincipal+" is not authorized to perform: kms:Sign on resource: "+arn+" because no resource-based policy allows the kms:Sign action")
	must[*kms.SignOutput](t)(admin.Sign(ctx, &kms.SignInput{KeyId: aws.String(arn), Message: d[:], MessageType: types.MessageTypeDigest, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}))

	// Another account's principal reaches the key by ARN and is denied
	// every operation.
	_, err = other.Sign(ctx, &kms.SignInput{KeyId: aws.String(arn), Message: msg, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantAccessDenied(t, err, "User: "+otherPrincipal+" is not authorized to perform: kms:Sign on resource: "+arn+" because no resource-based policy allows the kms:Sign action")
	_, err = other.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(arn), Message: msg, Signature: sig, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantAccessDenied(t, err, "User: "+otherPrincipal+" is not authorized to perform: kms:Verify on resource: "+arn+" because no resource-based policy allows the kms:Verify action")
	_, err = other.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(arn)})
	wantAccessDenied(t, err, "User: "+otherPrincipal+" is not authorized to perform: kms:GetPublicKey on resource: "+arn+" because no resource-based policy allows the kms:GetPublicKey action")

	// The policy is checked before the key's usage: a caller without
	// permission learns nothing about the key from the refusal.
	sym := aws.ToString(must[*kms.CreateKeyOutput](t)(admin.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.Arn)
	_, err = other.Sign(ctx, &kms.SignInput{KeyId: aws.String(sym), Message: msg, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantAccessDenied(t, err, "User: "+otherPrincipal+" is not authorized to perform: kms:Sign on resource: "+sym+" because no resource-based policy allows the kms:Sign action")
	_, err = other.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: msg})
	wantAccessDenied(t, err, "User: "+otherPrincipal+" is not authorized to perform: kms:Encrypt on resource: "+arn+" because no resource-based policy allows the kms:Encrypt action")
	_, err = other.Sign(ctx, &kms.SignInput{KeyId: aws.String(arn), Message: msg, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha384})
	wantCode(t, err, CodeAccessDenied)

	// A deny on kms:Sign wins over the allow.
	deny := strings.Replace(signPolicy, `  ]
}`, `  ,{"Sid": "NoSigning", "Effect": "Deny", "Principal": "*", "Action": "kms:Sign", "Resource": "*"}]
}`, 1)
	must[*kms.PutKeyPolicyOutput](t)(admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(arn), Policy: aws.String(deny)}))
	_, err = admin.Sign(ctx, &kms.SignInput{KeyId: aws.String(arn), Message: msg, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantAccessDenied(t, err, "User: "+adminPrincipal+" is not authorized to perform: kms:Sign on resource: "+arn+" with an explicit deny in a resource-based policy")
	must[*kms.VerifyOutput](t)(admin.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(arn), Message: msg, Signature: sig, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}))
}

func TestSigningKeySurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	e1 := start(t, &Server{StatePath: path})
	c1 := e1.client("test", "test")
	ctx := t.Context()
	id := aws.ToString(must[*kms.CreateKeyOutput](t)(c1.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})).KeyMetadata.KeyId)
	pub1 := must[*kms.GetPublicKeyOutput](t)(c1.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(id)})).PublicKey
	msg := []byte("signed before the restart")
	sig := must[*kms.SignOutput](t)(c1.Sign(ctx, &kms.SignInput{KeyId: aws.String(id), Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})).Signature

	e2 := start(t, &Server{StatePath: path})
	c2 := e2.client("test", "test")
	out := must[*kms.GetPublicKeyOutput](t)(c2.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(id)}))
	if !bytes.Equal(out.PublicKey, pub1) {
		t.Fatal("the public key changed across the restart")
	}
	if md := must[*kms.DescribeKeyOutput](t)(c2.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})).KeyMetadata; md.KeyUsage != types.KeyUsageTypeSignVerify || md.KeySpec != types.KeySpecEccNistP256 {
		t.Fatalf("after the restart: KeySpec %s KeyUsage %s", md.KeySpec, md.KeyUsage)
	}
	must[*kms.VerifyOutput](t)(c2.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(id), Message: msg, Signature: sig, SigningAlgorithm: "ECDSA_SHA_256"}))
	sig2 := must[*kms.SignOutput](t)(c2.Sign(ctx, &kms.SignInput{KeyId: aws.String(id), Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})).Signature
	pk, _ := x509.ParsePKIXPublicKey(pub1)
	d := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(pk.(*ecdsa.PublicKey), d[:], sig2) {
		t.Fatal("a signature made after the restart does not verify with the key from before it")
	}
}

func TestLoadStateRejectsSigningKeys(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der256, _ := x509.MarshalPKCS8PrivateKey(p256)
	der384, _ := x509.MarshalPKCS8PrivateKey(p384)
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		name            string
		spec, usage     string
		material        []byte
		want            string // "" for valid
		mustNotContains string
	}{
		{"valid P-256", "ECC_NIST_P256", "SIGN_VERIFY", der256, "", ""},
		{"valid P-384", "ECC_NIST_P384", "SIGN_VERIFY", der384, "", ""},
		{"curve differs", "ECC_NIST_P256", "SIGN_VERIFY", der384, "not an ECDSA private key on the curve of ECC_NIST_P256", ""},
		{"not PKCS#8", "ECC_NIST_P256", "SIGN_VERIFY", make([]byte, 32), "material is not a PKCS#8 private key", ""},
		{"usage", "ECC_NIST_P256", "ENCRYPT_DECRYPT", der256, `key usage "ENCRYPT_DECRYPT" does not go with key spec ECC_NIST_P256`, ""},
		{"symmetric to sign", "SYMMETRIC_DEFAULT", "SIGN_VERIFY", make([]byte, 32), `key usage "SIGN_VERIFY" does not go with key spec SYMMETRIC_DEFAULT`, ""},
		{"unknown spec", "RSA_2048", "SIGN_VERIFY", der256, `key spec "RSA_2048" is not one kmsemu models`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := map[string]any{"version": 1, "keys": []any{map[string]any{
				"id": "0b7c1d0e-2f3a-4b5c-8d6e-7f8091a2b3c4", "account": "000000000000", "region": "us-east-1",
				"creation_date": "2026-01-01T00:00:00Z", "policy": DefaultKeyPolicy("000000000000"),
				"key_spec": tc.spec, "key_usage": tc.usage, "material": b64(tc.material),
			}}, "aliases": []any{}}
			b, _ := json.Marshal(st)
			path := filepath.Join(t.TempDir(), "s.json")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			err := (&Server{StatePath: path}).Init()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Init: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Init error:\n got  %v\n want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), b64(tc.material)[:16]) {
				t.Errorf("error leaks material: %v", err)
			}
		})
	}
}

// TestLogsHoldNoSigningKey runs the signing operations, refusals included,
// and checks that no form of the private key appears in the logs.
func TestLogsHoldNoSigningKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	e := start(t, &Server{StatePath: path})
	c := e.client("test", "test")
	ctx := t.Context()
	id := aws.ToString(must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})).KeyMetadata.KeyId)
	sig := must[*kms.SignOutput](t)(c.Sign(ctx, &kms.SignInput{KeyId: aws.String(id), Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"})).Signature
	must[*kms.VerifyOutput](t)(c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(id), Message: []byte("m"), Signature: sig, SigningAlgorithm: "ECDSA_SHA_256"}))
	_, err := c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(id), Message: []byte("n"), Signature: sig, SigningAlgorithm: "ECDSA_SHA_256"})
	wantCode(t, err, CodeInvalidSignature)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantCode(t, err, CodeInvalidKeyUsage)
	must[*kms.GetPublicKeyOutput](t)(c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(id)}))

	var st state
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &st); err != nil || len(st.Keys) != 1 {
		t.Fatalf("state: %v", err)
	}
	if err := st.Keys[0].loadMaterial(); err != nil {
		t.Fatal(err)
	}
	scalar, err := st.Keys[0].private.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	logs := e.logs.String()
	for name, secret := range map[string][]byte{"PKCS#8 material": st.Keys[0].Material, "private scalar": scalar} {
		for _, enc := range []string{string(secret), base64.StdEncoding.EncodeToString(secret), base64.RawStdEncoding.EncodeToString(secret), hexString(secret)} {
			if strings.Contains(logs, enc) {
				t.Errorf("%s appears in the logs", name)
			}
		}
	}
	if strings.Count(logs, "\n") < 6 {
		t.Fatalf("too few log lines to be meaningful:\n%s", logs)
	}
}

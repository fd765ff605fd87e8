package kmsemu

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

func TestProtocolRefusals(t *testing.T) {
	e := start(t, &Server{})
	creds := aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}
	now := time.Now()

	resp, err := http.Get(e.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("GET /: status %d, want 400", resp.StatusCode)
	}
	post(t, e.url, "ScheduleKeyDeletion", `{"KeyId":"x"}`, creds, now, nil).wantError(t, 400, CodeUnknownOperation, "does not model operation ScheduleKeyDeletion")
	post(t, e.url, "", `{}`, creds, now, nil).wantError(t, 400, CodeUnknownOperation, "TrentService")
	post(t, e.url, "ListKeys", `{}`, creds, now, func(r *http.Request) { r.Header.Set("Content-Type", "application/json") }).
		wantError(t, 400, CodeSerialization, "application/x-amz-json-1.1")
	post(t, e.url, "ListKeys", `{"Limit":`, creds, now, nil).wantError(t, 400, CodeSerialization, "ListKeys request body")
	post(t, e.url, "ListKeys", `{"Limit":"ten"}`, creds, now, nil).wantError(t, 400, CodeSerialization, "ListKeys request body")
	post(t, e.url, "ListKeys", `{} {}`, creds, now, nil).wantError(t, 400, CodeSerialization, "after the JSON object")
	post(t, e.url, "CreateKey", `{"CustomKeyStoreId":"cks-1"}`, creds, now, nil).wantError(t, 400, CodeValidation, `does not model the CreateKey member "CustomKeyStoreId"`)
	post(t, e.url, "Decrypt", `{"CiphertextBlob":"not base64!"}`, creds, now, nil).wantError(t, 400, CodeSerialization, "Decrypt request body")
	post(t, e.url, "Decrypt", `{}`, creds, now, nil).wantError(t, 400, CodeValidation, "'ciphertextBlob'")
	post(t, e.url, "CreateKey", strings.Repeat(" ", maxBody+1), creds, now, nil).wantError(t, 413, CodeRequestEntityTooLarge, "exceeds")

	ok := post(t, e.url, "ListKeys", ``, creds, now, nil)
	if ok.status != 200 || ok.header.Get("Content-Type") != "application/x-amz-json-1.1" || !isUUID(ok.header.Get("X-Amzn-Requestid")) {
		t.Fatalf("ListKeys with an empty body: %d %v %v", ok.status, ok.header, ok.body)
	}
	if keys, isList := ok.body["Keys"].([]any); !isList || len(keys) != 0 || ok.body["Truncated"] != false {
		t.Errorf("empty ListKeys body %v: want Keys [] and Truncated false", ok.body)
	}

	// Through the SDK: features not modelled are refused loudly.
	c := e.client("test", "test")
	ctx := t.Context()
	id := *must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id)})
	var ge *smithy.GenericAPIError
	if !errors.As(err, &ge) || ge.Code != CodeUnknownOperation {
		t.Errorf("ScheduleKeyDeletion: got %v, want UnknownOperationException", err)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x"), GrantTokens: []string{"g"}})
	wantCode(t, err, CodeValidation)
	if !strings.Contains(err.Error(), "does not model grants") {
		t.Errorf("GrantTokens: %v", err)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x"), DryRun: aws.Bool(true)})
	wantCode(t, err, CodeValidation)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify})
	wantCode(t, err, CodeValidation)
	if !strings.Contains(err.Error(), "does not model KeySpec RSA_2048") {
		t.Errorf("CreateKey RSA_2048: %v", err)
	}
	if !strings.Contains(e.logs.String(), "operation not modelled by kmsemu") {
		t.Error("an unmodelled operation was not logged")
	}
}

func TestInterceptHook(t *testing.T) {
	e := start(t, &Server{Intercept: func(op, principal string) *APIError {
		if op == "Decrypt" {
			return &APIError{Code: "ThrottlingException", Message: "Rate exceeded"}
		}
		if op == "GenerateRandom" {
			return &APIError{Code: CodeInternal, Message: "simulated outage", Status: 500}
		}
		return nil
	}})
	c := e.client("test", "test")
	ctx := t.Context()
	id := *must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	blob := must[*kms.EncryptOutput](t)(c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})).CiphertextBlob
	_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	wantCode(t, err, "ThrottlingException")
	_, err = c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(4)})
	var ie *types.KMSInternalException
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "StatusCode: 500") {
		t.Fatalf("GenerateRandom: got %v, want a 500 KMSInternalException", err)
	}
}

// TestRecipientSeam checks the Recipient parameter: refused while no
// OpenRecipient hook is set, and wired through policy and sealing when one
// is.
func TestRecipientSeam(t *testing.T) {
	doc := []byte("fake attestation document")
	rec := &types.RecipientInfo{AttestationDocument: doc, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}

	t.Run("unsupported", func(t *testing.T) {
		e := start(t, &Server{})
		c := e.client("test", "test")
		ctx := t.Context()
		id := *must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
		blob := must[*kms.EncryptOutput](t)(c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})).CiphertextBlob
		_, err1 := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, Recipient: rec})
		_, err2 := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: "AES_256", Recipient: rec})
		_, err3 := c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32), Recipient: rec})
		for _, err := range []error{err1, err2, err3} {
			wantCode(t, err, CodeValidation)
			if !strings.Contains(err.Error(), "Recipient is not supported by this emulator build yet") {
				t.Errorf("error %v", err)
			}
		}
		if strings.Count(e.logs.String(), "does not support") != 3 {
			t.Errorf("the refusals are not logged:\n%s", e.logs.String())
		}
	})

	t.Run("hook", func(t *testing.T) {
		var sealed int
		e := start(t, &Server{OpenRecipient: func(ctx context.Context, r RecipientInfo) (*AttestedRecipient, error) {
			if string(r.AttestationDocument) == "forged" {
				return nil, &APIError{Code: CodeAccessDenied, Message: "attestation document signature does not verify"}
			}
			if string(r.AttestationDocument) == "broken" {
				return nil, errors.New("hook bug")
			}
			return &AttestedRecipient{
				ConditionKeys: map[string][]string{"kms:RecipientAttestation:ImageSha384": {string(r.AttestationDocument)}},
				Seal: func(p []byte) ([]byte, error) {
					sealed++
					return append([]byte("sealed:"), p...), nil
				},
			}, nil
		}})
		c := e.client("test", "test")
		ctx := t.Context()
		id := *must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
		pol := `{"Version":"2012-10-17","Statement":[
 {"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:role/dev"},"Action":["kms:PutKeyPolicy","kms:GetKeyPolicy","kms:Encrypt"],"Resource":"*"},
 {"Sid":"Enclave","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:role/dev"},"Action":["kms:Decrypt","kms:GenerateDataKey"],"Resource":"*",
  "Condition":{"StringEqualsIgnoreCase":{"kms:RecipientAttestation:ImageSha384":"fake attestation document"}}}]}`
		must[*kms.PutKeyPolicyOutput](t)(c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(pol)}))
		blob := must[*kms.EncryptOutput](t)(c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("secret")})).CiphertextBlob

		// Without Recipient the condition key is absent: denied.
		_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
		wantCode(t, err, CodeAccessDenied)
		dec := must[*kms.DecryptOutput](t)(c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, Recipient: rec}))
		if dec.Plaintext != nil || !bytes.Equal(dec.CiphertextForRecipient, []byte("sealed:secret")) {
			t.Fatalf("Decrypt with Recipient: Plaintext %q, CiphertextForRecipient %q", dec.Plaintext, dec.CiphertextForRecipient)
		}
		dk := must[*kms.GenerateDataKeyOutput](t)(c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: "AES_128", Recipient: rec}))
		if dk.Plaintext != nil || len(dk.CiphertextForRecipient) != len("sealed:")+16 || len(dk.CiphertextBlob) == 0 {
			t.Fatalf("GenerateDataKey with Recipient: %+v", dk)
		}
		gr := must[*kms.GenerateRandomOutput](t)(c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(5), Recipient: rec}))
		if gr.Plaintext != nil || len(gr.CiphertextForRecipient) != len("sealed:")+5 {
			t.Fatalf("GenerateRandom with Recipient: %+v", gr)
		}
		// Another measurement: policy denies, nothing is sealed.
		before := sealed
		other := &types.RecipientInfo{AttestationDocument: []byte("other image"), KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, Recipient: other})
		wantCode(t, err, CodeAccessDenied)
		if sealed != before {
			t.Error("Seal ran for a denied request")
		}
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, Recipient: &types.RecipientInfo{AttestationDocument: []byte("forged"), KeyEncryptionAlgorithm: "RSAES_OAEP_SHA_256"}})
		wantCode(t, err, CodeAccessDenied)
		if !strings.Contains(err.Error(), "does not verify") {
			t.Errorf("hook's error not passed on: %v", err)
		}
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, Recipient: &types.RecipientInfo{AttestationDocument: []byte("broken"), KeyEncryptionAlgorithm: "RSAES_OAEP_SHA_256"}})
		wantCode(t, err, CodeInternal)
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, Recipient: &types.RecipientInfo{AttestationDocument: doc, KeyEncryptionAlgorithm: "RSAES_PKCS1_V1_5"}})
		wantCode(t, err, CodeValidation)
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, Recipient: &types.RecipientInfo{KeyEncryptionAlgorithm: "RSAES_OAEP_SHA_256"}})
		wantCode(t, err, CodeValidation)
	})
}

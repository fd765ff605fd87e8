package kmsemu

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

func TestSDKKeysAndAliases(t *testing.T) {
	e := start(t, &Server{})
	c := e.client("test", "test")
	ctx := t.Context()

	out := must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{
		Description: aws.String("signer test key"),
		Tags:        []types.Tag{{TagKey: aws.String("team"), TagValue: aws.String("enclave")}},
	}))
	md := out.KeyMetadata
	if md == nil || !isUUID(aws.ToString(md.KeyId)) {
		t.Fatalf("CreateKey metadata %+v: want a UUID key id", md)
	}
	id := *md.KeyId
	wantARN := "arn:aws:kms:us-east-1:000000000000:key/" + id
	if aws.ToString(md.Arn) != wantARN || aws.ToString(md.AWSAccountId) != "000000000000" ||
		md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt ||
		md.KeyState != types.KeyStateEnabled || !md.Enabled || aws.ToString(md.Description) != "signer test key" ||
		md.CreationDate == nil || md.CreationDate.IsZero() {
		t.Fatalf("CreateKey metadata: %+v", md)
	}

	must[*kms.CreateAliasOutput](t)(c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/signer"), TargetKeyId: aws.String(id)}))
	_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/signer"), TargetKeyId: aws.String(id)})
	var exists *types.AlreadyExistsException
	if !errors.As(err, &exists) {
		t.Fatalf("second CreateAlias: got %v, want AlreadyExistsException", err)
	}
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/aws/ebs"), TargetKeyId: aws.String(id)})
	wantCode(t, err, CodeInvalidAliasName)
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("other"), TargetKeyId: aws.String(id)})
	wantCode(t, err, CodeInvalidAliasName)

	for _, ref := range []string{id, wantARN, "alias/signer", "arn:aws:kms:us-east-1:000000000000:alias/signer"} {
		d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)})
		if err != nil {
			t.Fatalf("DescribeKey(%s): %v", ref, err)
		}
		if aws.ToString(d.KeyMetadata.KeyId) != id {
			t.Errorf("DescribeKey(%s) = key %s, want %s", ref, aws.ToString(d.KeyMetadata.KeyId), id)
		}
	}
	for _, ref := range []string{"alias/missing", "00000000-0000-4000-8000-000000000000", "arn:aws:kms:eu-west-1:000000000000:key/" + id, "key/" + id} {
		_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)})
		var nf *types.NotFoundException
		if !errors.As(err, &nf) {
			t.Errorf("DescribeKey(%s): got %v, want NotFoundException", ref, err)
		}
	}

	// A second key, then paging through ListKeys one at a time.
	id2 := *must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	var listed []string
	var marker *string
	for range 5 {
		lk := must[*kms.ListKeysOutput](t)(c.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(1), Marker: marker}))
		for _, k := range lk.Keys {
			listed = append(listed, aws.ToString(k.KeyId))
			if aws.ToString(k.KeyArn) != "arn:aws:kms:us-east-1:000000000000:key/"+aws.ToString(k.KeyId) {
				t.Errorf("ListKeys ARN %s", aws.ToString(k.KeyArn))
			}
		}
		if !lk.Truncated {
			break
		}
		marker = lk.NextMarker
	}
	if strings.Join(listed, ",") != id+","+id2 {
		t.Errorf("ListKeys:\n got  %v\n want [%s %s]", listed, id, id2)
	}
	_, err = c.ListKeys(ctx, &kms.ListKeysInput{Marker: aws.String("bogus")})
	var im *types.InvalidMarkerException
	if !errors.As(err, &im) {
		t.Errorf("ListKeys with a bad marker: got %v, want InvalidMarkerException", err)
	}

	// Keys are per region: another region sees none.
	west := kms.New(kms.Options{Region: "eu-west-1", BaseEndpoint: aws.String(e.url), Credentials: c.Options().Credentials, RetryMaxAttempts: 1})
	if lk := must[*kms.ListKeysOutput](t)(west.ListKeys(ctx, &kms.ListKeysInput{})); len(lk.Keys) != 0 {
		t.Errorf("eu-west-1 lists %d keys, want 0", len(lk.Keys))
	}

	must[*kms.CreateAliasOutput](t)(c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/b-second"), TargetKeyId: aws.String(id2)}))
	la := must[*kms.ListAliasesOutput](t)(c.ListAliases(ctx, &kms.ListAliasesInput{}))
	if len(la.Aliases) != 2 || aws.ToString(la.Aliases[0].AliasName) != "alias/b-second" || aws.ToString(la.Aliases[1].AliasName) != "alias/signer" {
		t.Fatalf("ListAliases: %+v", la.Aliases)
	}
	a := la.Aliases[1]
	if aws.ToString(a.AliasArn) != "arn:aws:kms:us-east-1:000000000000:alias/signer" || aws.ToString(a.TargetKeyId) != id || a.CreationDate == nil {
		t.Errorf("alias entry %+v", a)
	}
	la = must[*kms.ListAliasesOutput](t)(c.ListAliases(ctx, &kms.ListAliasesInput{KeyId: aws.String(id2)}))
	if len(la.Aliases) != 1 || aws.ToString(la.Aliases[0].TargetKeyId) != id2 {
		t.Errorf("ListAliases(KeyId=%s): %+v", id2, la.Aliases)
	}
}

func TestSDKEncryptDecrypt(t *testing.T) {
	e := start(t, &Server{})
	c := e.client("test", "test")
	ctx := t.Context()
	id := *must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	id2 := *must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	must[*kms.CreateAliasOutput](t)(c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/k"), TargetKeyId: aws.String(id)}))
	arn := "arn:aws:kms:us-east-1:000000000000:key/" + id
	msg := []byte("age identity bytes")
	ec := map[string]string{"purpose": "signer", "env": "dev"}

	for _, tc := range []struct {
		name string
		ec   map[string]string
	}{{"no-context", nil}, {"context", ec}} {
		t.Run(tc.name, func(t *testing.T) {
			enc := must[*kms.EncryptOutput](t)(c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/k"), Plaintext: msg, EncryptionContext: tc.ec}))
			if aws.ToString(enc.KeyId) != arn || enc.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
				t.Errorf("Encrypt: KeyId %s, alg %s", aws.ToString(enc.KeyId), enc.EncryptionAlgorithm)
			}
			if bytes.Contains(enc.CiphertextBlob, msg) {
				t.Fatal("ciphertext contains the plaintext")
			}
			// Without KeyId, with the id, the ARN and the alias.
			for _, ref := range []*string{nil, aws.String(id), aws.String(arn), aws.String("alias/k")} {
				dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: tc.ec, KeyId: ref})
				if err != nil {
					t.Fatalf("Decrypt(KeyId=%v): %v", aws.ToString(ref), err)
				}
				if !bytes.Equal(dec.Plaintext, msg) || aws.ToString(dec.KeyId) != arn {
					t.Fatalf("Decrypt: plaintext %q key %s", dec.Plaintext, aws.ToString(dec.KeyId))
				}
			}
			var ic *types.InvalidCiphertextException
			wrong := map[string]string{"purpose": "other"}
			if tc.ec == nil {
				wrong = map[string]string{"extra": "x"}
			}
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: wrong})
			if !errors.As(err, &ic) {
				t.Fatalf("Decrypt with the wrong context: got %v, want *types.InvalidCiphertextException", err)
			}
			if tc.ec != nil {
				_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
				if !errors.As(err, &ic) {
					t.Fatalf("Decrypt without the context: got %v, want *types.InvalidCiphertextException", err)
				}
			}
			var ik *types.IncorrectKeyException
			_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: tc.ec, KeyId: aws.String(id2)})
			if !errors.As(err, &ik) {
				t.Fatalf("Decrypt naming another key: got %v, want *types.IncorrectKeyException", err)
			}
			// Every single-byte change to the blob is refused.
			for i := range enc.CiphertextBlob {
				blob := bytes.Clone(enc.CiphertextBlob)
				blob[i] ^= 0x01
				_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: tc.ec})
				if !errors.As(err, &ic) {
					t.Fatalf("Decrypt with byte %d flipped: got %v, want *types.InvalidCiphertextException", i, err)
				}
			}
		})
	}

	_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: make([]byte, 4097)})
	wantCode(t, err, CodeValidation)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: msg, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
	var iku *types.InvalidKeyUsageException
	if !errors.As(err, &iku) {
		t.Fatalf("Encrypt with RSAES_OAEP_SHA_256: got %v, want InvalidKeyUsageException", err)
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: []byte("not a blob")})
	var ic *types.InvalidCiphertextException
	if !errors.As(err, &ic) {
		t.Fatalf("Decrypt of garbage: got %v, want InvalidCiphertextException", err)
	}
}

func TestSDKGenerateDataKeyAndRandom(t *testing.T) {
	e := start(t, &Server{})
	c := e.client("test", "test")
	ctx := t.Context()
	id := *must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	ec := map[string]string{"k": "v"}
	for _, tc := range []struct {
		spec types.DataKeySpec
		n    *int32
		want int
	}{{types.DataKeySpecAes256, nil, 32}, {types.DataKeySpecAes128, nil, 16}, {"", aws.Int32(7), 7}, {"", aws.Int32(1024), 1024}} {
		dk := must[*kms.GenerateDataKeyOutput](t)(c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: tc.spec, NumberOfBytes: tc.n, EncryptionContext: ec}))
		if len(dk.Plaintext) != tc.want {
			t.Errorf("GenerateDataKey(%s, %v): %d bytes, want %d", tc.spec, aws.ToInt32(tc.n), len(dk.Plaintext), tc.want)
		}
		dec := must[*kms.DecryptOutput](t)(c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: ec}))
		if !bytes.Equal(dec.Plaintext, dk.Plaintext) {
			t.Error("the data key's blob does not decrypt to its plaintext")
		}
	}
	for _, in := range []*kms.GenerateDataKeyInput{
		{KeyId: aws.String(id)},
		{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256, NumberOfBytes: aws.Int32(32)},
		{KeyId: aws.String(id), NumberOfBytes: aws.Int32(1025)},
		{KeyId: aws.String(id), NumberOfBytes: aws.Int32(0)},
		{KeyId: aws.String(id), KeySpec: "AES_512"},
	} {
		_, err := c.GenerateDataKey(ctx, in)
		wantCode(t, err, CodeValidation)
	}

	r1 := must[*kms.GenerateRandomOutput](t)(c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(1024)}))
	r2 := must[*kms.GenerateRandomOutput](t)(c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(1024)}))
	if len(r1.Plaintext) != 1024 || bytes.Equal(r1.Plaintext, r2.Plaintext) {
		t.Errorf("GenerateRandom: %d bytes, repeated %v", len(r1.Plaintext), bytes.Equal(r1.Plaintext, r2.Plaintext))
	}
	for _, n := range []int32{0, 1025} {
		_, err := c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(n)})
		wantCode(t, err, CodeValidation)
	}
}

const adminDecryptPolicy = `{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:role/admin"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "DevEncrypt", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:role/dev"}, "Action": ["kms:Encrypt", "kms:DescribeKey"], "Resource": "*"},
    {"Sid": "DevDecryptWithPurpose", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:role/dev"}, "Action": "kms:Decrypt", "Resource": "*",
     "Condition": {"StringEquals": {"kms:EncryptionContext:purpose": "signer"}}},
    {"Sid": "NoDevGenerate", "Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::000000000000:role/dev"}, "Action": "kms:GenerateDataKey", "Resource": "*"}
  ]
}`

func TestSDKKeyPolicy(t *testing.T) {
	e := start(t, &Server{Credentials: []Credential{
		{AccessKeyID: "AKIADEV", SecretAccessKey: "devsecret", Principal: devPrincipal},
		{AccessKeyID: "AKIAADMIN", SecretAccessKey: "adminsecret", Principal: adminPrincipal},
	}})
	dev, admin := e.client("AKIADEV", "devsecret"), e.client("AKIAADMIN", "adminsecret")
	ctx := t.Context()
	id := *must[*kms.CreateKeyOutput](t)(admin.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	arn := "arn:aws:kms:us-east-1:000000000000:key/" + id

	gp := must[*kms.GetKeyPolicyOutput](t)(dev.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(id)}))
	if aws.ToString(gp.Policy) != DefaultKeyPolicy("000000000000") || aws.ToString(gp.PolicyName) != "default" {
		t.Fatalf("default policy:\n got  %s\n want %s", aws.ToString(gp.Policy), DefaultKeyPolicy("000000000000"))
	}

	// Malformed policies and bad names are refused; the policy is unchanged.
	_, err := admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(`{"Statement": [`)})
	var mp *types.MalformedPolicyDocumentException
	if !errors.As(err, &mp) {
		t.Fatalf("PutKeyPolicy(malformed): got %v, want *types.MalformedPolicyDocumentException", err)
	}
	_, err = admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), PolicyName: aws.String("other"), Policy: aws.String(adminDecryptPolicy)})
	wantCode(t, err, CodeValidation)
	_, err = admin.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String("alias/nope")})
	var nf *types.NotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("GetKeyPolicy(alias): got %v, want NotFoundException", err)
	}
	// The lockout safety check: a policy that would lock the caller out
	// is refused unless bypassed.
	lockout := strings.Replace(adminDecryptPolicy, `"Action": "kms:*"`, `"Action": "kms:Decrypt"`, 1)
	_, err = admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(lockout)})
	if !errors.As(err, &mp) || !strings.Contains(err.Error(), "will not allow you to update the key policy") {
		t.Fatalf("PutKeyPolicy(lockout): got %v, want the lockout MalformedPolicyDocumentException", err)
	}

	must[*kms.PutKeyPolicyOutput](t)(admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(arn), PolicyName: aws.String("default"), Policy: aws.String(adminDecryptPolicy)}))
	gp = must[*kms.GetKeyPolicyOutput](t)(admin.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(id)}))
	if aws.ToString(gp.Policy) != adminDecryptPolicy {
		t.Fatalf("GetKeyPolicy after Put:\n got  %s\n want %s", aws.ToString(gp.Policy), adminDecryptPolicy)
	}

	ec := map[string]string{"purpose": "signer"}
	enc := must[*kms.EncryptOutput](t)(dev.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x"), EncryptionContext: ec}))
	must[*kms.DecryptOutput](t)(dev.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec}))

	// Implicit deny: the condition fails.
	enc2 := must[*kms.EncryptOutput](t)(dev.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x"), EncryptionContext: map[string]string{"purpose": "other"}}))
	_, err = dev.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc2.CiphertextBlob, EncryptionContext: map[string]string{"purpose": "other"}})
	wantAccessDenied(t, err, "User: "+devPrincipal+" is not authorized to perform: kms:Decrypt on resource: "+arn+" because no resource-based policy allows the kms:Decrypt action")
	// Explicit deny.
	_, err = dev.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256})
	wantAccessDenied(t, err, "User: "+devPrincipal+" is not authorized to perform: kms:GenerateDataKey on resource: "+arn+" with an explicit deny in a resource-based policy")
	_, err = dev.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(DefaultKeyPolicy("000000000000"))})
	wantCode(t, err, CodeAccessDenied)
	_, err = dev.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(id)})
	wantCode(t, err, CodeAccessDenied)
	if !strings.Contains(e.logs.String(), "NoDevGenerate") {
		t.Errorf("the log does not name the denying statement:\n%s", e.logs.String())
	}

	// The bypass flag skips the lockout check.
	must[*kms.PutKeyPolicyOutput](t)(admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(lockout), BypassPolicyLockoutSafetyCheck: true}))
	_, err = admin.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(id)})
	wantCode(t, err, CodeAccessDenied)

	// CreateKey with a policy runs the same checks.
	_, err = admin.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String("not json")})
	if !errors.As(err, &mp) {
		t.Errorf("CreateKey(malformed policy): got %v, want MalformedPolicyDocumentException", err)
	}
	_, err = dev.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(adminDecryptPolicy)})
	if !errors.As(err, &mp) {
		t.Errorf("CreateKey(policy locking out the caller): got %v, want MalformedPolicyDocumentException", err)
	}
	must[*kms.CreateKeyOutput](t)(admin.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(adminDecryptPolicy)}))
}

func wantAccessDenied(t *testing.T, err error, msg string) {
	t.Helper()
	var ge *smithy.GenericAPIError
	if !errors.As(err, &ge) {
		t.Fatalf("got %v (%T), want a *smithy.GenericAPIError", err, err)
	}
	if ge.Code != CodeAccessDenied || ge.Message != msg {
		t.Fatalf("access denied error:\n got  %s: %s\n want %s: %s", ge.Code, ge.Message, CodeAccessDenied, msg)
	}
}

func TestSDKCrossAccount(t *testing.T) {
	e := start(t, &Server{Credentials: []Credential{
		DefaultCredential,
		{AccessKeyID: "AKIAOTHER", SecretAccessKey: "o", Principal: otherPrincipal},
	}})
	dev, other := e.client("test", "test"), e.client("AKIAOTHER", "o")
	ctx := t.Context()
	id := *must[*kms.CreateKeyOutput](t)(dev.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	arn := "arn:aws:kms:us-east-1:000000000000:key/" + id
	// By id, the other account's caller looks in its own account.
	_, err := other.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
	wantCode(t, err, CodeNotFound)
	// By ARN it reaches the key, and the default policy (this account's
	// root) does not admit it.
	_, err = other.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
	wantAccessDenied(t, err, "User: "+otherPrincipal+" is not authorized to perform: kms:DescribeKey on resource: "+arn+" because no resource-based policy allows the kms:DescribeKey action")
	// Its own key lives in its account.
	md := must[*kms.CreateKeyOutput](t)(other.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata
	if aws.ToString(md.AWSAccountId) != "111122223333" {
		t.Errorf("key account %s, want 111122223333", aws.ToString(md.AWSAccountId))
	}
}

func TestConcurrentRequests(t *testing.T) {
	e := start(t, &Server{StatePath: t.TempDir() + "/state.json"})
	c := e.client("test", "test")
	ctx := t.Context()
	id := *must[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			if i%4 == 0 {
				_, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
				errs <- err
				return
			}
			enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte{byte(i)}})
			if err == nil {
				var dec *kms.DecryptOutput
				dec, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
				if err == nil && !bytes.Equal(dec.Plaintext, []byte{byte(i)}) {
					err = errors.New("wrong plaintext")
				}
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	lk := must[*kms.ListKeysOutput](t)(c.ListKeys(ctx, &kms.ListKeysInput{}))
	if len(lk.Keys) != 5 {
		t.Errorf("%d keys, want 5", len(lk.Keys))
	}
}

package kmssigner_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/enclave-signer/enclave-signer/internal/kms/kmsemu"
	"github.com/enclave-signer/enclave-signer/internal/kms/kmssigner"
)

// emulator serves a KMS emulator on 127.0.0.1 and returns its URL.
func emulator(t *testing.T, s *kmsemu.Server) string {
	t.Helper()
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts.URL
}

// client is the unmodified SDK client for the emulator at url.
func client(url, akid, secret string) *kms.Client {
	return kms.New(kms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret}, nil
		})),
		RetryMaxAttempts: 1,
	})
}

func mustT[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// signingKey creates an ECC_NIST_P256 SIGN_VERIFY key with an alias and
// returns its ARN.
func signingKey(t *testing.T, c *kms.Client, alias string, policy *string) string {
	t.Helper()
	md := mustT[*kms.CreateKeyOutput](t)(c.CreateKey(t.Context(), &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify, Policy: policy})).KeyMetadata
	if alias != "" {
		mustT[*kms.CreateAliasOutput](t)(c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: md.KeyId}))
	}
	return aws.ToString(md.Arn)
}

// kmsPublicKey is the key GetPublicKey answers, parsed here, apart from
// the Signer.
func kmsPublicKey(t *testing.T, c *kms.Client, arn string) *ecdsa.PublicKey {
	t.Helper()
	out := mustT[*kms.GetPublicKeyOutput](t)(c.GetPublicKey(t.Context(), &kms.GetPublicKeyInput{KeyId: aws.String(arn)}))
	pk, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pk.(*ecdsa.PublicKey)
}

func TestSignerSignsWithTheKMSKey(t *testing.T) {
	url := emulator(t, &kmsemu.Server{})
	c := client(url, "test", "test")
	ctx := t.Context()
	arn := signingKey(t, c, "alias/keyring-signer", nil)
	id := arn[strings.LastIndex(arn, "/")+1:]
	pub := kmsPublicKey(t, c, arn)

	for _, name := range []string{id, arn, "alias/keyring-signer", "arn:aws:kms:us-east-1:000000000000:alias/keyring-signer"} {
		t.Run(name, func(t *testing.T) {
			s, err := kmssigner.New(ctx, c, name)
			if err != nil {
				t.Fatal(err)
			}
			if s.KeyARN() != arn || s.KeyID() != name {
				t.Errorf("KeyARN %s KeyID %s, want %s and %s", s.KeyARN(), s.KeyID(), arn, name)
			}
			if !pub.Equal(s.Public()) {
				t.Fatal("Public() is not the key GetPublicKey answers")
			}
			// The SPKI of Public() is byte for byte what GetPublicKey (and
			// aws kms get-public-key) answers, so a pin made from either
			// is the same string.
			spki, err := x509.MarshalPKIXPublicKey(s.Public())
			if err != nil {
				t.Fatal(err)
			}
			if want := mustT[*kms.GetPublicKeyOutput](t)(c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(arn)})).PublicKey; !bytes.Equal(spki, want) {
				t.Fatalf("SPKI of Public():\n %x\nGetPublicKey:\n %x", spki, want)
			}
			if want := "kms:" + name; !strings.HasPrefix(s.String(), want) || !strings.Contains(s.String(), arn) {
				t.Errorf("String() = %q", s.String())
			}
			// Empty, short, and longer than KMS's 4096-byte RAW limit.
			for _, msg := range [][]byte{{}, []byte("statement"), bytes.Repeat([]byte("x"), 10000)} {
				sig, err := s.Sign(ctx, msg)
				if err != nil {
					t.Fatalf("Sign(%d bytes): %v", len(msg), err)
				}
				d := sha256.Sum256(msg)
				if !ecdsa.VerifyASN1(pub, d[:], sig) {
					t.Fatalf("Sign(%d bytes): the signature does not verify with crypto/ecdsa against GetPublicKey's key", len(msg))
				}
				other := sha256.Sum256(append(bytes.Clone(msg), 0))
				if ecdsa.VerifyASN1(pub, other[:], sig) {
					t.Fatal("the signature verifies for another message")
				}
				if len(msg) >= 1 && len(msg) <= 4096 {
					// KMS itself accepts it as a signature of the message
					// (which Verify takes RAW only from 1 to 4096 bytes).
					v := mustT[*kms.VerifyOutput](t)(c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(arn), Message: msg, MessageType: types.MessageTypeRaw,
						Signature: sig, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}))
					if !v.SignatureValid {
						t.Fatal("KMS Verify: not valid")
					}
				}
			}
		})
	}
}

func TestNewRefusesOtherKeys(t *testing.T) {
	url := emulator(t, &kmsemu.Server{})
	c := client(url, "test", "test")
	ctx := t.Context()
	sym := aws.ToString(mustT[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.Arn)
	p384 := aws.ToString(mustT[*kms.CreateKeyOutput](t)(c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP384, KeyUsage: types.KeyUsageTypeSignVerify})).KeyMetadata.Arn)
	for _, tc := range []struct {
		name, key string
		want      []string
		code      string // the KMS error code kept in the chain, if any
	}{
		{"symmetric", sym, []string{sym + " is not an asymmetric signing key", "ECC_NIST_P256 key with SIGN_VERIFY", "aws kms create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY"}, "UnsupportedOperationException"},
		{"P-384", p384, []string{"has KeySpec ECC_NIST_P384 and KeyUsage SIGN_VERIFY; a keyring signer needs ECC_NIST_P256 with SIGN_VERIFY", "aws kms create-key"}, ""},
		{"missing alias", "alias/none", []string{"GetPublicKey alias/none", "NotFoundException"}, "NotFoundException"},
		{"empty", "", []string{"no key named"}, ""},
		{"white space", "alias/a b", []string{"contains white space"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := kmssigner.New(ctx, c, tc.key)
			if err == nil {
				t.Fatalf("New(%q) = %v, want an error", tc.key, s)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not say %q", err, w)
				}
			}
			var ae smithy.APIError
			if tc.code != "" && (!errors.As(err, &ae) || ae.ErrorCode() != tc.code) {
				t.Errorf("error %v does not wrap the KMS error %s", err, tc.code)
			}
		})
	}
}

// signerPolicy lets dev read the public key but not sign; admin may do
// everything.
const signerPolicy = `{"Version":"2012-10-17","Statement":[
 {"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:role/admin"},"Action":"kms:*","Resource":"*"},
 {"Sid":"DevRead","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:role/dev"},"Action":"kms:GetPublicKey","Resource":"*"}]}`

func TestSignRefusedByTheKeyPolicy(t *testing.T) {
	url := emulator(t, &kmsemu.Server{Credentials: []kmsemu.Credential{
		{AccessKeyID: "AKIADEV", SecretAccessKey: "d", Principal: "arn:aws:iam::000000000000:role/dev"},
		{AccessKeyID: "AKIAADMIN", SecretAccessKey: "a", Principal: "arn:aws:iam::000000000000:role/admin"},
	}})
	admin, dev := client(url, "AKIAADMIN", "a"), client(url, "AKIADEV", "d")
	arn := signingKey(t, admin, "", aws.String(signerPolicy))
	s, err := kmssigner.New(t.Context(), dev, arn)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Sign(t.Context(), []byte("statement"))
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDeniedException" || !strings.Contains(err.Error(), "kms:Sign") || !strings.Contains(err.Error(), "Sign with kms:"+arn) {
		t.Fatalf("Sign without kms:Sign: got %v, want an AccessDeniedException naming kms:Sign and the key", err)
	}
}

// tamperingAPI passes calls to a real client, changing Sign's request or
// answer as a misbehaving endpoint could.
type tamperingAPI struct {
	*kms.Client
	signWith     string // sign with this key instead
	flipBit      bool   // damage the signature
	answerKeyID  string // answer this KeyId
	answerAlg    types.SigningAlgorithmSpec
	sawDeadline  bool
	deadlineLeft time.Duration
}

func (a *tamperingAPI) Sign(ctx context.Context, in *kms.SignInput, optFns ...func(*kms.Options)) (*kms.SignOutput, error) {
	if dl, ok := ctx.Deadline(); ok {
		a.sawDeadline, a.deadlineLeft = true, time.Until(dl)
	}
	if a.signWith != "" {
		in.KeyId = aws.String(a.signWith)
	}
	out, err := a.Client.Sign(ctx, in, optFns...)
	if err != nil {
		return nil, err
	}
	if a.flipBit {
		out.Signature[len(out.Signature)-1] ^= 1
	}
	if a.answerKeyID != "" {
		out.KeyId = aws.String(a.answerKeyID)
	}
	if a.answerAlg != "" {
		out.SigningAlgorithm = a.answerAlg
	}
	return out, nil
}

// TestSignChecksKMSAnswer: a Signer hands out no signature its public key
// does not verify, whatever the endpoint answers.
func TestSignChecksKMSAnswer(t *testing.T) {
	url := emulator(t, &kmsemu.Server{})
	c := client(url, "test", "test")
	arn := signingKey(t, c, "", nil)
	other := signingKey(t, c, "", nil)
	for _, tc := range []struct {
		name string
		api  *tamperingAPI
		want string
	}{
		{"signed by another key, answered as ours", &tamperingAPI{Client: c, signWith: other, answerKeyID: arn}, "does not verify under the key's public key"},
		{"signed by another key", &tamperingAPI{Client: c, signWith: other}, `KMS answered for key "` + other + `", not ` + arn},
		{"damaged signature", &tamperingAPI{Client: c, flipBit: true}, "does not verify under the key's public key"},
		{"other algorithm", &tamperingAPI{Client: c, answerAlg: types.SigningAlgorithmSpecEcdsaSha384}, "KMS answered with signing algorithm ECDSA_SHA_384, not ECDSA_SHA_256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := kmssigner.New(t.Context(), tc.api, arn)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.Sign(t.Context(), []byte("statement"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sign: (%x, %v), want an error saying %q", sig, err, tc.want)
			}
		})
	}
}

func TestSignHasADeadline(t *testing.T) {
	url := emulator(t, &kmsemu.Server{})
	c := client(url, "test", "test")
	arn := signingKey(t, c, "", nil)
	api := &tamperingAPI{Client: c}
	s := mustT[*kmssigner.Signer](t)(kmssigner.New(context.Background(), api, arn))
	mustT[[]byte](t)(s.Sign(context.Background(), []byte("m")))
	if !api.sawDeadline || api.deadlineLeft > kmssigner.DefaultTimeout {
		t.Fatalf("Sign without a caller deadline: KMS call had deadline %v (%v left), want at most %v", api.sawDeadline, api.deadlineLeft, kmssigner.DefaultTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	mustT[[]byte](t)(s.Sign(ctx, []byte("m")))
	if api.deadlineLeft <= kmssigner.DefaultTimeout {
		t.Fatalf("Sign replaced the caller's deadline (%v left)", api.deadlineLeft)
	}
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := s.Sign(cancelled, []byte("m")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sign with a cancelled context: %v, want context.Canceled", err)
	}
}

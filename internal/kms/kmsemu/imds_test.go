package kmsemu

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/enclave-signer/enclave-signer/internal/imdsemu"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// lookupIn accepts the credentials any of the emulated instances issued,
// as signer kms-emulator --imds wires it.
func lookupIn(instances ...*imdsemu.Server) func(string) (Credential, bool) {
	return func(id string) (Credential, bool) {
		for _, m := range instances {
			if c, ok := m.Lookup(id); ok {
				return Credential{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Expires: c.Expiration, Principal: c.Principal}, true
			}
		}
		return Credential{}, false
	}
}

// TestIMDSCredentials: credentials an emulated instance issued act as its
// assumed-role session, which a key policy naming the role admits (and
// one naming another role does not); they work until their expiration,
// then get ExpiredTokenException, while their successor works.
func TestIMDSCredentials(t *testing.T) {
	clock := &testClock{t: time.Now().UTC().Truncate(time.Second)}
	dev := &imdsemu.Server{Role: "dev", Lifetime: 30 * time.Second, Now: clock.Now}
	other := &imdsemu.Server{Role: "other", Lifetime: 30 * time.Second, Now: clock.Now}
	e := start(t, &Server{Now: clock.Now, LookupCredential: lookupIn(dev, other)})
	ctx := t.Context()

	// The key, made by test/test (role/dev itself), admits role/dev only.
	pol := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + devPrincipal + `"},"Action":"kms:*","Resource":"*"}]}`
	key := must[*kms.CreateKeyOutput](t)(e.client("test", "test").CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(pol)}))
	asSession := func(c imdsemu.Credentials) *kms.Client {
		return clientFor(e.url, aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken})
	}
	encrypt := func(c *kms.Client) error {
		_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte("x")})
		return err
	}

	first := must[imdsemu.Credentials](t)(dev.Current())
	if err := encrypt(asSession(first)); err != nil {
		t.Fatalf("a session of role dev, under a policy naming role/dev: %v", err)
	}
	if !strings.Contains(e.logs.String(), "principal="+dev.Principal()) {
		t.Errorf("the request did not act as %s:\n%s", dev.Principal(), e.logs)
	}
	otherCreds := must[imdsemu.Credentials](t)(other.Current())
	err := encrypt(asSession(otherCreds))
	wantCode(t, err, "AccessDeniedException")
	if !strings.Contains(err.Error(), "User: "+other.Principal()+" is not authorized") {
		t.Errorf("AccessDenied does not name the session: %v", err)
	}

	// The session token is part of the credential.
	forged := first
	forged.SessionToken = "IQoJforged"
	wantCode(t, encrypt(asSession(forged)), "UnrecognizedClientException")
	noToken := first
	noToken.SessionToken = ""
	wantCode(t, encrypt(asSession(noToken)), "UnrecognizedClientException")

	// Past half the lifetime the instance offers new credentials; the
	// first still work until their own expiration, then do not.
	clock.Add(20 * time.Second)
	second := must[imdsemu.Credentials](t)(dev.Current())
	if second.AccessKeyID == first.AccessKeyID {
		t.Fatal("no rotation at 20 s of 30")
	}
	if err := encrypt(asSession(first)); err != nil {
		t.Fatalf("the first credentials, 10 s before their expiration: %v", err)
	}
	clock.Add(10 * time.Second) // exactly at the first's expiration
	err = encrypt(asSession(first))
	wantCode(t, err, "ExpiredTokenException")
	if !strings.Contains(err.Error(), "The security token included in the request is expired") {
		t.Errorf("ExpiredTokenException message: %v", err)
	}
	if !strings.Contains(e.logs.String(), "credential expired") {
		t.Errorf("the log does not say the credential expired:\n%s", e.logs)
	}
	if err := encrypt(asSession(second)); err != nil {
		t.Fatalf("the second credentials, before their expiration: %v", err)
	}
	// An access key the instance never issued is unknown, not expired.
	wantCode(t, encrypt(e.client("ASIAAAAAAAAAAAAAAAAA", "x")), "UnrecognizedClientException")
	// test/test keeps working beside them.
	if err := encrypt(e.client("test", "test")); err != nil {
		t.Fatal(err)
	}
}

// TestLookupCredentialBadPrincipal: a hook that returns a principal that
// is no ARN is the emulator's fault, answered as an internal error.
func TestLookupCredentialBadPrincipal(t *testing.T) {
	e := start(t, &Server{LookupCredential: func(id string) (Credential, bool) {
		return Credential{AccessKeyID: id, SecretAccessKey: "s", Principal: "not-an-arn"}, id == "hooked"
	}})
	_, err := e.client("hooked", "s").ListKeys(t.Context(), &kms.ListKeysInput{})
	wantCode(t, err, "KMSInternalException")
}

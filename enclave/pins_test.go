package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/cms"
	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// Keys in fakeKMS's region other than the one it decrypts with, and one
// elsewhere.
const (
	otherKeyARN   = "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-4000-8000-0000000000aa"
	thirdKeyARN   = "arn:aws:kms:us-east-1:000000000000:key/mrk-0123456789abcdef0123456789abcdef"
	foreignRegion = "arn:aws:kms:eu-west-1:000000000000:key/00000000-0000-4000-8000-000000000001"
)

func TestParseConfigPins(t *testing.T) {
	cfg, err := parseConfig([]string{"--kms-key", fakeKeyARN, "--kms-key", otherKeyARN}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Pins.KMSKeyStrings(); !slices.Equal(got, []string{fakeKeyARN, otherKeyARN}) || !cfg.Pins.Pinned() {
		t.Fatalf("pins %q, want both in order", got)
	}
	if cfg, _ := parseConfig(nil, nil, io.Discard); cfg.Pins.Pinned() {
		t.Fatal("no --kms-key: pinned")
	}
	// The image's environment adds its pins before the command line's.
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err = parseConfig([]string{"--kms-key", thirdKeyARN}, env(map[string]string{"SIGNERD_KMS_KEYS": " " + fakeKeyARN + " ," + otherKeyARN + ",", "SIGNERD_KEYRING_SIGNERS": " "}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Pins.KMSKeyStrings(); !slices.Equal(got, []string{fakeKeyARN, otherKeyARN, thirdKeyARN}) {
		t.Fatalf("pins from SIGNERD_KMS_KEYS and --kms-key: %q", got)
	}

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"alias", []string{"--kms-key", "alias/signer"}, nil, []string{"kms-key", "an alias cannot be pinned", "aws kms describe-key --key-id alias/signer --query KeyMetadata.Arn"}},
		{"alias ARN", []string{"--kms-key", "arn:aws:kms:us-east-1:000000000000:alias/signer"}, nil, []string{"an alias cannot be pinned"}},
		{"key id", []string{"--kms-key", "00000000-0000-4000-8000-000000000001"}, nil, []string{"a key id: want the key's ARN"}},
		{"twice", []string{"--kms-key", fakeKeyARN, "--kms-key", fakeKeyARN}, nil, []string{"pinned twice"}},
		{"alias in the image", nil, map[string]string{"SIGNERD_KMS_KEYS": "alias/signer"}, []string{"SIGNERD_KMS_KEYS", "make image KMS_KEYS=", "an alias cannot be pinned"}},
		// A pin that is not a pin stops signerd: never a pin ignored.
		{"a bad keyring signer in the image", nil, map[string]string{"SIGNERD_KEYRING_SIGNERS": "file:x"}, []string{"SIGNERD_KEYRING_SIGNERS", "make image KEYRING_SIGNERS=", "want ed25519:BASE64"}},
	} {
		_, err := parseConfig(tc.args, env(tc.env), io.Discard)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: parseConfig = %v, want an error containing %q", tc.name, err, w)
			}
		}
	}
}

// TestPinnedKMSKey: pinned, signerd names the key in Decrypt (KeyId) and
// accepts the identity only under a pinned key; anything else fails the
// step kms_key with the key that answered and the pinned ones named.
func TestPinnedKMSKey(t *testing.T) {
	kr := func(e *env) wire.SealedKeyring { return e.keyringFor("k.age", newKey(t, "k", keyring.Ed25519)) }

	t.Run("pinned key", func(t *testing.T) {
		e := start(t, "--kms-key", fakeKeyARN)
		st := e.provision(e.dial(), kr(e))
		if st.State != wire.StateReady || !st.Pinned || st.Pins == nil || !slices.Equal(st.Pins.KMSKeys, []string{fakeKeyARN}) {
			t.Fatalf("status %+v (pins %+v), want ready, pinned to %s", st, st.Pins, fakeKeyARN)
		}
		if !strings.Contains(e.logs.String(), `"pinned":true`) || strings.Contains(e.logs.String(), "no KMS key is pinned") {
			t.Errorf("start log does not say pinned:\n%s", e.logs)
		}
	})

	t.Run("rotation: the second pin", func(t *testing.T) {
		e := start(t, "--kms-key", otherKeyARN, "--kms-key", fakeKeyARN)
		if st := e.provision(e.dial(), kr(e)); st.State != wire.StateReady {
			t.Fatalf("status %+v (error %+v), want ready through the second pin", st, st.Error)
		}
	})

	t.Run("another key", func(t *testing.T) {
		e := start(t, "--kms-key", otherKeyARN, "--kms-key", thirdKeyARN)
		st := e.provision(e.dial(), kr(e))
		if st.State != wire.StateFailed || st.Error == nil || st.Error.Step != "kms_key" {
			t.Fatalf("status %+v (error %+v), want failed at kms_key", st, st.Error)
		}
		for _, want := range []string{"sealed under KMS key " + fakeKeyARN + ", which is not pinned", otherKeyARN + ": IncorrectKeyException", thirdKeyARN + ": IncorrectKeyException", "signerd accepts only an identity sealed under " + otherKeyARN + " or " + thirdKeyARN} {
			if !strings.Contains(st.Error.Message, want) {
				t.Errorf("error message lacks %q:\n%s", want, st.Error.Message)
			}
		}
		if st.Keys != 0 {
			t.Errorf("%d keys loaded", st.Keys)
		}
	})

	t.Run("KMS will not say which key", func(t *testing.T) {
		e := start(t, "--kms-key", otherKeyARN)
		e.kms.answer = func(w http.ResponseWriter, body decryptBody) {
			if body.KeyId != "" {
				kmsError(w, "IncorrectKeyException", "The key ID in the request does not identify a KMS key that can perform this operation.")
				return
			}
			kmsError(w, "AccessDeniedException", "not for you")
		}
		st := e.provision(e.dial(), kr(e))
		if st.State != wire.StateFailed || st.Error == nil || st.Error.Step != "kms_key" ||
			!strings.Contains(st.Error.Message, "KMS refused the identity for every pinned key as sealed under another key ("+otherKeyARN+": IncorrectKeyException), and it did not say which key the identity is sealed under (kms decrypt: AccessDeniedException") {
			t.Fatalf("status %+v (error %+v), want failed at kms_key saying KMS refused it as IncorrectKey", st, st.Error)
		}
	})

	t.Run("answer names another key", func(t *testing.T) {
		e := start(t, "--kms-key", fakeKeyARN)
		// A KMS (or something posing as one) that ignores KeyId.
		e.kms.answer = func(w http.ResponseWriter, body decryptBody) {
			doc, err := attestation.Parse(body.Recipient.AttestationDocument)
			if err != nil {
				t.Error(err)
			}
			env, _ := cms.Seal(rand.Reader, identityFile(e.identity), doc.PublicKey)
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			json.NewEncoder(w).Encode(map[string]any{"KeyId": otherKeyARN, "CiphertextForRecipient": env})
		}
		st := e.provision(e.dial(), kr(e))
		if st.State != wire.StateFailed || st.Error == nil || st.Error.Step != "kms_key" ||
			!strings.Contains(st.Error.Message, "KMS answered a Decrypt naming key "+fakeKeyARN+` with key "`+otherKeyARN+`"`) {
			t.Fatalf("status %+v (error %+v), want failed at kms_key naming both keys", st, st.Error)
		}
	})

	t.Run("no pin in the region", func(t *testing.T) {
		e := start(t, "--kms-key", foreignRegion)
		st := e.provision(e.dial(), kr(e))
		if st.State != wire.StateFailed || st.Error == nil || st.Error.Step != "kms_key" || !strings.Contains(st.Error.Message, "no pinned KMS key is in region us-east-1") {
			t.Fatalf("status %+v (error %+v), want failed at kms_key, no pin in the region", st, st.Error)
		}
		if calls := e.kms.callCount(); calls != 0 {
			t.Errorf("%d KMS calls, want none", calls)
		}
	})

	// A refusal other than IncorrectKey (access denied; throttled beyond
	// the client's retries) is the error to fix: reported as it is, with no
	// further Decrypt without KeyId, which would only repeat it.
	for _, code := range []string{"AccessDeniedException", "ThrottlingException"} {
		t.Run("a pinned key refuses with "+code, func(t *testing.T) {
			e := start(t, "--kms-key", fakeKeyARN)
			var mu sync.Mutex
			keyless := 0
			e.kms.answer = func(w http.ResponseWriter, body decryptBody) {
				if body.KeyId == "" {
					mu.Lock()
					keyless++
					mu.Unlock()
				}
				kmsError(w, code, "no")
			}
			st := e.provision(e.dial(), kr(e))
			if st.State != wire.StateFailed || st.Error == nil || st.Error.Step != "kms_decrypt" || st.Error.KMSCode != code {
				t.Fatalf("status %+v (error %+v), want failed at kms_decrypt with the key's refusal", st, st.Error)
			}
			mu.Lock()
			defer mu.Unlock()
			if keyless != 0 {
				t.Errorf("%d Decrypts without KeyId after the pinned key refused with %s, want none", keyless, code)
			}
		})
	}

	t.Run("unpinned", func(t *testing.T) {
		e := start(t)
		st := e.provision(e.dial(), kr(e))
		if st.State != wire.StateReady || st.Pinned || st.Pins != nil {
			t.Fatalf("status %+v, want ready, unpinned", st)
		}
		if !strings.Contains(e.logs.String(), "no KMS key is pinned") || !strings.Contains(e.logs.String(), `"pinned":false`) {
			t.Errorf("no warning at start:\n%s", e.logs)
		}
	})

	t.Run("pins from the image", func(t *testing.T) {
		e := startEnv(t, map[string]string{"SIGNERD_KMS_KEYS": otherKeyARN + "," + fakeKeyARN})
		st := e.provision(e.dial(), kr(e))
		if st.State != wire.StateReady || st.Pins == nil || !slices.Equal(st.Pins.KMSKeys, []string{otherKeyARN, fakeKeyARN}) {
			t.Fatalf("status %+v (pins %+v), want ready, pinned by SIGNERD_KMS_KEYS", st, st.Pins)
		}
	})
}

func (f *fakeKMS) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestProvisionOnlyFromPrivilegedPeers: over TCP, a provisioning from an
// ephemeral source port is refused (forbidden) and changes nothing, while
// the connection keeps serving; from a port below 1024 it is accepted.
// Everything else stays open to any peer.
func TestProvisionOnlyFromPrivilegedPeers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostport := ln.Addr().String()
	ln.Close()
	e := start(t, "--listen", "tcp://"+hostport)
	taddr := transport.Addr{Scheme: transport.TCP, HostPort: hostport}
	ctx := t.Context()

	var local string
	plain, err := wire.Dial(ctx, func(ctx context.Context) (net.Conn, error) {
		nc, err := transport.Dial(ctx, taddr)
		if err == nil {
			local = nc.LocalAddr().String()
		}
		return nc, err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	req := e.request(e.keyringFor("k.age", newKey(t, "k", keyring.Ed25519)))
	_, err = call[*wire.Status](ctx, plain, req)
	if !errors.Is(err, wire.ErrForbidden) {
		t.Fatalf("provisioning from an ephemeral port: %v, want forbidden", err)
	}
	for _, want := range []string{"only from a privileged source port (below 1024", "tcp peer " + local, "nothing changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q lacks %q", err, want)
		}
	}
	st, err := call[*wire.Status](ctx, plain, &wire.StatusRequest{})
	if err != nil || st.State != wire.StateWaiting {
		t.Fatalf("after the refusal: %+v, %v; want the connection serving, state waiting", st, err)
	}
	if e.kms.callCount() != 0 {
		t.Errorf("the refused provisioning called KMS")
	}
	if !strings.Contains(e.logs.String(), "provisioning refused") {
		t.Errorf("the refusal is not logged:\n%s", e.logs)
	}

	priv, err := wire.Dial(ctx, func(ctx context.Context) (net.Conn, error) { return transport.DialPrivileged(ctx, taddr) })
	if err != nil {
		if os.Getenv("CI") == "true" || os.Geteuid() == 0 {
			t.Fatalf("dial from a privileged port: %v", err)
		}
		t.Skipf("cannot bind privileged ports here: %v", err)
	}
	defer priv.Close()
	if st, err := call[*wire.Status](ctx, priv, req); err != nil || st.State != wire.StateReady {
		t.Fatalf("provisioning from a privileged port: %+v, %v; want ready", st, err)
	}
	// Signing, listing and attesting stay open to any peer.
	if _, err := call[*wire.SignResponse](ctx, plain, &wire.SignRequest{KeyID: "k", Data: []byte("m")}); err != nil {
		t.Errorf("sign from an ephemeral port: %v", err)
	}
	if _, err := listKeys(ctx, plain); err != nil {
		t.Errorf("list keys from an ephemeral port: %v", err)
	}
}

// TestUnixSocketMode: signerd's unix socket is its user's alone (every
// unix peer may provision, so its mode decides who), whatever the umask,
// and is removed at shutdown.
func TestUnixSocketMode(t *testing.T) {
	e := start(t)
	fi, err := os.Stat(e.addr.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: mode %v, want a socket of mode 0600", e.addr.Path, fi.Mode())
	}
	// Nothing of its making is left beside it.
	entries, _ := os.ReadDir(e.dir)
	for _, de := range entries {
		if strings.HasPrefix(de.Name(), ".s") {
			t.Errorf("left behind: %s", de.Name())
		}
	}
	if st := e.provision(e.dial(), e.keyringFor("k.age", newKey(t, "k", keyring.Ed25519))); st.State != wire.StateReady {
		t.Fatalf("provisioning over the unix socket: %+v", st)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(e.addr.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after shutdown the socket is still there: %v", err)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/keyring/keyringtest"
)

type keysOutput struct {
	Keys []struct {
		ID              string `json:"id"`
		Algorithm       string `json:"algorithm"`
		PublicKeyPEM    string `json:"public_key_pem"`
		EthereumAddress string `json:"ethereum_address"`
	} `json:"keys"`
}

// memIdentity is an age identity that stays in memory: its key file and
// the parsed forms.
func memIdentity(t *testing.T) (keyFile []byte, x *age.X25519Identity, id *keyring.Identity) {
	t.Helper()
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	keyFile = []byte("# public key: " + x.Recipient().String() + "\n" + x.String() + "\n")
	if id, err = keyring.ParseIdentity(keyFile); err != nil {
		t.Fatal(err)
	}
	return keyFile, x, id
}

func TestKeyringNew(t *testing.T) {
	_, x, id := memIdentity(t)
	_, backup, _ := memIdentity(t)
	dir := t.TempDir()
	rfile := filepath.Join(dir, "recipients.txt")
	if err := os.WriteFile(rfile, []byte("# offline backup\n\n"+backup.Recipient().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "keyring.age")
	code, stdout, stderr := signer(t, "", "keyring", "new", "--recipient", x.Recipient().String(), "--recipient-file", rfile,
		"--key", "edge:ed25519", "--key", "web.p256:ecdsa-p256", "--key", "payments:ecdsa-secp256k1", "--out", out)
	if code != 0 {
		t.Fatalf("keyring new: exit %d\n%s", code, stderr)
	}
	var got keysOutput
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("stdout is not the keys JSON: %v\n%s", err, stdout)
	}
	if strings.Contains(stdout, "PRIVATE KEY") || strings.Contains(stderr, "PRIVATE KEY") {
		t.Fatal("a private key appears in the output")
	}
	if !strings.Contains(stderr, "wrote 3 new keys to "+out+", encrypted to "+x.Recipient().String()+", "+backup.Recipient().String()) {
		t.Errorf("stderr:\n%s", stderr)
	}
	ct, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(ct, []byte("age-encryption.org/v1\n")) {
		t.Fatalf("keyring.age is not a binary age file: %q", ct[:min(len(ct), 30)])
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}

	set, err := keyring.Load(id, keyring.File{Name: "keyring.age", Ciphertext: ct})
	if err != nil {
		t.Fatalf("keyring.Load: %v", err)
	}
	defer set.Destroy()
	want := []struct{ id, alg string }{{"edge", "ed25519"}, {"web.p256", "ecdsa-p256"}, {"payments", "ecdsa-secp256k1"}}
	if len(got.Keys) != len(want) || set.Len() != len(want) {
		t.Fatalf("%d keys printed, %d loaded, want %d", len(got.Keys), set.Len(), len(want))
	}
	for i, w := range want {
		g := got.Keys[i]
		k, err := set.Key(w.id)
		if err != nil {
			t.Fatal(err)
		}
		if g.ID != w.id || g.Algorithm != w.alg || g.PublicKeyPEM != k.PublicKeyPEM() || g.EthereumAddress != k.EthereumAddress() {
			t.Errorf("printed key %d:\n got  %+v\n want %s %s %q %q", i, g, w.id, w.alg, k.PublicKeyPEM(), k.EthereumAddress())
		}
		if (w.alg == "ecdsa-secp256k1") != (g.EthereumAddress != "") {
			t.Errorf("key %s: ethereum_address %q", w.id, g.EthereumAddress)
		}
		keyringtest.TestSigner(t, k)
	}

	// The backup recipient can decrypt too (filippo.io/age in-process).
	r, err := age.Decrypt(bytes.NewReader(ct), backup)
	if err != nil {
		t.Fatalf("age.Decrypt with the --recipient-file identity: %v", err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.ParseKeyring("from backup", plain)
	clear(plain)
	if err != nil || len(kr.Keys()) != 3 {
		t.Fatalf("backup decrypt: %v", err)
	}
	kr.Destroy()

	// Never over an existing file without --force.
	code, _, stderr = signer(t, "", "keyring", "new", "--recipient", x.Recipient().String(), "--key", "a:ed25519", "--out", out)
	if code != 1 || !strings.Contains(stderr, "keyring.age already exists: not replacing it") {
		t.Fatalf("keyring new over an existing file: exit %d\n%s", code, stderr)
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(again, ct) {
		t.Fatal("the existing keyring changed")
	}
	if code, _, stderr = signer(t, "", "keyring", "new", "--recipient", x.Recipient().String(), "--key", "a:ed25519", "--out", out, "--force"); code != 0 {
		t.Fatalf("--force: exit %d\n%s", code, stderr)
	}
}

// TestKeyringNewAgeCLI decrypts keyrings with Debian's age CLI, binary and
// armored. The CLI needs an identity file: a throwaway test identity in
// t.TempDir() (the real one, from signer seal, never touches disk).
func TestKeyringNewAgeCLI(t *testing.T) {
	ageCLI, err := exec.LookPath("age")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("age not on PATH; CI must install it (apt-get install -y age): %v", err)
		}
		t.Skipf("age not on PATH (apt-get install -y age): %v", err)
	}
	_, x, _ := memIdentity(t)
	keyFile := ageKeyFile(x, time.Now()) // the key file format signer seal seals
	dir := t.TempDir()
	idFile := filepath.Join(dir, "throwaway-test-identity.txt")
	if err := os.WriteFile(idFile, keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, armored := range []bool{false, true} {
		out := filepath.Join(dir, "keyring.age")
		args := []string{"keyring", "new", "--recipient", x.Recipient().String(), "--key", "k1:ecdsa-secp256k1", "--key", "k2:ed25519", "--out", out, "--force"}
		if armored {
			args = append(args, "--armor")
		}
		if code, _, stderr := signer(t, "", args...); code != 0 {
			t.Fatalf("keyring new (armor %v): exit %d\n%s", armored, code, stderr)
		}
		ct, _ := os.ReadFile(out)
		if got := bytes.HasPrefix(ct, []byte(armor.Header)); got != armored {
			t.Errorf("armor header present = %v, want %v", got, armored)
		}
		cmd := exec.CommandContext(t.Context(), ageCLI, "-d", "-i", idFile, out)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("age -d (armor %v): %v\n%s", armored, err, stderr.String())
		}
		kr, err := keyring.ParseKeyring("age-cli", stdout.Bytes())
		clear(stdout.Bytes())
		if err != nil {
			t.Fatalf("keyring from the age CLI: %v", err)
		}
		if ks := kr.Keys(); len(ks) != 2 || ks[0].ID() != "k1" || ks[1].Algorithm() != keyring.Ed25519 {
			t.Errorf("keys from the age CLI: %v", ks)
		}
		kr.Destroy()
	}
}

func TestKeyringNewUsage(t *testing.T) {
	_, x, _ := memIdentity(t)
	r := x.Recipient().String()
	dir := t.TempDir()
	out := filepath.Join(dir, "k.age")
	idFile := filepath.Join(dir, "looks-like-identity.txt")
	// A syntactically valid but fake secret key line, to check it is never echoed.
	fakeSecret := "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
	if err := os.WriteFile(idFile, []byte("# created\n"+fakeSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, []byte("# nothing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{"--recipient", r, "--key", "a:ed25519"}, "--out FILE is required"},
		{"no key", []string{"--recipient", r, "--out", out}, "want at least one --key"},
		{"no recipient", []string{"--key", "a:ed25519", "--out", out}, "want --recipient age1"},
		{"duplicate id", []string{"--recipient", r, "--key", "a:ed25519", "--key", "a:ecdsa-p256", "--out", out}, `id "a" given twice`},
		{"bad id", []string{"--recipient", r, "--key", "a/b:ed25519", "--out", out}, "id: invalid character at position 2"},
		{"long id", []string{"--recipient", r, "--key", strings.Repeat("x", 65) + ":ed25519", "--out", out}, "65 bytes long"},
		{"no algorithm", []string{"--recipient", r, "--key", "payments", "--out", out}, "want ID:ALGORITHM"},
		{"bad algorithm", []string{"--recipient", r, "--key", "a:rsa", "--out", out}, `unknown algorithm "rsa", want one of ed25519, ecdsa-p256, ecdsa-secp256k1`},
		{"positional", []string{"--recipient", r, "--key", "a:ed25519", "--out", out, "b:ed25519"}, `unexpected argument "b:ed25519"`},
		{"bad recipient", []string{"--recipient", "age1nope", "--key", "a:ed25519", "--out", out}, "malformed age X25519 recipient"},
		{"not a recipient", []string{"--recipient", "ssh-ed25519 AAAA", "--key", "a:ed25519", "--out", out}, "is not an age recipient"},
		{"pq recipient", []string{"--recipient", "age1pq1" + strings.Repeat("q", 60), "--key", "a:ed25519", "--out", out}, "post-quantum recipients"},
		{"secret as recipient", []string{"--recipient", fakeSecret, "--key", "a:ed25519", "--out", out}, "this is an age identity (a secret key)"},
		{"identity as recipient file", []string{"--recipient-file", idFile, "--key", "a:ed25519", "--out", out}, "line 2: this is an age identity"},
		{"empty recipient file", []string{"--recipient-file", empty, "--key", "a:ed25519", "--out", out}, "no recipients found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := signer(t, "", append([]string{"keyring", "new"}, tc.args...)...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 with %q", code, stdout, stderr, tc.want)
			}
			if strings.Contains(stderr, fakeSecret[16:]) {
				t.Fatalf("the secret key is echoed:\n%s", stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("--out written despite the usage error")
			}
		})
	}
	if code, _, _ := signer(t, "", "keyring"); code != 2 {
		t.Errorf("signer keyring: exit %d, want 2", code)
	}
}

// TestSealThenKeyringNew is the operator flow: seal an identity, make a
// keyring to the recipient seal printed, and (as the enclave would, here
// as the default principal) decrypt the identity and load the keyring.
func TestSealThenKeyringNew(t *testing.T) {
	setAWSTestEnv(t)
	k := newTestKMS(t)
	keyID := k.createKey(t, "")
	dir := t.TempDir()
	sealed, ring := filepath.Join(dir, "identity.enc"), filepath.Join(dir, "keyring.age")
	code, recipient, stderr := signer(t, "", "seal", "--key-id", keyID, "--endpoint-url", k.url, "--out", sealed)
	if code != 0 {
		t.Fatalf("seal: exit %d\n%s", code, stderr)
	}
	recipient = strings.TrimSpace(recipient)
	if code, _, stderr := signer(t, "", "keyring", "new", "--recipient", recipient, "--key", "payments:ecdsa-secp256k1", "--out", ring, "--armor"); code != 0 {
		t.Fatalf("keyring new: exit %d\n%s", code, stderr)
	}
	blob, _ := os.ReadFile(sealed)
	dec, err := k.client("test", "test").Decrypt(t.Context(), &kms.DecryptInput{CiphertextBlob: blob})
	if err != nil {
		t.Fatal(err)
	}
	id, err := keyring.ParseIdentity(dec.Plaintext)
	clear(dec.Plaintext)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := os.ReadFile(ring)
	set, err := keyring.Load(id, keyring.File{Name: "keyring.age", Ciphertext: ct})
	if err != nil {
		t.Fatalf("loading the keyring with the unsealed identity: %v", err)
	}
	defer set.Destroy()
	key, err := set.Key("payments")
	if err != nil {
		t.Fatal(err)
	}
	keyringtest.TestSigner(t, key)
}

// TestKeyringNewClients makes a policed keyring: clients with secrets in
// their own files (mode 0600), per-key policies, parsed back as asked.
func TestKeyringNewClients(t *testing.T) {
	_, x, id := memIdentity(t)
	dir := t.TempDir()
	out, secrets := filepath.Join(dir, "pay.age"), filepath.Join(dir, "secrets")
	args := []string{"keyring", "new", "--recipient", x.Recipient().String(), "--out", out, "--id", "pay", "--version", "3",
		"--key", "k1:ed25519", "--key", "k2:ecdsa-secp256k1", "--key", "spare:ecdsa-p256",
		"--audience", "payments-prod", "--client", "app1", "--client", "app2", "--client-secret-dir", secrets,
		"--client-rate", "app1=10/s,burst=20", "--allow", "k1=app1", "--allow", "k2=app2,app1", "--kinds", "k2=digest",
		"--key-rate", "k1=0.5/s", "--max-message", "k1=4096"}
	code, stdout, stderr := signer(t, "", args...)
	if code != 0 {
		t.Fatalf("keyring new: exit %d\n%s", code, stderr)
	}
	var got keysOutput
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || len(got.Keys) != 3 {
		t.Fatalf("stdout: %v\n%s", err, stdout)
	}
	if fi, err := os.Stat(secrets); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("secret dir: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
	files := map[string][]byte{}
	for _, c := range []string{"app1", "app2"} {
		p := filepath.Join(secrets, c+".secret")
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
		b, _ := os.ReadFile(p)
		if len(b) != 65 || b[64] != '\n' || strings.Trim(string(b[:64]), "0123456789abcdef") != "" {
			t.Fatalf("%s is not 64 lowercase hex digits and a newline (%d bytes)", p, len(b))
		}
		if strings.Contains(stdout+stderr, string(b[:64])) || strings.Contains(stdout+stderr, string(b[10:30])) {
			t.Fatalf("the secret of %s is printed", c)
		}
		if !strings.Contains(stderr, "client "+c+": secret written to "+p+" (mode 0600)") {
			t.Errorf("stderr doesn't say where %s's secret went:\n%s", c, stderr)
		}
		files[c] = b
	}
	if !strings.Contains(stderr, "warning: key spare has no --allow: no client may use it") {
		t.Errorf("no warning about the key without --allow:\n%s", stderr)
	}

	ct, _ := os.ReadFile(out)
	set, err := keyring.Load(id, keyring.File{Name: "pay.age", Ciphertext: ct})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Destroy()
	for c, b := range files {
		cl, ok := set.Client(c)
		if !ok {
			t.Fatalf("client %s not in the keyring", c)
		}
		sec, err := keyring.ParseClientSecretFile(b)
		if err != nil || len(cl.Secrets()) != 1 || !bytes.Equal(cl.Secrets()[0], sec) || cl.Audience != "payments-prod" {
			t.Errorf("client %s: %v, secret file matches: %v", c, cl, err == nil && bytes.Equal(cl.Secrets()[0], sec))
		}
	}
	if bytes.Equal(files["app1"], files["app2"]) {
		t.Error("two clients got the same secret")
	}
	if c, _ := set.Client("app1"); c.Rate == nil || *c.Rate != (keyring.Rate{PerSecond: 10, Burst: 20}) {
		t.Errorf("app1 rate %v", c.Rate)
	}
	if c, _ := set.Client("app2"); c.Rate != nil {
		t.Errorf("app2 rate %v, want none", c.Rate)
	}
	k1, _ := set.Key("k1")
	if p := k1.Policy(); p == nil || strings.Join(p.Clients, ",") != "app1" || strings.Join(p.Kinds, ",") != "message" ||
		p.Rate == nil || *p.Rate != (keyring.Rate{PerSecond: 0.5, Burst: 1}) || p.MaxMessageBytes != 4096 {
		t.Errorf("k1 policy %+v", p)
	}
	k2, _ := set.Key("k2")
	if p := k2.Policy(); p == nil || strings.Join(p.Clients, ",") != "app2,app1" || strings.Join(p.Kinds, ",") != "digest" || p.Rate != nil || p.MaxMessageBytes != 0 {
		t.Errorf("k2 policy %+v", p)
	}
	if err := k2.Authorize("app2", keyring.KindDigest, 32); err != nil {
		t.Errorf("app2 on k2: %v", err)
	}
	if err := k1.Authorize("app2", keyring.KindMessage, 1); !errors.Is(err, keyring.ErrForbidden) {
		t.Errorf("app2 on k1: %v, want forbidden", err)
	}
	if spare, _ := set.Key("spare"); !spare.Policed() || spare.Policy() != nil {
		t.Error("spare has a policy")
	}

	// Never over an existing secret file, even with --force: a client may
	// be using it. Nothing changes.
	code, _, stderr = signer(t, "", append(args, "--force")...)
	if code != 1 || !strings.Contains(stderr, "app1.secret already exists: not replacing a client secret") {
		t.Fatalf("keyring new over existing secrets: exit %d\n%s", code, stderr)
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(again, ct) {
		t.Error("the keyring changed")
	}
	for c, b := range files {
		if again, _ := os.ReadFile(filepath.Join(secrets, c+".secret")); !bytes.Equal(again, b) {
			t.Errorf("%s's secret changed", c)
		}
	}

	// When the keyring can't be written, the secrets just written are
	// removed: they would belong to no keyring.
	other := filepath.Join(dir, "other")
	code, _, stderr = signer(t, "", "keyring", "new", "--recipient", x.Recipient().String(), "--out", filepath.Join(dir, "missing-dir", "k.age"),
		"--id", "k", "--version", "1", "--key", "a:ed25519", "--audience", "a", "--client", "c", "--client-secret-dir", other, "--allow", "a=c")
	if code != 1 {
		t.Fatalf("keyring new into a missing directory: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(other, "c.secret")); !os.IsNotExist(err) {
		t.Errorf("the secret of a keyring not written is left behind: %v", err)
	}
}

func TestKeyringNewClientsUsage(t *testing.T) {
	_, x, _ := memIdentity(t)
	dir := t.TempDir()
	out, secrets := filepath.Join(dir, "k.age"), filepath.Join(dir, "secrets")
	base := []string{"--recipient", x.Recipient().String(), "--out", out, "--key", "k1:ed25519", "--key", "k2:ecdsa-p256"}
	v2 := append(slices.Clone(base), "--id", "pay", "--version", "1")
	full := append(slices.Clone(v2), "--audience", "prod", "--client", "app1", "--client-secret-dir", secrets)
	with := func(args []string, more ...string) []string { return append(slices.Clone(args), more...) }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"allow without client", with(v2, "--allow", "k1=app1"), "--allow, --kinds, --key-rate and --max-message need --client"},
		{"audience without client", with(v2, "--audience", "prod"), "--audience, --client-secret-dir and --client-rate need --client ID"},
		{"client in format 1", with(base, "--client", "app1", "--audience", "prod", "--client-secret-dir", secrets), "--client needs --id ID and --version N"},
		{"client without audience", with(v2, "--client", "app1", "--client-secret-dir", secrets), "--client needs --audience NAME"},
		{"client without secret dir", with(v2, "--client", "app1", "--audience", "prod"), "--client needs --client-secret-dir DIR"},
		{"bad audience", with(v2, "--client", "app1", "--audience", "pay prod", "--client-secret-dir", secrets), "--audience: invalid character at position 4"},
		{"bad client id", with(full, "--client", "a/b"), `--client "a/b": id: invalid character at position 2`},
		{"client twice", with(full, "--client", "app1"), `--client "app1" given twice`},
		{"client rate unknown client", with(full, "--client-rate", "app9=1/s"), `--client-rate "app9=1/s": no client "app9" in this keyring`},
		{"client rate bad", with(full, "--client-rate", "app1=10"), `--client-rate app1: "10": no /s`},
		{"client rate no value", with(full, "--client-rate", "app1"), `--client-rate "app1": want CLIENT=VALUE`},
		{"client rate twice", with(full, "--client-rate", "app1=1/s", "--client-rate", "app1=2/s"), `--client-rate: client "app1" given twice`},
		{"allow unknown key", with(full, "--allow", "k9=app1"), `--allow "k9=app1": no key "k9" in this keyring`},
		{"allow unknown client", with(full, "--allow", "k1=app1,app9"), `--allow k1=app1,app9: "app9" is not a --client of this keyring`},
		{"allow client twice", with(full, "--allow", "k1=app1,app1"), `client "app1" listed twice`},
		{"allow empty client", with(full, "--allow", "k1=app1,"), `"" is not a --client`},
		{"allow key twice", with(full, "--allow", "k1=app1", "--allow", "k1=app1"), `--allow: key "k1" given twice, want one --allow per key`},
		{"kinds without allow", with(full, "--kinds", "k2=digest"), `--kinds k2: key "k2" has no --allow`},
		{"key rate without allow", with(full, "--key-rate", "k2=1/s"), `--key-rate k2: key "k2" has no --allow`},
		{"max message without allow", with(full, "--max-message", "k2=10"), `--max-message k2: key "k2" has no --allow`},
		{"unknown kind", with(full, "--allow", "k2=app1", "--kinds", "k2=message,typed"), `unknown kind "typed", want message or digest`},
		{"digest on ed25519", with(full, "--allow", "k1=app1", "--kinds", "k1=digest"), "k1 is ed25519, which signs whole messages only"},
		{"kind twice", with(full, "--allow", "k2=app1", "--kinds", "k2=digest,digest"), `kind "digest" listed twice`},
		{"key rate bad", with(full, "--allow", "k1=app1", "--key-rate", "k1=5/s,burst=0"), "--key-rate k1: \"5/s,burst=0\": burst is 0, want 1 to 1000000"},
		{"key rate fraction", with(full, "--allow", "k1=app1", "--key-rate", "k1=0.0001/s"), "4 digits after the decimal point, want at most 3"},
		{"max message zero", with(full, "--allow", "k1=app1", "--max-message", "k1=0"), "--max-message k1=0: want a number of bytes from 1 to 1048576"},
		{"max message huge", with(full, "--allow", "k1=app1", "--max-message", "k1=2000000"), "want a number of bytes from 1 to 1048576"},
		{"max message text", with(full, "--allow", "k1=app1", "--max-message", "k1=4k"), "want a number of bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := signer(t, "", append([]string{"keyring", "new"}, tc.args...)...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 with %q", code, stdout, stderr, tc.want)
			}
			for _, p := range []string{out, secrets} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Fatalf("%s written despite the usage error", p)
				}
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/transport"
	"github.com/enclave-signer/enclave-signer/internal/wire"
)

func TestWireError(t *testing.T) {
	var logs bytes.Buffer
	d := &daemon{log: slog.New(slog.NewJSONHandler(&logs, nil))}
	tests := []struct {
		name string
		err  error
		code wire.Code
		msg  string
	}{
		{"wire error passes", wire.NewError(wire.CodeUnsupported, "x"), wire.CodeUnsupported, "x"},
		{"not ready", fmt.Errorf("%w: state is waiting", errNotReady), wire.CodeNotReady, "state is waiting"},
		{"invalid request", fmt.Errorf("%w: key_id is empty", errInvalidRequest), wire.CodeInvalidRequest, "key_id is empty"},
		{"unknown key", fmt.Errorf("%w \"k\"", keyring.ErrUnknownKey), wire.CodeUnknownKey, `unknown key "k"`},
		{"digest not allowed", fmt.Errorf("key \"e\": %w", keyring.ErrDigestNotAllowed), wire.CodeDigestNotAllowed, `key "e": digest not allowed for this algorithm`},
		{"invalid digest", fmt.Errorf("key \"p\": %w: got 3 bytes", keyring.ErrInvalidDigest), wire.CodeInvalidDigest, "got 3 bytes"},
		{"destroyed", fmt.Errorf("key \"p\": %w", keyring.ErrDestroyed), wire.CodeNotReady, "shutting down"},
		{"cancelled", fmt.Errorf("waiting: %w", context.Canceled), wire.CodeInternal, "request cancelled"},
		{"anything else", errors.New("nsm ioctl: detail-for-the-log-only"), wire.CodeInternal, "internal error; see the enclave log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			err := d.wireError(&wire.AttestRequest{}, tt.err)
			var we *wire.Error
			if !errors.As(err, &we) || we.Code != tt.code || !strings.Contains(we.Message, tt.msg) {
				t.Fatalf("wireError(%v) = %#v\nwant code %s with message containing %q", tt.err, err, tt.code, tt.msg)
			}
			if strings.HasPrefix(we.Message, "not ready:") || strings.HasPrefix(we.Message, "invalid request:") {
				t.Errorf("message %q repeats the code", we.Message)
			}
			logged := strings.Contains(logs.String(), "detail-for-the-log-only")
			if internal := tt.name == "anything else"; logged != internal || strings.Contains(we.Message, "detail") {
				t.Errorf("internal=%v: logged=%v, message %q; want the detail logged, not sent", internal, logged, we.Message)
			}
		})
	}
}

func TestRunStartupErrors(t *testing.T) {
	dir := t.TempDir()
	sock := "unix://" + filepath.Join(dir, "s.sock")
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	type test struct {
		name string
		args []string
		want string
	}
	tests := []test{
		{"kms-ca missing", []string{"--listen", sock, "--attestation", "simulated", "--kms-ca", filepath.Join(dir, "none.pem")}, "--kms-ca"},
		{"kms-ca not PEM", []string{"--listen", sock, "--attestation", "simulated", "--kms-ca", notPEM}, "no PEM CERTIFICATE"},
		{"bad sim PCR", []string{"--listen", sock, "--attestation", "simulated", "--sim-pcr", "0=abc"}, "--sim-pcr"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
	}
	if _, err := os.Stat("/dev/nsm"); err != nil {
		// Outside an enclave the default mode fails before it listens, and
		// says what to do. (Inside one it would start serving.)
		tests = append(tests, test{"no NSM", []string{"--listen", sock}, "--attestation simulated"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(t.Context(), tt.args, nil, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run(%q) = %v, want an error naming %s", tt.args, err, tt.want)
			}
		})
	}
	if err := run(t.Context(), []string{"-h"}, nil, &bytes.Buffer{}); err != nil {
		t.Errorf("-h: %v", err)
	}
}

func TestListenSocketFile(t *testing.T) {
	dir := t.TempDir()
	addr := transport.Addr{Scheme: transport.Unix, Path: filepath.Join(dir, "s.sock")}
	// A socket file left by a process that died: removed, then listened on.
	stale, err := net.Listen("unix", addr.Path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ln, err := listen(t.Context(), addr)
	if err != nil {
		t.Fatalf("stale socket file: %v", err)
	}
	// A live one is left alone.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := listen(ctx, addr); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("live socket: %v, want an error saying another process serves it", err)
	}
	ln.Close()
}

// loadSet builds a key set in memory for daemon-level tests.
func loadSet(t *testing.T, keys ...testKey) *keyring.Set {
	t.Helper()
	id, err := newIdentityPair()
	if err != nil {
		t.Fatal(err)
	}
	ident, err := keyring.ParseIdentity(identityFile(id))
	if err != nil {
		t.Fatal(err)
	}
	set, err := keyring.Load(ident, keyring.File{Name: "t.age", Ciphertext: sealKeyring(t, id.Recipient(), keyringJSON(keys...))})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestSignRetriesAfterSwap covers the window the swap test cannot aim at:
// a request loaded the old set, then a re-provisioning swapped it out and
// destroyed it before the signature. The request is served by the new set.
func TestSignRetriesAfterSwap(t *testing.T) {
	d := &daemon{log: slog.New(slog.DiscardHandler), state: wire.StateReady}
	oldSet, newSet := loadSet(t, newKey(t, "k", keyring.Ed25519)), loadSet(t, newKey(t, "k", keyring.ECDSAP256))
	d.set.Store(newSet)
	oldSet.Destroy()
	resp, err := d.signWith(oldSet, &wire.SignRequest{KeyID: "k", Data: []byte("m")})
	if err != nil || resp.Algorithm != string(keyring.ECDSAP256) {
		t.Fatalf("sign after the swap: %+v, %v; want a signature by the new set's key", resp, err)
	}
	// At shutdown the set is swapped for nil: not_ready, not an internal error.
	d.set.Store(nil)
	d.closed = true
	newSet.Destroy()
	_, err = d.signWith(newSet, &wire.SignRequest{KeyID: "k", Data: []byte("m")})
	if we := d.wireError(&wire.SignRequest{}, err); !errors.Is(we, wire.ErrNotReady) || !strings.Contains(we.Error(), "shutting down") {
		t.Errorf("sign on a destroyed set at shutdown: %v, want not_ready: shutting down", we)
	}
}

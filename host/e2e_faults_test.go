//go:build unix

package main

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// waitOutput waits until out contains want, or fails the test after bound.
func waitOutput(t *testing.T, out *lockedBuffer, want string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q after %s; output:\n%s", want, bound, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKMSEmulatorOutage: the real binary, sent SIGUSR1, refuses
// connections on its KMS address (as an unreachable KMS does) while the
// process and its keys live on; SIGUSR2 brings it back on the same
// address with the same keys.
func TestKMSEmulatorOutage(t *testing.T) {
	bin := builtBinaries(t)
	dir := t.TempDir()
	out := &lockedBuffer{}
	cmd := exec.Command(filepath.Join(bin, "signer"), "kms-emulator", "--listen", "127.0.0.1:0", "--state", filepath.Join(dir, "s.json"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("kms-emulator output:\n%s", out)
		}
	})
	waitOutput(t, out, "endpoint=", 10*time.Second)
	endpoint := endpointRE.FindStringSubmatch(out.String())[1]
	ctx := t.Context()
	c := kmsClient(endpoint, "test", "test", nil)
	key, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}

	cmd.Process.Signal(syscall.SIGUSR1)
	waitOutput(t, out, "KMS down on purpose (SIGUSR1)", 5*time.Second)
	_, err = net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "http://"), time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial during the outage: %v, want connection refused", err)
	}
	_, err = c.ListKeys(ctx, &kms.ListKeysInput{})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("ListKeys during the outage: %v, want connection refused", err)
	}

	cmd.Process.Signal(syscall.SIGUSR2)
	waitOutput(t, out, "KMS back (SIGUSR2)", 5*time.Second)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d, err := c.DescribeKey(dctx, &kms.DescribeKeyInput{KeyId: key.KeyMetadata.KeyId})
	if err != nil || aws.ToString(d.KeyMetadata.KeyId) != aws.ToString(key.KeyMetadata.KeyId) {
		t.Fatalf("DescribeKey after the outage: %v", err)
	}
	// A second SIGUSR2 changes nothing.
	cmd.Process.Signal(syscall.SIGUSR2)
	time.Sleep(100 * time.Millisecond)
	if _, err := c.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
		t.Fatalf("after a second SIGUSR2: %v", err)
	}
	if cmd.ProcessState != nil {
		t.Fatalf("the emulator exited: %v", cmd.ProcessState)
	}
}

package main

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFallbackRoots runs this test binary again where the system has no
// CA certificates, as in the shim's FROM scratch image: the AWS SDK's TLS
// must still find roots, those compiled into signer (roots.go), among
// them Amazon's, which S3, STS and KMS chain to.
func TestFallbackRoots(t *testing.T) {
	if os.Getenv("SIGNER_TEST_NO_SYSTEM_ROOTS") == "1" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			t.Fatalf("no system roots and no fallback: %v", err)
		}
		var amazon, all int
		//lint:ignore SA1019 the pool is the fallback one, not a platform verifier's, so Subjects lists it
		for _, s := range pool.Subjects() {
			all++
			if strings.Contains(string(s), "Amazon Root CA 1") {
				amazon++
			}
		}
		if all < 100 || amazon != 1 {
			t.Fatalf("roots without a system bundle: %d, Amazon Root CA 1 %d times: want the compiled-in set", all, amazon)
		}
		return
	}
	empty := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFallbackRoots$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "SIGNER_TEST_NO_SYSTEM_ROOTS=1",
		"SSL_CERT_FILE="+filepath.Join(empty, "none.pem"), "SSL_CERT_DIR="+empty)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestFallbackRoots") {
		t.Fatalf("with no system roots: %v\n%s", err, out)
	}
}

package main

// The shim's image is FROM scratch (Dockerfile.shim), without a CA bundle,
// and the AWS SDK verifies the S3, STS and KMS endpoints with the system's
// roots. This makes the Mozilla roots compiled into the binary
// (golang.org/x/crypto/x509roots, which signerd's KMS client also carries)
// crypto/x509's fallback: used only when the system has no roots, so a
// host's own bundle (and SSL_CERT_FILE, SSL_CERT_DIR) still decide where
// there is one.
import _ "golang.org/x/crypto/x509roots/fallback"

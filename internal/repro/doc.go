// Package repro holds the tests that keep the enclave image and the
// deployment files honest: the image built from two clean `git archive`
// copies of HEAD has the same signerd bytes and the same image id
// (TestReproducibleImage, which needs buildah), the Makefile's enclave
// targets run the nitro-cli and signer commands they promise, and every
// systemd unit, Kubernetes manifest and configuration example in deploy/
// and docs/ parses and agrees with the others (the port, CID, region and
// paths that the enclave, the proxy and the shim must share).
//
// It has no code of its own; docs/image.md describes the build it tests.
package repro

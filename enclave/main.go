// Command signerd is enclave-signer's daemon inside the Nitro Enclave. It
// attests with the Nitro Security Module, asks KMS (through the parent's
// vsock-proxy, with TLS ending here) to decrypt the sealed age identity to
// its own attested key, unlocks the age-encrypted keyrings in memory and
// serves signing requests to the host over vsock.
//
// See [Config] for the flags.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "signerd: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	_ = ctx
	_ = cfg
	// Serving (provisioning, unsealing, signing) lands with the signing-path
	// issue; until then signerd only validates its configuration.
	return fmt.Errorf("serving is not implemented yet (configuration %v is valid)", cfg.Listen)
}

package client_test

import (
	"context"
	"fmt"
	"os"

	"github.com/enclave-signer/enclave-signer/internal/fakeenclave"
	"github.com/enclave-signer/enclave-signer/internal/wire"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// provisionRequest is a complete provision request, which the fake
// enclave takes without unsealing anything.
func provisionRequest() *wire.ProvisionRequest {
	return &wire.ProvisionRequest{
		Region:             "eu-west-1",
		Credentials:        wire.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"},
		IdentityCiphertext: []byte("sealed"),
		Keyrings:           []wire.SealedKeyring{{Name: "k.age", Data: []byte("age")}},
	}
}

// provision brings the fake to state ready, as the shim would: through
// the internal client, since provisioning is no business of pkg/client.
func provision(ctx context.Context, fe *fakeenclave.Enclave) error {
	wc := wireclient.New(fe.Addr, nil)
	defer wc.Close()
	st, err := wc.Provision(ctx, provisionRequest())
	if err != nil {
		return err
	}
	if st.State != wire.StateReady {
		return fmt.Errorf("fake enclave: state %s after provisioning, want ready", st.State)
	}
	return nil
}

// exampleEnclave starts a provisioned fake enclave for the examples and
// returns its address (unix:///…) and a function that stops it.
func exampleEnclave() (string, func()) {
	fe, err := fakeenclave.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := provision(context.Background(), fe); err != nil {
		fe.Close()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return fe.Addr.String(), fe.Close
}

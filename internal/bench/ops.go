package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
)

// NewKey returns a fresh key of algorithm alg, generated in memory and
// never written anywhere, for measuring in-process signing. destroy wipes
// it.
func NewKey(alg keyring.Algorithm) (key *keyring.Key, destroy func(), err error) {
	pemBytes, err := keyring.Generate(alg)
	if err != nil {
		return nil, nil, err
	}
	defer clear(pemBytes)
	// The keyring JSON is built by hand around the PEM so that no copy of
	// it is left unwiped (a string conversion could not be cleared).
	var pt bytes.Buffer
	defer func() { clear(pt.Bytes()[:pt.Cap()]) }()
	pt.Grow(len(pemBytes)*2 + 128)
	pt.WriteString(`{"version":1,"keys":[{"id":"bench","algorithm":`)
	a, _ := json.Marshal(string(alg))
	pt.Write(a)
	pt.WriteString(`,"private_key_pem":"`)
	for _, c := range pemBytes {
		if c == '\n' {
			pt.WriteString(`\n`)
		} else {
			pt.WriteByte(c)
		}
	}
	pt.WriteString(`"}]}`)
	kr, err := keyring.ParseKeyring("bench (in memory)", pt.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("bench key: %w", err)
	}
	return kr.Keys()[0], kr.Destroy, nil
}

// SignInProcess signs msg with key: the enclave's own work for one
// request, without the protocol.
func SignInProcess(key *keyring.Key, msg []byte) Op {
	return func(context.Context, int) error {
		sig, err := key.SignMessage(msg)
		if err == nil && len(sig.Signature) == 0 {
			err = errors.New("empty signature")
		}
		return err
	}
}

// SignWire asks the enclave behind c to sign msg with key keyID, over the
// wire protocol.
func SignWire(c *wireclient.Client, keyID string, msg []byte) Op {
	return func(ctx context.Context, _ int) error {
		resp, err := c.SignMessage(ctx, keyID, msg)
		if err != nil {
			return err
		}
		if len(resp.Signature) == 0 {
			return fmt.Errorf("sign: key %s: the enclave answered an empty signature", keyID)
		}
		return nil
	}
}

// maxAnswer bounds how much of an HTTP answer is read.
const maxAnswer = 64 << 10

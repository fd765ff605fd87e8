// Package nsm talks to the Nitro Security Module from inside an enclave:
// attestation documents and PCR values, from the real /dev/nsm (Open) or
// from the simulator in package nsmsim, which satisfies Module unchanged.
// Only signerd (and tests and the development tools that stand in for it)
// asks the NSM for documents; verifying them is package attestation's job.
package nsm

import (
	"errors"
	"fmt"
	"io"

	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
)

// Module is the Nitro Security Module boundary. *nsm.Session (the real
// device through github.com/hf/nsm) satisfies it unchanged, and so does the
// simulator in package nsmsim.
type Module interface {
	Send(request.Request) (response.Response, error)
}

// Device is an open NSM: the real /dev/nsm session, which also reads
// entropy and must be closed.
type Device interface {
	Module
	io.Reader
	Close() error
}

// MaxFieldSize is the most bytes the NSM takes in each of an attestation
// request's public_key, user_data and nonce (attestation.MaxUserFieldSize,
// which a test keeps equal).
const MaxFieldSize = 1024

// AttestRequest is what an attestation document carries besides the
// enclave's measurements. Nil fields are sent as null and come back as CBOR
// null in the document.
type AttestRequest struct {
	// PublicKey is, for KMS, the DER SubjectPublicKeyInfo of an RSA-2048 key.
	PublicKey []byte
	UserData  []byte
	Nonce     []byte
}

// Attest asks the NSM for an attestation document.
func Attest(n Module, r AttestRequest) ([]byte, error) {
	for name, v := range map[string][]byte{"public_key": r.PublicKey, "user_data": r.UserData, "nonce": r.Nonce} {
		if len(v) > MaxFieldSize {
			return nil, fmt.Errorf("attest: %s is %d bytes, the NSM takes at most %d", name, len(v), MaxFieldSize)
		}
	}
	res, err := n.Send(&request.Attestation{PublicKey: r.PublicKey, UserData: r.UserData, Nonce: r.Nonce})
	if err != nil {
		return nil, fmt.Errorf("attest: NSM request: %w", err)
	}
	if res.Error != "" {
		return nil, fmt.Errorf("attest: NSM answered error %s", res.Error)
	}
	if res.Attestation == nil || len(res.Attestation.Document) == 0 {
		return nil, errors.New("attest: NSM answered without a document")
	}
	return res.Attestation.Document, nil
}

// DescribePCR returns the value of PCR index and whether it is locked.
func DescribePCR(n Module, index uint16) ([]byte, bool, error) {
	res, err := n.Send(&request.DescribePCR{Index: index})
	if err != nil {
		return nil, false, fmt.Errorf("describe PCR%d: NSM request: %w", index, err)
	}
	if res.Error != "" {
		return nil, false, fmt.Errorf("describe PCR%d: NSM answered error %s", index, res.Error)
	}
	if res.DescribePCR == nil {
		return nil, false, fmt.Errorf("describe PCR%d: NSM answered without a value", index)
	}
	return res.DescribePCR.Data, res.DescribePCR.Lock, nil
}

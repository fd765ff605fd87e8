package attestation

import (
	"errors"
	"fmt"
	"io"

	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
)

// NSM is the Nitro Security Module boundary. *nsm.Session (the real device
// through github.com/hf/nsm) satisfies it unchanged, and so does the
// simulator in package nsmsim.
type NSM interface {
	Send(request.Request) (response.Response, error)
}

// Device is an open NSM: the real /dev/nsm session, which also reads
// entropy and must be closed.
type Device interface {
	NSM
	io.Reader
	Close() error
}

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
func Attest(n NSM, r AttestRequest) ([]byte, error) {
	for name, v := range map[string][]byte{"public_key": r.PublicKey, "user_data": r.UserData, "nonce": r.Nonce} {
		if len(v) > MaxUserFieldSize {
			return nil, fmt.Errorf("attest: %s is %d bytes, the NSM takes at most %d", name, len(v), MaxUserFieldSize)
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
func DescribePCR(n NSM, index uint16) ([]byte, bool, error) {
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

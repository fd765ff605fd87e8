package attestation_test

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/internal/nsm/nsmsim"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// A relying party pins an enclave by its image (PCR0, from the reproducible
// build) and by the keys it holds (GET /v1/keys), and proves freshness with
// its own nonce (POST /v1/attestation). In production, Verify's zero
// VerifyOptions trusts the AWS Nitro root; here a simulated enclave stands
// in.
func ExampleDocument_Check() {
	keysJSON, _ := os.ReadFile("testdata/keyset-vector.json") // GET /v1/keys
	keys, err := attestation.ParseKeyListJSON(keysJSON)
	if err != nil {
		panic(err)
	}

	// The enclave's side: signerd attests its key set in user_data.
	ca, _ := nsmsim.NewCA(time.Now())
	sim, _ := nsmsim.New(nsmsim.Options{CA: ca})
	digest, _ := attestation.KeySetDigest(keys.Keys)
	userData, _ := (&attestation.UserData{KeySet: digest}).Marshal()
	nonce := []byte("relying party nonce 42")
	raw, _ := nsm.Attest(sim, nsm.AttestRequest{UserData: userData, Nonce: nonce})

	// The relying party's side.
	pcr0 := sim.PCR(0) // in production: the PCR0 your build of the image prints
	doc, err := attestation.Verify(raw, attestation.VerifyOptions{Roots: ca.Roots(), MaxAge: 5 * time.Minute})
	if err != nil {
		panic(err)
	}
	err = doc.Check(attestation.Expect{PCRs: map[int][]byte{0: pcr0}, Nonce: nonce, Keys: keys})
	fmt.Println("pinned enclave:", err == nil)

	keys.Keys[0].SPKI[20] ^= 1 // the host serves one key that is not the enclave's
	err = doc.Check(attestation.Expect{PCRs: map[int][]byte{0: pcr0}, Nonce: nonce, Keys: keys})
	fmt.Println("swapped key refused:", errors.Is(err, attestation.ErrMismatch))
	// Output:
	// pinned enclave: true
	// swapped key refused: true
}

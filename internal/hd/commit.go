package hd

import "crypto/sha256"

// commitmentDomain separates RootCommitment's hash from every other use of
// SHA-256 in the project.
const commitmentDomain = "enclave-signer/hd/root-commitment/v1"

// RootCommitment is a public, binding commitment to a seed's root for one
// curve, for a key set digest to cover what the seed can derive:
//
//	SHA-256("enclave-signer/hd/root-commitment/v1" || 0x00 || curve name ||
//	        0x00 || ser_P(master public key) || master chain code)
//
// with the curve names "secp256k1", "P-256" and "ed25519" and ser_P as in
// Fingerprint (33 bytes). It is meant for ed25519, whose extended public
// key derives nothing and so should not be published as such; for
// secp256k1 and P-256 the root extended public key itself (XPub, or
// public key and chain code) is the natural commitment, and this function
// gives a fixed-size one for them too. The hash hides the chain code,
// which for ed25519 is worth nothing without the private key anyway.
// docs/hd.md has the rationale.
func (p *ExtendedPublicKey) RootCommitment() [32]byte {
	h := sha256.New()
	h.Write([]byte(commitmentDomain))
	h.Write([]byte{0})
	h.Write([]byte(p.curve.String()))
	h.Write([]byte{0})
	h.Write(p.pub[:])
	h.Write(p.chainCode[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

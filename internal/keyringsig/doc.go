// Package keyringsig encodes, signs and verifies the statements by which
// operators vouch for a keyring file, so that signerd loads only keyrings
// its pinned keyring signers signed, never decrypting anything else.
//
// # Statement and signature file
//
// A [Statement] names the keyring (id and version), its validity window,
// the age recipients it is encrypted to and the SHA-256 of the age file.
// Its bytes ([Statement.Marshal]) begin with [Tag] and have one fixed
// layout. Signers sign those bytes; the statement and its signatures
// travel as a small text file next to the keyring, KEYRING.sig ([Signed]).
// Both parsers ([ParseStatement], [ParseSigned]) are strict: whatever they
// accept, Marshal writes back byte for byte. docs/keyring.md is the
// specification, with a test vector.
//
// # Signers and pins
//
// A signer is ed25519 or ECDSA P-256 (a KMS ECC_NIST_P256 key signs with
// ECDSA_SHA_256): [Signer], [ParsePrivateKeyPEM]. signerd pins signers by
// their public key's text form, VALUE ([SignerKey]: ed25519:BASE64 or
// ecdsa-p256:BASE64 of the DER SubjectPublicKeyInfo).
//
// # Verification
//
// [Policy.Verify] checks a keyring file against its signature file with
// M-of-N distinct pinned signers, then the file's hash and the window;
// [CheckRecipients] and [CheckContent] check the statement against the
// identity and against the decrypted keyring; [Versions] refuses
// rollbacks. Refusals are [*Error], matched with errors.Is against
// [ErrSignature], [ErrExpired] and [ErrVersion].
package keyringsig

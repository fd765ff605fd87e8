// Package hd derives keys hierarchically and deterministically from one
// seed: BIP39 mnemonics (English) to seeds, SLIP-10 master keys and child
// derivation for secp256k1 (identical to BIP32), NIST P-256 and ed25519,
// derivation paths such as m/44'/60'/0'/0/7, public (xpub) derivation for
// the two Weierstrass curves, and BIP32's Base58Check serialization of
// extended keys for secp256k1.
//
// docs/hd.md describes the derivation exactly as implemented: which steps
// each curve allows, what is refused and why, and the commitment to a
// seed's root that an attested key set can carry.
//
// Secrets: seeds, mnemonics, private keys and chain codes live in byte
// slices or arrays the package owns or hands to the caller, who wipes them
// (Wipe, ExtendedKey.Destroy). No error, String, GoString, Format or
// LogValue of this package contains a secret or the input that carried one
// (a mnemonic, an xprv): errors say which word, byte or field was wrong
// and what was expected, never what it was. What the package cannot wipe
// is said where it happens (the standard library's HMAC and SHA-512 states,
// crypto/ecdh's and crypto/ed25519's internal copies, decred's stack
// temporaries).
package hd

// Package keyring turns age-encrypted keyrings into signers, and owns the
// lifetime of every plaintext secret on the way: the age identity, the
// decrypted keyring JSON and the private keys.
//
// # Flow
//
// [ParseIdentity] reads an age-keygen key file (X25519 identities only) held
// in memory. [DecryptKeyring] decrypts one age file, binary or ASCII-armored,
// into a bounded buffer ([MaxPlaintextSize]), parses it with [ParseKeyring]
// and wipes the buffer. [NewSet] (or [Load], which does both steps for
// several files) joins keyrings into an immutable [Set] whose key ids are
// unique across all of them. [Set.Key] finds a [Key]; [Key.SignMessage] and
// [Key.SignDigest] sign.
//
// # Keyring format
//
// The plaintext is JSON:
//
//	{"version": 1, "keys": [{"id": "payments", "algorithm": "ecdsa-secp256k1",
//	  "private_key_pem": "-----BEGIN EC PRIVATE KEY-----\n…"}]}
//
// Format 2 (version 2) also names the keyring and its version, which the
// signed statement about the keyring repeats (internal/keyringsig; signerd
// requires format 2 for signed keyrings):
//
//	{"version": 2, "keyring_id": "payments", "keyring_version": 3,
//	 "keys": [...]}
//
// keyring_id matches the key id charset; keyring_version is an unsigned
// 64-bit integer. Parsing is strict: exactly these fields, no duplicates,
// version 1 or 2 (keyring_id and keyring_version required in 2, refused
// in 1), at least one key. A key id matches [A-Za-z0-9._-]{1,64} (safe in URLs, file names
// and logs). The algorithm is one of [Ed25519], [ECDSAP256] or
// [ECDSASecp256k1]. private_key_pem holds PKCS#8 ("PRIVATE KEY") for every
// algorithm, or SEC1 ("EC PRIVATE KEY") for the ECDSA curves, optionally
// preceded by the "EC PARAMETERS" block that openssl ecparam -genkey writes;
// the key's type and curve must match the declared algorithm. Every failure
// is a [*ParseError] naming the keyring, the key index and id, and the field.
//
// # Clients and policy
//
// A format 2 keyring may declare clients, which makes it policed:
//
//	{"version": 2, "keyring_id": "payments", "keyring_version": 3,
//	 "audience": "payments-prod",
//	 "clients": [{"id": "app1", "secrets": ["<64 hex>", "<64 hex>"],
//	              "rate": {"per_second": 10, "burst": 20}}],
//	 "keys": [{"id": "k1", "algorithm": "ecdsa-secp256k1", "private_key_pem": "…",
//	           "policy": {"clients": ["app1"], "kinds": ["message", "digest"],
//	                      "rate": {"per_second": 0.5, "burst": 5},
//	                      "max_message_bytes": 4096}}]}
//
// Each key of a policed keyring may be used only by the clients its policy
// lists (a key without a policy by none), for the kinds it lists (all the
// algorithm signs when absent), within its rate and each client's rate
// (none when absent), with messages up to max_message_bytes. A keyring
// without clients is open: anyone may use its keys. [Client] holds a
// client's one or two 32-byte secrets, wiped by [Set.Destroy];
// [Key.Authorize] checks a request against the policy; rates are the
// caller's to enforce. docs/keyring.md describes every field and rule.
//
// # Signatures
//
//   - ed25519: pure RFC 8032 over the message, 64 bytes. A digest is refused
//     with [ErrDigestNotAllowed].
//   - ecdsa-p256: over SHA-256 of the message, or over a caller's 32-byte
//     digest; ASN.1 DER.
//   - ecdsa-secp256k1: as ecdsa-p256 (RFC 6979 deterministic nonces), DER with
//     low S, plus the recovery id (computed after low-S normalisation) and
//     the 65-byte r‖s‖v that go-ethereum's crypto.Sign returns.
//
// A digest of the wrong length is refused with [ErrInvalidDigest].
//
// # Concurrency
//
// A [Set] and its keys are immutable once built: any number of goroutines may
// sign at once without a lock. Callers replace a whole set atomically (for
// example with atomic.Pointer) and then [Set.Destroy] the old one, which waits
// for signatures in flight on it and then wipes its keys; later signing calls
// on the destroyed keys fail with [ErrDestroyed].
//
// # Secrets
//
// Types holding secrets ([Identity], [Key], [Client], [Keyring], [Set]) format as
// REDACTED (or with only public attributes) under fmt, including %#v and %x,
// and under log/slog. No error text carries key bytes, PEM text or identity
// text or client secrets; errors about ids quote the id only when it is
// well formed (client ids only when short, too).
//
// Wiping is best effort, and these are its limits:
//
//   - Buffers this package allocates (decrypted plaintext, decoded PEM and
//     DER, unescaped JSON strings, ed25519 private keys, the words of the
//     ecdsa-p256 scalar, the secp256k1 scalar, client secrets) are cleared
//     when no longer needed or on Destroy.
//   - Copies made inside other code can't be reached: age keeps its X25519
//     scalar unexported and decrypts through internal chunk buffers;
//     encoding/pem builds an intermediate copy of the base64 body; the
//     identity line becomes an immutable Go string when handed to age;
//     crypto/ed25519 and crypto/ecdsa cache an expanded form of each private
//     key internally (freed when the key becomes unreachable, never wiped);
//     math/big may have left copies of the P-256 scalar in freed memory.
//   - The garbage collector may have moved or copied any of these before
//     they were cleared.
package keyring

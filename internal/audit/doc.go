// Package audit is the audit trail's format and its verifier: what signerd
// records of every decision on a sign request, in a form the host stores
// but cannot rewrite unnoticed. docs/audit.md specifies every byte.
//
// Each enclave boot keeps one hash chain. Its entries ([Entry]) are
// numbered from 1 and each holds the hash of the one before (the first,
// [Genesis] of the boot's audit key); an entry's hash is SHA-256 of its
// canonical encoding ([Entry.AppendCanonical]), a fixed binary layout, not
// of its JSON. At least once a second while entries arrive, signerd signs
// a [Checkpoint] (the sequence number and chain hash) with the boot's
// audit key, an ed25519 key generated at boot, held in memory only and
// attested in the "audit" of its attestation documents' user_data. A
// [Head] is the chain's end signed together with a caller's nonce.
//
// The log is JSON Lines: per boot a [Boot] record (the audit key and an
// attestation document that attests it), then entries and checkpoints in
// chain order, each checkpoint right after the entry it covers.
// [ParseLine] reads a line strictly; [Verify] reads a whole log and tells
// each kind of damage apart ([Reason]): an edited line, a deleted one,
// moved ones, a cut tail, a chain re-signed with a key the enclave never
// attested.
//
// The package is in pkg/ rather than internal/ because the party that
// needs the verifier is often not the one running the host: an auditor or
// relying party checks a log (with the image's PCR0 and, for freshness, a
// head) in its own tooling, as it checks attestation documents with
// pkg/attestation.
package audit

package main

import (
	"fmt"

	"github.com/enclave-signer/enclave-signer/internal/keyring"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// attested returns the pins as every attestation document signerd makes
// for a caller carries them (the "pins" of its user_data map). Every
// field of Pins must appear here: TestEveryPinIsAttested fails on one
// that does not, so that no pin goes unattested.
func (p Pins) attested() attestation.Pins {
	a := attestation.Pins{KMSKeys: p.KMSKeyStrings(), RequireAuth: p.RequireAuth, AuditOverflow: p.AuditOverflow}
	if kp := p.KeyringPolicy(); kp.Pinned() {
		a.KeyringSigners, a.KeyringThreshold = kp.SignerStrings(), uint64(kp.M())
	}
	return a
}

// minCallerRoom is the least room for a caller's user_data signerd starts
// with: enough for a SHA-512 digest of whatever a caller wants bound to
// the document. Pins that leave less are refused at start, not on the
// first attestation.
const minCallerRoom = 64

// callerRoom returns how many bytes of caller user_data fit beside signerd's
// map with these pins and audit key, or an error when it is less than
// minCallerRoom.
func callerRoom(p attestation.Pins, auditSPKI []byte) (int, error) {
	u := attestation.UserData{KeySet: make([]byte, attestation.KeySetDigestSize), Pins: p, Audit: auditSPKI}
	room, err := u.CallerRoom()
	if err != nil {
		return 0, err
	}
	if room < minCallerRoom {
		return 0, fmt.Errorf("pins: %d KMS keys and %d keyring signers take too much of an attestation document's %d-byte user_data, leaving %d bytes for a caller's own (at least %d needed): pin fewer",
			len(p.KMSKeys), len(p.KeyringSigners), attestation.MaxUserFieldSize, max(room, 0), minCallerRoom)
	}
	return room, nil
}

// keySetDigest returns the digest signerd attests for set (nil: no keys).
func keySetDigest(set *keyring.Set) ([]byte, error) {
	infos := set.Keys()
	keys := make([]attestation.PublicKey, len(infos))
	for i, info := range infos {
		k, err := set.Key(info.ID)
		if err != nil {
			return nil, fmt.Errorf("key set digest: %w", err)
		}
		keys[i] = attestation.PublicKey{ID: info.ID, Algorithm: string(info.Algorithm), SPKI: k.PublicKeyDER()}
	}
	return attestation.KeySetDigest(keys)
}

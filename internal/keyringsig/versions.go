package keyringsig

import (
	"crypto/sha256"
	"encoding/hex"
)

// Accepted is the highest version of a keyring accepted so far, and the
// SHA-256 of its file.
type Accepted struct {
	Version    uint64
	FileSHA256 [sha256.Size]byte
}

// Versions remembers, for every keyring id, the highest version accepted,
// so that a lower one is refused: rollback protection for as long as the
// memory lives (in signerd, until it restarts; then the statements'
// windows are what retire old versions). Ids are never forgotten, also
// when a later provisioning drops them. The zero value is empty and ready;
// it is not safe for concurrent use (signerd provisions one at a time).
type Versions struct {
	accepted map[string]Accepted
}

// Check refuses (ErrVersion) a statement whose version is lower than the
// one accepted for its keyring id, or equal to it with another file.
func (v *Versions) Check(s *Statement) error {
	a, ok := v.accepted[s.KeyringID]
	switch {
	case !ok || s.Version > a.Version:
		return nil
	case s.Version < a.Version:
		return refuse(ErrVersion, "keyring %s version %d is lower than version %d, which this signerd has accepted: a rollback, refused until signerd restarts (then the statements' validity windows decide)",
			s.KeyringID, s.Version, a.Version)
	case s.FileSHA256 != a.FileSHA256:
		return refuse(ErrVersion, "keyring %s version %d was accepted with sha256 %s, and this file of the same version has sha256 %s: a changed keyring needs a new version",
			s.KeyringID, s.Version, hex.EncodeToString(a.FileSHA256[:]), hex.EncodeToString(s.FileSHA256[:]))
	}
	return nil
}

// Accept records s as accepted, if its version is the highest so far.
// Call it only once the keyring is loaded.
func (v *Versions) Accept(s *Statement) {
	if a, ok := v.accepted[s.KeyringID]; ok && a.Version >= s.Version {
		return
	}
	if v.accepted == nil {
		v.accepted = map[string]Accepted{}
	}
	v.accepted[s.KeyringID] = Accepted{Version: s.Version, FileSHA256: s.FileSHA256}
}

// Get returns what was accepted for the keyring id.
func (v *Versions) Get(keyringID string) (Accepted, bool) {
	a, ok := v.accepted[keyringID]
	return a, ok
}

// Len returns the number of keyring ids remembered.
func (v *Versions) Len() int { return len(v.accepted) }

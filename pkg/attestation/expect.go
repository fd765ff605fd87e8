package attestation

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Expect is what a relying party requires of a document beyond a valid
// signature: the image (PCRs), its own freshness (Nonce), and the keys the
// enclave holds (Keys). The zero value requires nothing.
type Expect struct {
	// PCRs maps a PCR index to the value it must have.
	PCRs map[int][]byte
	// Nonce, when non-nil, must equal the document's nonce.
	Nonce []byte
	// Keys, when non-nil, is the key set the document must attest: the
	// "keyset" of signerd's user_data map must be KeySetDigest(Keys.Keys).
	// It requires PCRs[0]: a key set means nothing without the image that
	// holds it.
	Keys *KeyList
	// AuditKey, when non-nil, is the audit key the document must attest:
	// the "audit" of signerd's user_data map must be these DER
	// SubjectPublicKeyInfo bytes. Like Keys it requires PCRs[0], and a
	// debug-mode document is refused without AllowDebug.
	AuditKey []byte
	// AllowDebug accepts a debug-mode document with Keys or AuditKey. Without it, such
	// a document is refused: its PCR0 is all zero, whatever image runs, so
	// the key set it attests proves nothing. For development only.
	AllowDebug bool
}

// Validate reports an expectation that cannot mean anything: Keys without
// a PCR0 to pin the image.
func (e Expect) Validate() error {
	if e.Keys != nil || e.AuditKey != nil {
		if _, ok := e.PCRs[0]; !ok {
			what := "key set"
			if e.Keys == nil {
				what = "audit key"
			}
			return fmt.Errorf("an expected %s needs an expected PCR0: a %s means nothing without the image that holds it", what, what)
		}
	}
	return nil
}

// Check checks a parsed document against e: the PCRs, then (with Keys) that
// the document is not debug-mode, then the nonce, then the key set. It does
// not verify the signature: call Verify first. An invalid e is Validate's
// error; every other error is an *Error of class ErrMismatch, ErrDebugMode
// or (user_data not signerd's map) ErrMalformed.
func (d *Document) Check(e Expect) error {
	if err := e.Validate(); err != nil {
		return err
	}
	idx := make([]int, 0, len(e.PCRs))
	for i := range e.PCRs {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		got, ok := d.PCRs[i]
		if !ok {
			return &Error{Class: ErrMismatch, Field: fmt.Sprintf("PCR%d", i), Detail: fmt.Sprintf("absent, expected %x", e.PCRs[i])}
		}
		if !bytes.Equal(got, e.PCRs[i]) {
			return &Error{Class: ErrMismatch, Field: fmt.Sprintf("PCR%d", i), Detail: fmt.Sprintf("is %x, expected %x", got, e.PCRs[i])}
		}
	}
	if (e.Keys != nil || e.AuditKey != nil) && d.DebugMode() && !e.AllowDebug {
		return &Error{Class: ErrDebugMode, Field: "pcrs", Detail: "PCR0, 1 and 2 are zero, so any image could have made this document and the keys it attests prove nothing; allow debug mode only in development"}
	}
	if e.Nonce != nil && !bytes.Equal(d.Nonce, e.Nonce) {
		got := "null"
		if d.Nonce != nil {
			got = hex.EncodeToString(d.Nonce)
		}
		return &Error{Class: ErrMismatch, Field: "nonce", Detail: fmt.Sprintf("is %s, expected %x", got, e.Nonce)}
	}
	if e.Keys != nil {
		if err := d.checkKeys(e.Keys); err != nil {
			return err
		}
	}
	if e.AuditKey != nil {
		return d.checkAuditKey(e.AuditKey)
	}
	return nil
}

// checkAuditKey compares the attested audit key with want (DER SPKI).
func (d *Document) checkAuditKey(want []byte) error {
	ud, err := d.SignerdUserData()
	if err != nil {
		return err
	}
	if ud.Audit == nil {
		return &Error{Class: ErrMismatch, Field: "audit key", Detail: "the document attests no audit key (its user_data has no \"audit\": a signerd without an audit trail)"}
	}
	if !bytes.Equal(ud.Audit, want) {
		return &Error{Class: ErrMismatch, Field: "audit key", Detail: fmt.Sprintf("the document attests audit key %x, expected %x", ud.Audit, want)}
	}
	return nil
}

func (d *Document) checkKeys(kl *KeyList) error {
	ud, err := d.SignerdUserData()
	if err != nil {
		return err
	}
	want, err := KeySetDigest(kl.Keys)
	if err != nil {
		return fmt.Errorf("expected key list: %w", err)
	}
	sorted := slices.Clone(kl.Keys)
	slices.SortFunc(sorted, func(a, b PublicKey) int { return strings.Compare(a.ID, b.ID) })
	if !bytes.Equal(ud.KeySet, want) {
		keys := fmt.Sprintf("%d keys", len(sorted))
		if len(sorted) == 1 {
			keys = "1 key"
		}
		detail := fmt.Sprintf("the document attests key set digest %x, the expected %s (%s) digest to %x: the enclave holds other keys (or other ids or algorithms)",
			ud.KeySet, keys, describeKeys(sorted), want)
		if kl.ClaimedDigest != nil && !bytes.Equal(kl.ClaimedDigest, want) {
			detail += fmt.Sprintf("; the key list's own keyset_digest %x does not match its keys either", kl.ClaimedDigest)
		}
		return &Error{Class: ErrMismatch, Field: "key set", Detail: detail}
	}
	if kl.ClaimedDigest != nil && !bytes.Equal(kl.ClaimedDigest, want) {
		return &Error{Class: ErrMismatch, Field: "key set", Detail: fmt.Sprintf("the key list's keyset_digest %x is not the digest of its keys (%x, which the document attests): the list was altered", kl.ClaimedDigest, want)}
	}
	return nil
}

package keyringsig

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The kinds of refusal; match them with errors.Is. signerd reports each
// under its own status.error.step.
var (
	// ErrSignature: no signature file, one that does not parse, too few
	// valid signatures of distinct pinned signers, a statement about
	// another file or other recipients, or a plaintext that contradicts
	// the statement (step keyring_signature).
	ErrSignature = errors.New("keyring signature refused")
	// ErrExpired: the time is outside the statement's window (step
	// keyring_expired).
	ErrExpired = errors.New("keyring outside its validity window")
	// ErrVersion: a lower version than one accepted before, or the same
	// version with another file (step keyring_version).
	ErrVersion = errors.New("keyring version refused")
)

// Error is a refusal: Kind is ErrSignature, ErrExpired or ErrVersion, and
// the message says what was wrong and how to fix it.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string        { return e.Msg }
func (e *Error) Is(target error) bool { return target == e.Kind }

func refuse(kind error, format string, a ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, a...)}
}

// Policy is who may vouch for a keyring: a signature of Threshold
// distinct Signers is required. The zero Policy pins nothing.
type Policy struct {
	Signers []SignerKey
	// Threshold is M, the number of distinct pinned signers whose valid
	// signatures a keyring needs; 0 means 1.
	Threshold int
}

// NewPolicy returns the policy of signers with threshold m (0: 1),
// checked: no signer twice, 1 ≤ m ≤ len(signers). With no signers, m
// must be 0.
func NewPolicy(signers []SignerKey, m int) (Policy, error) {
	p := Policy{Signers: signers, Threshold: m}
	return p, p.Validate()
}

// Validate checks the policy (see NewPolicy).
func (p Policy) Validate() error {
	for i, s := range p.Signers {
		if s.IsZero() {
			return fmt.Errorf("keyring signer %d: no key", i+1)
		}
		for _, o := range p.Signers[:i] {
			if o.Equal(s) {
				return fmt.Errorf("keyring signer %s is pinned twice: each signer counts once towards the threshold", s)
			}
		}
	}
	switch {
	case len(p.Signers) == 0 && p.Threshold != 0:
		return fmt.Errorf("keyring threshold %d without any keyring signer: pin the signers (--keyring-signer) it counts", p.Threshold)
	case p.Threshold < 0 || p.Threshold > len(p.Signers):
		return fmt.Errorf("keyring threshold %d: want 1 to %d, the number of pinned keyring signers", p.Threshold, len(p.Signers))
	}
	return nil
}

// Pinned reports whether keyrings must be signed.
func (p Policy) Pinned() bool { return len(p.Signers) > 0 }

// M returns the threshold, 1 when unset.
func (p Policy) M() int { return max(p.Threshold, 1) }

// SignerStrings returns the pinned signers' VALUEs.
func (p Policy) SignerStrings() []string {
	out := make([]string, len(p.Signers))
	for i, s := range p.Signers {
		out[i] = s.String()
	}
	return out
}

func (p Policy) pinned(k SignerKey) bool {
	for _, s := range p.Signers {
		if s.Equal(k) {
			return true
		}
	}
	return false
}

// Verified is a statement whose signatures met the policy.
type Verified struct {
	Statement *Statement
	// Signers are the distinct pinned signers whose signatures verified.
	Signers []SignerKey
}

// Verify checks a keyring file against its signature file, in this
// order: the signature file parses; at least M distinct pinned signers
// signed its statement (signatures of other keys are ignored, and a
// signer appearing twice counts once); the statement's SHA-256 is the
// file's; now is within the statement's window. Only after the signatures
// verify is anything in the statement believed. It never looks inside the
// age file. Refusals are *Error (errors.Is ErrSignature or ErrExpired).
func (p Policy) Verify(file, sigFile []byte, now time.Time) (*Verified, error) {
	if !p.Pinned() {
		return nil, errors.New("keyring verify: no keyring signer pinned")
	}
	if len(sigFile) == 0 {
		return nil, refuse(ErrSignature, "no signature: want a signature file (KEYRING.sig, as signer keyring sign writes it) with the signature of %s", p.want())
	}
	f, err := ParseSigned(sigFile)
	if err != nil {
		return nil, refuse(ErrSignature, "%v", err)
	}
	v := &Verified{Statement: f.Statement}
	var unpinned, invalid, twice []string
	for _, s := range f.Signatures {
		switch {
		case !p.pinned(s.Signer):
			unpinned = append(unpinned, s.Signer.String())
		case contains(v.Signers, s.Signer):
			twice = append(twice, s.Signer.String())
		case !s.Signer.Verify(f.statement, s.Sig):
			invalid = append(invalid, s.Signer.String())
		default:
			v.Signers = append(v.Signers, s.Signer)
		}
	}
	if len(v.Signers) < p.M() {
		var why []string
		if len(f.Signatures) == 0 {
			why = append(why, "the signature file carries a statement but no signature")
		}
		if len(unpinned) > 0 {
			why = append(why, "signed by "+strings.Join(unpinned, ", ")+", not a pinned keyring signer")
		}
		if len(invalid) > 0 {
			why = append(why, "the signature of "+strings.Join(invalid, ", ")+" does not verify over the statement (altered, or made over another statement)")
		}
		if len(twice) > 0 {
			why = append(why, "a second signature of "+strings.Join(twice, ", ")+" counts once")
		}
		valid := fmt.Sprintf("%d valid signatures", len(v.Signers))
		if len(v.Signers) == 1 {
			valid = "1 valid signature"
		}
		return nil, refuse(ErrSignature, "%s of distinct pinned keyring signers, want %s: %s",
			valid, p.want(), strings.Join(why, "; "))
	}
	if h := sha256.Sum256(file); h != f.Statement.FileSHA256 {
		return nil, refuse(ErrSignature, "the signed statement is about another file: its sha256 is %s, this file's %s (the keyring was changed after it was signed, or the signature file belongs to another keyring)",
			hex.EncodeToString(f.Statement.FileSHA256[:]), hex.EncodeToString(h[:]))
	}
	if err := CheckWindow(f.Statement, now); err != nil {
		return nil, err
	}
	return v, nil
}

// CheckWindow refuses (ErrExpired) a time outside the statement's window.
func CheckWindow(s *Statement, now time.Time) error {
	switch {
	case now.Before(s.NotBefore):
		return refuse(ErrExpired, "keyring %s version %d is valid from %s, and it is %s: not yet valid (a clock ahead on the signer's machine? sign it with an earlier --not-before)",
			s.KeyringID, s.Version, formatTime(s.NotBefore), formatTime(now))
	case now.After(s.NotAfter):
		return refuse(ErrExpired, "keyring %s version %d was valid until %s, and it is %s: expired (sign it again with a new window, signer keyring sign --not-after)",
			s.KeyringID, s.Version, formatTime(s.NotAfter), formatTime(now))
	}
	return nil
}

// CheckRecipients refuses (ErrSignature) a statement that lists none of
// the recipients (those of the identity that is to decrypt the keyring):
// the operators vouched for this keyring for someone else.
func CheckRecipients(s *Statement, recipients []string) error {
	for _, r := range recipients {
		if s.HasRecipient(r) {
			return nil
		}
	}
	return refuse(ErrSignature, "the signed statement says keyring %s version %d is encrypted to %s, and this enclave's identity is %s: it was signed for another identity",
		s.KeyringID, s.Version, strings.Join(s.Recipients, ", "), strings.Join(recipients, ", "))
}

// CheckContent refuses (ErrSignature) a keyring whose plaintext names
// another keyring id or version than the statement: operators signed the
// file as something it is not (say, an old version under a new number).
func CheckContent(s *Statement, keyringID string, version uint64) error {
	if keyringID != s.KeyringID || version != s.Version {
		return refuse(ErrSignature, "the keyring's plaintext is keyring %s version %d, but the signed statement says keyring %s version %d",
			quoteID(keyringID), version, s.KeyringID, s.Version)
	}
	return nil
}

func (p Policy) want() string {
	if p.M() == 1 && len(p.Signers) == 1 {
		return "the pinned keyring signer " + p.Signers[0].String()
	}
	if p.M() == 1 {
		return "one of the pinned keyring signers " + strings.Join(p.SignerStrings(), ", ")
	}
	return fmt.Sprintf("%d of the pinned keyring signers %s", p.M(), strings.Join(p.SignerStrings(), ", "))
}

func contains(ks []SignerKey, k SignerKey) bool {
	for _, o := range ks {
		if o.Equal(k) {
			return true
		}
	}
	return false
}

// quoteID shows a keyring id from a plaintext only if it is well formed.
func quoteID(id string) string {
	if CheckID(id) != nil {
		return fmt.Sprintf("(malformed id, %d bytes)", len(id))
	}
	return id
}

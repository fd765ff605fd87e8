package attestation

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/fxamacker/cbor/v2"
)

// UserDataVersion is the "v" of the user_data map this package writes and
// reads. Keys added later keep it; a map with another "v" is refused.
const UserDataVersion = 1

// UserData is the map signerd writes into the user_data of every
// attestation document it makes for a caller, so that the document, signed
// by the NSM, says which keys the enclave holds and whom it takes them
// from. A caller's own user_data goes inside, under "caller": a document's
// user_data is not the caller's alone.
//
// Encoded, it is a CBOR map in core deterministic encoding (RFC 8949
// §4.2.1) with text keys, in this order (bytewise order of the encoded
// keys):
//
//	"v":      1
//	"pins":   {"kms_keys": [tstr…], "keyring_signers": [tstr…], "keyring_threshold": uint,
//	           "require_auth": true, only when set,
//	           "audit_overflow": tstr, only when set}
//	"audit":  bstr, the DER SubjectPublicKeyInfo of the ed25519 key that signs
//	          this boot's audit trail (docs/audit.md); absent from older signerds
//	"caller": bstr, only when the caller gave non-empty user_data
//	"keyset": bstr, 48 bytes (KeySetDigest)
//
// An unpinned signerd writes empty arrays and a threshold of 0.
type UserData struct {
	// KeySet is KeySetDigest of the keys loaded when the document was made.
	KeySet []byte
	// Pins are the KMS keys and keyring signers signerd was started with.
	Pins Pins
	// Audit is the DER SubjectPublicKeyInfo of signerd's audit key, an
	// ed25519 key it generated at boot and holds in memory only: every
	// checkpoint of this boot's audit trail is signed with it. nil from a
	// signerd without an audit trail.
	Audit []byte
	// Caller is the caller's user_data; nil (or empty) when it gave none.
	Caller []byte
}

// AuditKey returns the audit key of u.Audit; nil when there is none.
func (u *UserData) AuditKey() ed25519.PublicKey {
	if u.Audit == nil {
		return nil
	}
	k, err := ParseAuditKey(u.Audit)
	if err != nil {
		return nil // ParseUserData checked it
	}
	return k
}

// ParseAuditKey reads an audit key: the DER SubjectPublicKeyInfo of an
// ed25519 public key, and nothing else.
func ParseAuditKey(spki []byte) (ed25519.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return nil, fmt.Errorf("want the DER SubjectPublicKeyInfo of an ed25519 key: %w", err)
	}
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, want ed25519", pub)
	}
	if again, err := x509.MarshalPKIXPublicKey(k); err != nil || !bytes.Equal(again, spki) {
		return nil, fmt.Errorf("not in its one DER form")
	}
	return k, nil
}

// MarshalAuditKey encodes an audit key as user_data's "audit" holds it.
func MarshalAuditKey(k ed25519.PublicKey) ([]byte, error) {
	if len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("audit key: %d bytes, want %d", len(k), ed25519.PublicKeySize)
	}
	return x509.MarshalPKIXPublicKey(k)
}

// Pins are what signerd accepts its keys from, fixed at start in a way
// PCR0 measures. Empty slices and a zero threshold mean unpinned.
type Pins struct {
	// KMSKeys are the KMS key ARNs signerd accepts its identity from.
	KMSKeys []string
	// KeyringSigners are the public keys of the keyring signers, as
	// `signer keyring signer-key` prints them.
	KeyringSigners []string
	// KeyringThreshold is how many of KeyringSigners must sign a keyring;
	// 0 when no keyring signer is pinned.
	KeyringThreshold uint64
	// RequireAuth: signerd refuses, at provisioning, a keyring that
	// declares no clients (--require-auth).
	RequireAuth bool
	// AuditOverflow is what signerd does when its audit buffer is full:
	// "" refuses to sign (fail closed, the default), "drop" records a gap
	// entry and signs on (docs/audit.md).
	AuditOverflow string
}

// Unpinned reports whether no pin is set.
func (p Pins) Unpinned() bool {
	return len(p.KMSKeys) == 0 && len(p.KeyringSigners) == 0 && p.KeyringThreshold == 0 && !p.RequireAuth && p.AuditOverflow == ""
}

// Equal reports whether p and q pin the same keys and signers, in any
// order, with the same threshold, require_auth and audit overflow.
func (p Pins) Equal(q Pins) bool {
	return p.KeyringThreshold == q.KeyringThreshold && p.RequireAuth == q.RequireAuth && p.AuditOverflow == q.AuditOverflow &&
		sameSet(p.KMSKeys, q.KMSKeys) && sameSet(p.KeyringSigners, q.KeyringSigners)
}

func sameSet(a, b []string) bool {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(a, b)
}

// The encoded form. Field order does not matter: the encoder sorts keys.
type userDataCBOR struct {
	V      uint64   `cbor:"v"`
	KeySet []byte   `cbor:"keyset"`
	Pins   pinsCBOR `cbor:"pins"`
	Audit  []byte   `cbor:"audit,omitempty"`
	Caller []byte   `cbor:"caller,omitempty"`
}

type pinsCBOR struct {
	KMSKeys          []string `cbor:"kms_keys"`
	KeyringSigners   []string `cbor:"keyring_signers"`
	KeyringThreshold uint64   `cbor:"keyring_threshold"`
	RequireAuth      bool     `cbor:"require_auth,omitempty"`
	AuditOverflow    string   `cbor:"audit_overflow,omitempty"`
}

var userDataEnc = func() cbor.EncMode {
	em, err := cbor.EncOptions{
		Sort:          cbor.SortCoreDeterministic,
		IndefLength:   cbor.IndefLengthForbidden,
		TagsMd:        cbor.TagsForbidden,
		NilContainers: cbor.NilContainerAsEmpty, // unpinned: [], never null
	}.EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// Marshal encodes u as signerd writes it. The pins are written sorted
// (bytewise), so that the same pins always give the same bytes. It does
// not check the size: see CallerRoom.
func (u *UserData) Marshal() ([]byte, error) {
	if len(u.KeySet) != KeySetDigestSize {
		return nil, fmt.Errorf("user_data: keyset is %d bytes, want %d", len(u.KeySet), KeySetDigestSize)
	}
	if u.Audit != nil {
		if _, err := ParseAuditKey(u.Audit); err != nil {
			return nil, fmt.Errorf("user_data: audit: %w", err)
		}
	}
	v := userDataCBOR{
		V:      UserDataVersion,
		KeySet: u.KeySet,
		Pins: pinsCBOR{
			KMSKeys:          slices.Sorted(slices.Values(u.Pins.KMSKeys)),
			KeyringSigners:   slices.Sorted(slices.Values(u.Pins.KeyringSigners)),
			KeyringThreshold: u.Pins.KeyringThreshold,
			RequireAuth:      u.Pins.RequireAuth,
			AuditOverflow:    u.Pins.AuditOverflow,
		},
		Audit:  u.Audit,
		Caller: u.Caller,
	}
	b, err := userDataEnc.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("user_data: %w", err)
	}
	return b, nil
}

// callerKeySize is the encoded size of the text key "caller".
const callerKeySize = 1 + len("caller")

// CallerRoom returns how many bytes of caller data fit in a document's
// user_data (at most MaxUserFieldSize bytes, the NSM's limit) beside u's
// key set and pins; u.Caller is ignored. It is negative when the map does
// not fit even without caller data.
func (u *UserData) CallerRoom() (int, error) {
	v := *u
	v.Caller = nil
	base, err := v.Marshal()
	if err != nil {
		return 0, err
	}
	// Adding "caller" adds its key, the byte string's head (1 byte up to
	// 23 bytes, 2 up to 255, 3 up to 65535) and the bytes; the map's own
	// head stays one byte.
	free := MaxUserFieldSize - len(base) - callerKeySize
	n := free - 1
	if n >= 24 {
		n = free - 2
	}
	if n >= 256 {
		n = free - 3
	}
	return n, nil
}

// userDataDec parses a user_data map strictly in form: definite lengths,
// no tags, no duplicate keys, valid UTF-8, bounded.
var userDataDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
		MaxNestedLevels:  8,
		MaxArrayElements: 256,
		MaxMapPairs:      64,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// CBOR major types, from the initial byte's top three bits.
const (
	majorUint  = 0
	majorText  = 3
	majorArray = 4
	majorMap   = 5
)

func major(v cbor.RawMessage) int {
	if len(v) == 0 {
		return -1
	}
	return int(v[0] >> 5)
}

// ParseUserData parses signerd's user_data map. It ignores keys it does
// not know (later versions add some) but insists on the types of those it
// knows: "v" must be 1, "keyset" 48 bytes, "pins" a map of two text arrays
// and a threshold (and "audit_overflow" text when present), "audit" an
// ed25519 SubjectPublicKeyInfo and "caller" a byte string when present.
// Errors are *Error values of class ErrMalformed, Field "user_data".
func ParseUserData(b []byte) (*UserData, error) {
	bad := func(format string, a ...any) error { return malformed("user_data", format, a...) }
	if major(b) != majorMap {
		return nil, bad("not signerd's map: want a CBOR map with text keys")
	}
	var fields map[string]cbor.RawMessage
	if rest, err := userDataDec.UnmarshalFirst(b, &fields); err != nil {
		return nil, &Error{Class: ErrMalformed, Field: "user_data", Err: err}
	} else if len(rest) > 0 {
		return nil, bad("%d trailing bytes after the map", len(rest))
	}
	for _, k := range []string{"v", "keyset", "pins"} {
		if _, ok := fields[k]; !ok {
			return nil, bad("no %q: not signerd's map (v, keyset, pins)", k)
		}
	}
	var v uint64
	if major(fields["v"]) != majorUint || userDataDec.Unmarshal(fields["v"], &v) != nil {
		return nil, bad(`"v": want an unsigned integer`)
	}
	if v != UserDataVersion {
		return nil, bad(`"v" is %d; this verifier reads version %d`, v, UserDataVersion)
	}
	u := new(UserData)
	var err error
	if u.KeySet, err = byteString(`user_data "keyset"`, fields["keyset"], KeySetDigestSize, KeySetDigestSize); err != nil {
		return nil, err
	}
	if a, ok := fields["audit"]; ok {
		if u.Audit, err = byteString(`user_data "audit"`, a, 1, MaxUserFieldSize); err != nil {
			return nil, err
		}
		if _, err := ParseAuditKey(u.Audit); err != nil {
			return nil, malformed(`user_data "audit"`, "%v", err)
		}
	}
	if c, ok := fields["caller"]; ok {
		if u.Caller, err = byteString(`user_data "caller"`, c, 0, MaxUserFieldSize); err != nil {
			return nil, err
		}
	}
	if u.Pins, err = parsePins(fields["pins"]); err != nil {
		return nil, err
	}
	return u, nil
}

func parsePins(raw cbor.RawMessage) (Pins, error) {
	bad := func(format string, a ...any) error { return malformed(`user_data "pins"`, format, a...) }
	if major(raw) != majorMap {
		return Pins{}, bad("want a map")
	}
	var fields map[string]cbor.RawMessage
	if err := userDataDec.Unmarshal(raw, &fields); err != nil {
		return Pins{}, &Error{Class: ErrMalformed, Field: `user_data "pins"`, Err: err}
	}
	var p Pins
	for _, arr := range []struct {
		name string
		dst  *[]string
	}{{"kms_keys", &p.KMSKeys}, {"keyring_signers", &p.KeyringSigners}} {
		v, ok := fields[arr.name]
		if !ok {
			return Pins{}, bad("no %q", arr.name)
		}
		var items []cbor.RawMessage
		if major(v) != majorArray || userDataDec.Unmarshal(v, &items) != nil {
			return Pins{}, bad("%q: want an array of text strings", arr.name)
		}
		*arr.dst = make([]string, 0, len(items))
		for i, it := range items {
			var s string
			if major(it) != majorText || userDataDec.Unmarshal(it, &s) != nil {
				return Pins{}, bad("%s[%d]: want a text string", arr.name, i)
			}
			*arr.dst = append(*arr.dst, s)
		}
	}
	v, ok := fields["keyring_threshold"]
	if !ok {
		return Pins{}, bad(`no "keyring_threshold"`)
	}
	if major(v) != majorUint || userDataDec.Unmarshal(v, &p.KeyringThreshold) != nil {
		return Pins{}, bad(`"keyring_threshold": want an unsigned integer`)
	}
	if v, ok := fields["require_auth"]; ok {
		if len(v) != 1 || (v[0] != 0xf4 && v[0] != 0xf5) {
			return Pins{}, bad(`"require_auth": want a boolean`)
		}
		p.RequireAuth = v[0] == 0xf5
	}
	if v, ok := fields["audit_overflow"]; ok {
		if major(v) != majorText || userDataDec.Unmarshal(v, &p.AuditOverflow) != nil {
			return Pins{}, bad(`"audit_overflow": want a text string`)
		}
	}
	return p, nil
}

// String renders the pins for messages: "kms_keys=[…] keyring_signers=[…]
// keyring_threshold=N", or "unpinned".
func (p Pins) String() string {
	if p.Unpinned() {
		return "unpinned"
	}
	s := fmt.Sprintf("kms_keys=[%s] keyring_signers=[%s] keyring_threshold=%d",
		strings.Join(p.KMSKeys, " "), strings.Join(p.KeyringSigners, " "), p.KeyringThreshold)
	if p.RequireAuth {
		s += " require_auth=true"
	}
	if p.AuditOverflow != "" {
		s += " audit_overflow=" + p.AuditOverflow
	}
	return s
}

// SignerdUserData parses the document's user_data as signerd's map
// (ParseUserData). It checks nothing else: verify the document first.
func (d *Document) SignerdUserData() (*UserData, error) {
	if d.UserData == nil {
		return nil, malformed("user_data", "null: no key set attested (not a document signerd made for a caller)")
	}
	return ParseUserData(d.UserData)
}

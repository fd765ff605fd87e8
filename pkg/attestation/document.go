// Package attestation parses and verifies AWS Nitro Enclaves attestation
// documents, and asks a Nitro Security Module (or its simulator) for them.
//
// A document is an untagged COSE_Sign1 (RFC 8152) signed with ES384 by a leaf
// certificate that chains, through the intermediates in its cabundle, to the
// AWS Nitro Enclaves root. Parse is a strict, bounded parser of untrusted
// bytes; Verify checks the chain and the signature and returns the typed
// document. Real documents are the reference: where AWS's prose differs from
// what Nitro hardware emits (optional fields present as CBOR null, the map's
// key order, no COSE tag), this package follows the hardware.
//
// # Pinning a signerd enclave
//
// signerd writes a map into the user_data of every document it makes for a
// caller (UserData): the digest of the keys it holds (KeySetDigest), its
// pins, and the caller's own user_data. A relying party verifies the
// document (Verify), then checks it against what it expects (Document.Check
// with an Expect): the image's PCR0, its own nonce, and the key list the
// service publishes (ParseKeyListJSON of GET /v1/keys).
package attestation

import (
	"bytes"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Limits from the NSM API's CDDL and AWS's verification procedure. Real
// hardware accepts 1024 bytes in each of public_key, user_data and nonce.
const (
	MaxDocumentSize  = 32 << 10
	MaxPayloadSize   = 16 << 10
	MaxUserFieldSize = 1024
	MaxCertSize      = 1024
	MaxCABundle      = 16
	MaxPCRs          = 32
	maxModuleIDSize  = 256
)

// LockedPCRs is how many PCRs every document carries: the NSM locks PCRs
// 0–15 at boot (the enclave can neither extend nor unlock them) and a
// document's pcrs map lists every locked PCR. PCRs 16–31 appear only once
// the enclave application has extended and locked them. A document without
// one of 0–15 did not come from an NSM, and would let a key policy's
// …IfExists condition on that PCR hold.
const LockedPCRs = 16

// payloadKeys are the only keys a payload may hold: the nine the NSM
// writes (AWS's CDDL for AttestationDocument, and every real document).
// An unknown key is refused rather than ignored, so that no field a
// verifier skips can carry meaning to another.
var payloadKeys = map[string]bool{
	"module_id": true, "digest": true, "timestamp": true, "pcrs": true,
	"certificate": true, "cabundle": true,
	"public_key": true, "user_data": true, "nonce": true,
}

// Document is a parsed attestation document.
type Document struct {
	ModuleID string
	Digest   string
	// Timestamp is when the NSM produced the document (millisecond precision).
	Timestamp time.Time
	// PCRs maps a register index to its 48-byte value.
	PCRs map[int][]byte
	// Certificate is the leaf certificate (DER); CABundle the issuing chain,
	// root first, as in the document.
	Certificate []byte
	CABundle    [][]byte
	// PublicKey, UserData and Nonce are nil when the document carries CBOR
	// null (the field was not requested), and non-nil (possibly empty) when
	// it carries a byte string.
	PublicKey []byte
	UserData  []byte
	Nonce     []byte

	// Raw is the whole COSE_Sign1 as parsed; protected, payload and signature
	// are its parts.
	Raw       []byte
	protected []byte
	payload   []byte
	signature []byte
}

// TimestampMillis returns the timestamp as the document encodes it.
func (d *Document) TimestampMillis() int64 { return d.Timestamp.UnixMilli() }

// PCRHex returns PCR index as lowercase hex, or "" if absent.
func (d *Document) PCRHex(index int) string {
	v, ok := d.PCRs[index]
	if !ok {
		return ""
	}
	return hex.EncodeToString(v)
}

// PCRIndexes returns the PCR indexes present, in order.
func (d *Document) PCRIndexes() []int {
	idx := make([]int, 0, len(d.PCRs))
	for i := range d.PCRs {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	return idx
}

// DebugMode reports whether the document comes from an enclave started with
// --debug-mode: PCR0, 1 and 2 are all zero (PCR3 and PCR4 stay measured).
func (d *Document) DebugMode() bool {
	for _, i := range []int{0, 1, 2} {
		v, ok := d.PCRs[i]
		if !ok || !isZero(v) {
			return false
		}
	}
	return true
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return len(b) > 0
}

// decMode is strict: bounded sizes and nesting, no duplicate map keys, no
// indefinite lengths (the NSM emits none), no tags inside the payload.
var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   8,
		MaxArrayElements:  64,
		MaxMapPairs:       64,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// coseSign1 is COSE_Sign1 without its optional tag.
type coseSign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

// es384Protected is the only protected header NSM documents carry:
// {1 (alg): -35 (ES384)}.
var es384Protected = []byte{0xa1, 0x01, 0x38, 0x22}

// Parse parses an attestation document without verifying it. It checks the
// COSE structure and every payload field's CBOR type and bounds.
func Parse(b []byte) (*Document, error) {
	if len(b) == 0 {
		return nil, malformed("", "empty input")
	}
	if len(b) > MaxDocumentSize {
		return nil, malformed("", "%d bytes, more than the %d-byte limit", len(b), MaxDocumentSize)
	}
	raw := b
	// COSE_Sign1 may carry tag 18 (0xd2); real documents do not, but the
	// NSM API documents both.
	if b[0] == 0xd2 {
		b = b[1:]
	}
	var msg coseSign1
	if rest, err := decMode.UnmarshalFirst(b, &msg); err != nil {
		return nil, &Error{Class: ErrMalformed, Field: "COSE_Sign1", Err: err}
	} else if len(rest) > 0 {
		return nil, malformed("COSE_Sign1", "%d trailing bytes", len(rest))
	}
	if !bytes.Equal(msg.Protected, es384Protected) {
		return nil, malformed("protected header", "want {1: -35} (ES384), got %x", msg.Protected)
	}
	var unprotected map[any]cbor.RawMessage
	if err := decMode.Unmarshal(msg.Unprotected, &unprotected); err != nil || unprotected == nil {
		return nil, malformed("unprotected header", "want a map")
	}
	if len(msg.Signature) != 96 {
		return nil, malformed("signature", "%d bytes, want 96 (ES384 r‖s)", len(msg.Signature))
	}
	if len(msg.Payload) == 0 || len(msg.Payload) > MaxPayloadSize {
		return nil, malformed("payload", "%d bytes, want 1 to %d", len(msg.Payload), MaxPayloadSize)
	}
	doc, err := parsePayload(msg.Payload)
	if err != nil {
		return nil, err
	}
	doc.Raw = raw
	doc.protected = msg.Protected
	doc.payload = msg.Payload
	doc.signature = msg.Signature
	return doc, nil
}

func parsePayload(p []byte) (*Document, error) {
	var fields map[string]cbor.RawMessage
	if rest, err := decMode.UnmarshalFirst(p, &fields); err != nil {
		return nil, &Error{Class: ErrMalformed, Field: "payload", Err: err}
	} else if len(rest) > 0 {
		return nil, malformed("payload", "%d trailing bytes", len(rest))
	}
	for k := range fields {
		if !payloadKeys[k] {
			return nil, malformed("payload", "unknown key %q: an attestation document has only module_id, digest, timestamp, pcrs, certificate, cabundle, public_key, user_data and nonce", k)
		}
	}
	d := new(Document)
	required := func(name string) (cbor.RawMessage, error) {
		v, ok := fields[name]
		if !ok {
			return nil, malformed(name, "missing")
		}
		return v, nil
	}

	v, err := required("module_id")
	if err != nil {
		return nil, err
	}
	if err := decMode.Unmarshal(v, &d.ModuleID); err != nil {
		return nil, malformed("module_id", "want a text string")
	}
	if d.ModuleID == "" || len(d.ModuleID) > maxModuleIDSize {
		return nil, malformed("module_id", "%d characters, want 1 to %d", len(d.ModuleID), maxModuleIDSize)
	}

	if v, err = required("digest"); err != nil {
		return nil, err
	}
	if err := decMode.Unmarshal(v, &d.Digest); err != nil {
		return nil, malformed("digest", "want a text string")
	}
	if d.Digest != "SHA384" {
		return nil, malformed("digest", "%q, want \"SHA384\"", d.Digest)
	}

	if v, err = required("timestamp"); err != nil {
		return nil, err
	}
	if len(v) == 0 || v[0]>>5 != 0 {
		return nil, malformed("timestamp", "want an unsigned integer")
	}
	var ms uint64
	if err := decMode.Unmarshal(v, &ms); err != nil || ms == 0 || ms > 1<<62 {
		return nil, malformed("timestamp", "want milliseconds since the epoch, greater than zero")
	}
	d.Timestamp = time.UnixMilli(int64(ms)).UTC()

	if v, err = required("pcrs"); err != nil {
		return nil, err
	}
	if err := parsePCRs(v, d); err != nil {
		return nil, err
	}

	if v, err = required("certificate"); err != nil {
		return nil, err
	}
	if d.Certificate, err = byteString("certificate", v, 1, MaxCertSize); err != nil {
		return nil, err
	}

	if v, err = required("cabundle"); err != nil {
		return nil, err
	}
	if len(v) == 0 || v[0]>>5 != 4 {
		return nil, malformed("cabundle", "want an array of certificates")
	}
	var bundle []cbor.RawMessage
	if err := decMode.Unmarshal(v, &bundle); err != nil {
		return nil, &Error{Class: ErrMalformed, Field: "cabundle", Err: err}
	}
	if len(bundle) == 0 || len(bundle) > MaxCABundle {
		return nil, malformed("cabundle", "%d certificates, want 1 to %d", len(bundle), MaxCABundle)
	}
	for i, c := range bundle {
		cert, err := byteString(fmt.Sprintf("cabundle[%d]", i), c, 1, MaxCertSize)
		if err != nil {
			return nil, err
		}
		d.CABundle = append(d.CABundle, cert)
	}

	for _, opt := range []struct {
		name string
		dst  *[]byte
	}{{"public_key", &d.PublicKey}, {"user_data", &d.UserData}, {"nonce", &d.Nonce}} {
		v, ok := fields[opt.name]
		if !ok || (len(v) == 1 && v[0] == 0xf6) { // absent or null
			continue
		}
		if *opt.dst, err = byteString(opt.name, v, 0, MaxUserFieldSize); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// byteString decodes a CBOR byte string of min to max bytes. It returns a
// non-nil slice even for an empty string.
func byteString(field string, v cbor.RawMessage, min, max int) ([]byte, error) {
	if len(v) == 0 || v[0]>>5 != 2 {
		return nil, malformed(field, "want a byte string")
	}
	b := []byte{}
	if err := decMode.Unmarshal(v, &b); err != nil {
		return nil, &Error{Class: ErrMalformed, Field: field, Err: err}
	}
	if b == nil {
		b = []byte{}
	}
	if len(b) < min || len(b) > max {
		return nil, malformed(field, "%d bytes, want %d to %d", len(b), min, max)
	}
	return b, nil
}

func parsePCRs(v cbor.RawMessage, d *Document) error {
	if len(v) == 0 || v[0]>>5 != 5 {
		return malformed("pcrs", "want a map of index to value")
	}
	var m map[uint64]cbor.RawMessage
	if err := decMode.Unmarshal(v, &m); err != nil {
		return &Error{Class: ErrMalformed, Field: "pcrs", Err: err}
	}
	if len(m) == 0 || len(m) > MaxPCRs {
		return malformed("pcrs", "%d entries, want %d to %d", len(m), LockedPCRs, MaxPCRs)
	}
	d.PCRs = make(map[int][]byte, len(m))
	for i, raw := range m {
		if i >= MaxPCRs {
			return malformed("pcrs", "index %d, want 0 to %d", i, MaxPCRs-1)
		}
		// The digest is SHA384, so every PCR is 48 bytes.
		val, err := byteString(fmt.Sprintf("pcrs[%d]", i), raw, 48, 48)
		if err != nil {
			return err
		}
		d.PCRs[int(i)] = val
	}
	for i := range LockedPCRs {
		if _, ok := d.PCRs[i]; !ok {
			return malformed("pcrs", "PCR%d is missing: every document carries PCRs 0 to %d, which the NSM locks at boot", i, LockedPCRs-1)
		}
	}
	return nil
}

//go:embed aws-nitro-root.pem
var awsRootPEM []byte

// AWSRootPEM returns the AWS Nitro Enclaves root certificate (G1, commercial
// partition), exactly as AWS publishes it in AWS_NitroEnclaves_Root-G1.zip.
// Its DER SHA-256 fingerprint is 641a0321…79bb5b; the 8cf60e2b… value AWS
// prints beside the download is the hash of the zip file, not of this
// certificate.
func AWSRootPEM() []byte { return bytes.Clone(awsRootPEM) }

// AWSRoots returns a pool holding only the AWS Nitro Enclaves root.
func AWSRoots() *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(awsRootPEM) {
		panic("attestation: embedded AWS root does not parse")
	}
	return p
}

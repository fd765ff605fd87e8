package cms

import (
	"bytes"
	"crypto/aes"
	"crypto/sha256"
	"strconv"
	"strings"
)

// MaxEnvelopeSize bounds the input of Parse and Open. Real KMS envelopes are
// about 500 bytes (KMS plaintexts are at most 4096 bytes); 64 KiB leaves room
// for an RSA-4096 private key from GenerateDataKeyPair and then some.
const MaxEnvelopeSize = 64 << 10

// Lengths fixed by the KMS profile.
const (
	// SubjectKeyIDSize is the size of the recipient identifier KMS uses:
	// SHA-256 of the recipient's SubjectPublicKeyInfo DER.
	SubjectKeyIDSize = sha256.Size
	ivSize           = aes.BlockSize
	cekSize          = 32 // AES-256
)

// OBJECT IDENTIFIER contents (without tag and length).
var (
	oidEnvelopedData = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03} // 1.2.840.113549.1.7.3
	oidData          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01} // 1.2.840.113549.1.7.1
	oidRSAESOAEP     = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07} // 1.2.840.113549.1.1.7
	oidMGF1          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08} // 1.2.840.113549.1.1.8
	oidPSpecified    = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x09} // 1.2.840.113549.1.1.9
	oidSHA256        = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01} // 2.16.840.1.101.3.4.2.1
	oidAES256CBC     = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a} // 2.16.840.1.101.3.4.1.42
)

// Envelope is a parsed KMS-profile EnvelopedData. All slices are copies, not
// aliases of the input.
type Envelope struct {
	// SubjectKeyID is the recipient identifier: SHA-256 of the recipient's
	// SubjectPublicKeyInfo DER (see SubjectKeyIdentifier).
	SubjectKeyID []byte
	// EncryptedKey is the RSAES-OAEP encrypted AES-256 content-encryption key.
	EncryptedKey []byte
	// IV is the AES-256-CBC initialisation vector.
	IV []byte
	// Ciphertext is the encrypted content, chunks concatenated.
	Ciphertext []byte
	// Chunks is the number of OCTET STRING chunks of a constructed
	// encryptedContent (KMS's usual form), or 0 for the primitive
	// [0] IMPLICIT form.
	Chunks int

	// Offsets of the parts in the input, for tests.
	skiOff, keyOff, ivOff int
	chunkSpans            []span
}

type span struct{ off, len int }

// Parse parses a CMS ContentInfo holding an EnvelopedData in the shape KMS
// returns as CiphertextForRecipient, without decrypting anything. It checks
// the whole structure and every algorithm, so the subjectKeyIdentifier can be
// compared with the expected key before any RSA work.
func Parse(envelope []byte) (*Envelope, error) {
	if len(envelope) > MaxEnvelopeSize {
		return nil, errorf(ErrTooLarge, "envelope", -1, "%d bytes, the limit is %d", len(envelope), MaxEnvelopeSize)
	}
	if len(envelope) == 0 {
		return nil, errorf(ErrTruncated, "envelope", 0, "empty input")
	}
	in := newReader(envelope)
	ci, err := in.read(tagSequence, "ContentInfo")
	if err != nil {
		return nil, err
	}
	if !in.empty() {
		return nil, errorf(ErrTrailingData, "ContentInfo", in.off, "%d bytes after the end of the ContentInfo", len(in.s))
	}
	env := &Envelope{}
	if err := env.parseContentInfo(ci); err != nil {
		return nil, err
	}
	return env, nil
}

func (env *Envelope) parseContentInfo(ci *element) error {
	c := ci.children("ContentInfo")
	oid, off, err := c.readPrimitive(tagOID, "ContentInfo.contentType")
	if err != nil {
		return err
	}
	if !bytes.Equal(oid, oidEnvelopedData) {
		return errorf(ErrContentType, "ContentInfo.contentType", off, "%s, want envelopedData (1.2.840.113549.1.7.3)", oidString(oid))
	}
	explicit, err := c.read(tagContext0C, "ContentInfo.content")
	if err != nil {
		return err
	}
	if err := c.end(); err != nil {
		return err
	}
	x := explicit.children("ContentInfo.content")
	ed, err := x.read(tagSequence, "EnvelopedData")
	if err != nil {
		return err
	}
	if err := x.end(); err != nil {
		return err
	}
	return env.parseEnvelopedData(ed)
}

func (env *Envelope) parseEnvelopedData(ed *element) error {
	c := ed.children("EnvelopedData")
	version, vOff, err := c.readSmallInt("EnvelopedData.version")
	if err != nil {
		return err
	}
	if tag, ok := c.peekTag(); ok && tag == tagContext0C {
		return errorf(ErrMalformed, "EnvelopedData.originatorInfo", c.off, "present; KMS never sends it and it is not supported")
	}
	ris, err := c.read(tagSet, "EnvelopedData.recipientInfos")
	if err != nil {
		return err
	}
	eci, err := c.read(tagSequence, "EnvelopedData.encryptedContentInfo")
	if err != nil {
		return err
	}
	if tag, ok := c.peekTag(); ok && tag == tagContext1C {
		return errorf(ErrMalformed, "EnvelopedData.unprotectedAttrs", c.off, "present; KMS never sends them and they are not supported")
	}
	if err := c.end(); err != nil {
		return err
	}
	// The recipient is checked before the version: an envelope made for an
	// issuerAndSerialNumber recipient has version 0, and "wrong recipient
	// identifier" is the more useful error for it.
	if err := env.parseRecipientInfos(ris); err != nil {
		return err
	}
	if version != 2 {
		return errorf(ErrVersion, "EnvelopedData.version", vOff, "%d, want 2", version)
	}
	return env.parseEncryptedContentInfo(eci)
}

func (env *Envelope) parseRecipientInfos(ris *element) error {
	c := ris.children("EnvelopedData.recipientInfos")
	var first *element
	n := 0
	for !c.empty() {
		e, err := c.next("RecipientInfo")
		if err != nil {
			return err
		}
		if first == nil {
			first = e
		}
		n++
	}
	if n != 1 {
		return errorf(ErrRecipientCount, "EnvelopedData.recipientInfos", ris.off, "%d recipients, want 1", n)
	}
	if first.tag != tagSequence {
		return errorf(ErrRecipient, "RecipientInfo", first.off, "%s, want a KeyTransRecipientInfo (SEQUENCE)", recipientKind(first.tag))
	}
	return env.parseKTRI(first)
}

func recipientKind(tag byte) string {
	switch tag {
	case tagContext1C:
		return "KeyAgreeRecipientInfo [1]"
	case tagContext2C:
		return "KEKRecipientInfo [2]"
	case classContext | constructed | 3:
		return "PasswordRecipientInfo [3]"
	case classContext | constructed | 4:
		return "OtherRecipientInfo [4]"
	}
	return "identifier 0x" + strconv.FormatUint(uint64(tag), 16)
}

func (env *Envelope) parseKTRI(ktri *element) error {
	c := ktri.children("KeyTransRecipientInfo")
	version, vOff, err := c.readSmallInt("KeyTransRecipientInfo.version")
	if err != nil {
		return err
	}
	rid, err := c.next("KeyTransRecipientInfo.rid")
	if err != nil {
		return err
	}
	switch rid.tag {
	case tagContext0:
	case tagSequence:
		return errorf(ErrRecipient, "KeyTransRecipientInfo.rid", rid.off, "issuerAndSerialNumber, want subjectKeyIdentifier [0] (KMS identifies the recipient by SHA-256 of its public key; with openssl cms -encrypt use -keyid)")
	default:
		return errorf(ErrRecipient, "KeyTransRecipientInfo.rid", rid.off, "identifier 0x%02x, want subjectKeyIdentifier [0] primitive", rid.tag)
	}
	if len(rid.content) != SubjectKeyIDSize {
		return errorf(ErrRecipient, "KeyTransRecipientInfo.rid", rid.off, "subjectKeyIdentifier is %d bytes, want %d (SHA-256 of the SubjectPublicKeyInfo)", len(rid.content), SubjectKeyIDSize)
	}
	if version != 2 {
		return errorf(ErrVersion, "KeyTransRecipientInfo.version", vOff, "%d, want 2 (subjectKeyIdentifier)", version)
	}
	alg, err := c.read(tagSequence, "KeyTransRecipientInfo.keyEncryptionAlgorithm")
	if err != nil {
		return err
	}
	if err := parseKeyEncryptionAlgorithm(alg); err != nil {
		return err
	}
	ek, err := c.read(tagOctetString, "KeyTransRecipientInfo.encryptedKey")
	if err != nil {
		return err
	}
	if len(ek.content) == 0 {
		return errorf(ErrMalformed, "KeyTransRecipientInfo.encryptedKey", ek.off, "empty")
	}
	if err := c.end(); err != nil {
		return err
	}
	env.SubjectKeyID = bytes.Clone(rid.content)
	env.skiOff = rid.contentOff
	env.EncryptedKey = bytes.Clone(ek.content)
	env.keyOff = ek.contentOff
	return nil
}

// parseKeyEncryptionAlgorithm accepts RSAES-OAEP with SHA-256, MGF1-SHA-256
// and an empty label, the SHA-256 AlgorithmIdentifiers with NULL parameters
// (KMS) or none (OpenSSL).
func parseKeyEncryptionAlgorithm(alg *element) error {
	const field = "keyEncryptionAlgorithm"
	c := alg.children(field)
	oid, off, err := c.readPrimitive(tagOID, field+".algorithm")
	if err != nil {
		return err
	}
	if !bytes.Equal(oid, oidRSAESOAEP) {
		return errorf(ErrAlgorithm, field, off, "%s, want rsaesOaep (1.2.840.113549.1.1.7)", oidString(oid))
	}
	if tag, ok := c.peekTag(); !ok || tag != tagSequence {
		return errorf(ErrAlgorithm, "RSAES-OAEP-params", c.off, "absent or not a SEQUENCE: the defaults are SHA-1 and MGF1-SHA-1, want SHA-256 and MGF1-SHA-256")
	}
	params, err := c.read(tagSequence, "RSAES-OAEP-params")
	if err != nil {
		return err
	}
	if err := c.end(); err != nil {
		return err
	}
	p := params.children("RSAES-OAEP-params")

	if tag, ok := p.peekTag(); !ok || tag != tagContext0C {
		return errorf(ErrAlgorithm, "RSAES-OAEP-params.hashAlgorithm", p.off, "absent: the default is SHA-1, want SHA-256")
	}
	h, err := p.read(tagContext0C, "RSAES-OAEP-params.hashAlgorithm")
	if err != nil {
		return err
	}
	if err := readSHA256(h.children("RSAES-OAEP-params.hashAlgorithm"), "RSAES-OAEP-params.hashAlgorithm"); err != nil {
		return err
	}

	if tag, ok := p.peekTag(); !ok || tag != tagContext1C {
		return errorf(ErrAlgorithm, "RSAES-OAEP-params.maskGenAlgorithm", p.off, "absent: the default is MGF1 with SHA-1, want MGF1 with SHA-256")
	}
	m, err := p.read(tagContext1C, "RSAES-OAEP-params.maskGenAlgorithm")
	if err != nil {
		return err
	}
	mc := m.children("RSAES-OAEP-params.maskGenAlgorithm")
	mseq, err := mc.read(tagSequence, "RSAES-OAEP-params.maskGenAlgorithm")
	if err != nil {
		return err
	}
	if err := mc.end(); err != nil {
		return err
	}
	ms := mseq.children("RSAES-OAEP-params.maskGenAlgorithm")
	moid, moff, err := ms.readPrimitive(tagOID, "RSAES-OAEP-params.maskGenAlgorithm.algorithm")
	if err != nil {
		return err
	}
	if !bytes.Equal(moid, oidMGF1) {
		return errorf(ErrAlgorithm, "RSAES-OAEP-params.maskGenAlgorithm", moff, "%s, want MGF1 (1.2.840.113549.1.1.8)", oidString(moid))
	}
	if err := readSHA256(ms, "RSAES-OAEP-params.maskGenAlgorithm.parameters"); err != nil {
		return err
	}

	if tag, ok := p.peekTag(); ok && tag == tagContext2C {
		// BER may spell out the DEFAULT empty label; accept exactly that.
		l, err := p.read(tagContext2C, "RSAES-OAEP-params.pSourceAlgorithm")
		if err != nil {
			return err
		}
		lc := l.children("RSAES-OAEP-params.pSourceAlgorithm")
		lseq, err := lc.read(tagSequence, "RSAES-OAEP-params.pSourceAlgorithm")
		if err != nil {
			return err
		}
		if err := lc.end(); err != nil {
			return err
		}
		ls := lseq.children("RSAES-OAEP-params.pSourceAlgorithm")
		loid, loff, err := ls.readPrimitive(tagOID, "RSAES-OAEP-params.pSourceAlgorithm.algorithm")
		if err != nil {
			return err
		}
		if !bytes.Equal(loid, oidPSpecified) {
			return errorf(ErrAlgorithm, "RSAES-OAEP-params.pSourceAlgorithm", loff, "%s, want id-pSpecified (1.2.840.113549.1.1.9)", oidString(loid))
		}
		label, lboff, err := ls.readPrimitive(tagOctetString, "RSAES-OAEP-params.pSourceAlgorithm.parameters")
		if err != nil {
			return err
		}
		if len(label) != 0 {
			return errorf(ErrAlgorithm, "RSAES-OAEP-params.pSourceAlgorithm", lboff, "OAEP label of %d bytes, want empty", len(label))
		}
		if err := ls.end(); err != nil {
			return err
		}
	}
	return p.end()
}

// readSHA256 reads an AlgorithmIdentifier SEQUENCE for SHA-256 whose
// parameters are NULL or absent, and checks r is then empty.
func readSHA256(r *berReader, field string) error {
	seq, err := r.read(tagSequence, field)
	if err != nil {
		return err
	}
	if err := r.end(); err != nil {
		return err
	}
	c := seq.children(field)
	oid, off, err := c.readPrimitive(tagOID, field+".algorithm")
	if err != nil {
		return err
	}
	if !bytes.Equal(oid, oidSHA256) {
		return errorf(ErrAlgorithm, field, off, "%s, want SHA-256 (2.16.840.1.101.3.4.2.1)", oidString(oid))
	}
	if !c.empty() {
		p, err := c.next(field + ".parameters")
		if err != nil {
			return err
		}
		if p.tag != tagNull || len(p.content) != 0 {
			return errorf(ErrAlgorithm, field+".parameters", p.off, "identifier 0x%02x with %d bytes, want NULL or absent", p.tag, len(p.content))
		}
	}
	return c.end()
}

func (env *Envelope) parseEncryptedContentInfo(eci *element) error {
	c := eci.children("EncryptedContentInfo")
	ct, off, err := c.readPrimitive(tagOID, "EncryptedContentInfo.contentType")
	if err != nil {
		return err
	}
	if !bytes.Equal(ct, oidData) {
		return errorf(ErrContentType, "EncryptedContentInfo.contentType", off, "%s, want id-data (1.2.840.113549.1.7.1)", oidString(ct))
	}
	alg, err := c.read(tagSequence, "EncryptedContentInfo.contentEncryptionAlgorithm")
	if err != nil {
		return err
	}
	a := alg.children("EncryptedContentInfo.contentEncryptionAlgorithm")
	aoid, aoff, err := a.readPrimitive(tagOID, "EncryptedContentInfo.contentEncryptionAlgorithm.algorithm")
	if err != nil {
		return err
	}
	if !bytes.Equal(aoid, oidAES256CBC) {
		return errorf(ErrAlgorithm, "EncryptedContentInfo.contentEncryptionAlgorithm", aoff, "%s, want aes256-CBC (2.16.840.1.101.3.4.1.42)", oidString(aoid))
	}
	iv, err := a.read(tagOctetString, "EncryptedContentInfo.contentEncryptionAlgorithm.parameters")
	if err != nil {
		return err
	}
	if len(iv.content) != ivSize {
		return errorf(ErrMalformed, "EncryptedContentInfo.contentEncryptionAlgorithm.parameters", iv.off, "IV is %d bytes, want %d", len(iv.content), ivSize)
	}
	if err := a.end(); err != nil {
		return err
	}
	if c.empty() {
		return errorf(ErrMalformed, "EncryptedContentInfo.encryptedContent", c.off, "absent (detached content is not supported)")
	}
	ec, err := c.next("EncryptedContentInfo.encryptedContent")
	if err != nil {
		return err
	}
	switch ec.tag {
	case tagContext0:
		env.Ciphertext = bytes.Clone(ec.content)
		env.chunkSpans = []span{{ec.contentOff, len(ec.content)}}
	case tagContext0C:
		chunks := ec.children("EncryptedContentInfo.encryptedContent")
		total := 0
		for !chunks.empty() {
			b, err := chunks.read(tagOctetString, "EncryptedContentInfo.encryptedContent chunk")
			if err != nil {
				return err
			}
			env.chunkSpans = append(env.chunkSpans, span{b.contentOff, len(b.content)})
			total += len(b.content)
		}
		env.Chunks = len(env.chunkSpans)
		env.Ciphertext = make([]byte, 0, total)
		for _, s := range env.chunkSpans {
			env.Ciphertext = append(env.Ciphertext, ec.content[s.off-ec.contentOff:][:s.len]...)
		}
	default:
		return errorf(ErrMalformed, "EncryptedContentInfo.encryptedContent", ec.off, "identifier 0x%02x, want [0] (0x80 primitive or 0xa0 constructed)", ec.tag)
	}
	if len(env.Ciphertext) == 0 || len(env.Ciphertext)%aes.BlockSize != 0 {
		return errorf(ErrMalformed, "EncryptedContentInfo.encryptedContent", ec.off, "%d bytes of ciphertext, want a positive multiple of %d", len(env.Ciphertext), aes.BlockSize)
	}
	if err := c.end(); err != nil {
		return err
	}
	env.IV = bytes.Clone(iv.content)
	env.ivOff = iv.contentOff
	return nil
}

// oidString renders OBJECT IDENTIFIER contents in dotted form for error
// messages, or as hex if they are not a valid encoding.
func oidString(b []byte) string {
	if len(b) == 0 || len(b) > 64 {
		return "invalid OID"
	}
	var parts []string
	var v uint64
	for i, c := range b {
		if v > 1<<56 {
			return "invalid OID"
		}
		v = v<<7 | uint64(c&0x7f)
		if c&0x80 != 0 {
			if i == len(b)-1 {
				return "invalid OID"
			}
			continue
		}
		if parts == nil {
			switch {
			case v < 40:
				parts = append(parts, "0", strconv.FormatUint(v, 10))
			case v < 80:
				parts = append(parts, "1", strconv.FormatUint(v-40, 10))
			default:
				parts = append(parts, "2", strconv.FormatUint(v-80, 10))
			}
		} else {
			parts = append(parts, strconv.FormatUint(v, 10))
		}
		v = 0
	}
	return "OID " + strings.Join(parts, ".")
}

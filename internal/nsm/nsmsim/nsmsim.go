// Package nsmsim simulates the AWS Nitro Security Module for development
// machines and tests. It answers the same requests as /dev/nsm through the
// same Send method as github.com/hf/nsm's Session, and its attestation
// documents have exactly the form of real ones: an untagged COSE_Sign1
// signed with ES384, whose payload is the nine-key map in AWS's order with
// CBOR null for absent fields, PCRs 0–15 of 48 bytes, a leaf certificate that
// lives three hours and a cabundle of four certificates, root first. The
// only difference is the root: the simulator's own development CA (see CA),
// which no production verifier trusts.
package nsmsim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/enclave-signer/enclave-signer/pkg/pcr"
	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
)

const (
	leafLifetime  = 3 * time.Hour
	leafBackdate  = 3 * time.Second
	maxUserField  = 1024
	lockedPCRs    = 16
	maxPCRs       = 32
	maxRequestLen = 0x1000 // the NSM driver's request buffer
)

// Options configures a Simulator. The zero value of every field but CA has
// a documented default.
type Options struct {
	// CA signs the documents. Required.
	CA *CA
	// PCRs overrides measurements by index (0–15), 48 bytes each. PCRs not
	// given take DefaultPCRs' values.
	PCRs map[int][]byte
	// DebugMode zeroes PCR0, 1, 2 and 8, as the Nitro hypervisor does for an
	// enclave started with --debug-mode; PCR3 and PCR4 stay measured.
	DebugMode bool
	// InstanceID is the parent instance's id; empty means a random one.
	InstanceID string
	// Region names the region in certificate subjects; empty means us-east-1.
	Region string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Simulator is a simulated NSM. It is safe for concurrent use.
type Simulator struct {
	ca       *CA
	moduleID string
	region   string
	instance string
	now      func() time.Time

	mu      sync.Mutex
	pcrs    [maxPCRs][]byte
	locked  [maxPCRs]bool
	leaf    *x509.Certificate
	leafKey *ecdsa.PrivateKey
	bundle  []*x509.Certificate
	enclave [8]byte
}

// DefaultPCRs returns the measurements of the simulated enclave image:
// fixed, recognisable values for PCR0, 1 and 2 (so a key policy can pin
// them), PCR3 of a simulated instance role, PCR4 of instanceID, and zero
// elsewhere (PCR8 is zero: the image is unsigned).
func DefaultPCRs(instanceID string) map[int][]byte {
	m := make(map[int][]byte, lockedPCRs)
	for i := range lockedPCRs {
		m[i] = pcr.Zero()
	}
	m[0] = pcr.Image([]byte("enclave-signer simulated enclave image (PCR0)"))
	m[1] = pcr.Image([]byte("enclave-signer simulated kernel and boot ramfs (PCR1)"))
	m[2] = pcr.Image([]byte("enclave-signer simulated application (PCR2)"))
	m[3] = pcr.RoleARN(SimulatedRoleARN)
	m[4] = pcr.InstanceID(instanceID)
	return m
}

// SimulatedRoleARN is the instance role whose PCR3 the simulator presents.
const SimulatedRoleARN = "arn:aws:iam::000000000000:role/dev"

// New returns a simulator.
func New(opts Options) (*Simulator, error) {
	if opts.CA == nil {
		return nil, errors.New("nsmsim: Options.CA is required")
	}
	s := &Simulator{ca: opts.CA, now: opts.Now, region: opts.Region, instance: opts.InstanceID}
	if s.now == nil {
		s.now = time.Now
	}
	if s.region == "" {
		s.region = "us-east-1"
	}
	if s.instance == "" {
		s.instance = "i-0" + hex.EncodeToString(randomBytes(8))
	}
	// The enclave id: creation time in ms in the first 6 bytes, as real
	// module ids have it, then random.
	ms := uint64(s.now().UnixMilli())
	binary.BigEndian.PutUint64(s.enclave[:], ms<<16)
	copy(s.enclave[6:], randomBytes(2))
	s.moduleID = fmt.Sprintf("%s-enc%x", s.instance, s.enclave)

	for i, v := range DefaultPCRs(s.instance) {
		s.pcrs[i] = v
	}
	for i, v := range opts.PCRs {
		if i < 0 || i >= lockedPCRs {
			return nil, fmt.Errorf("nsmsim: PCR%d: only PCRs 0 to %d are measured at boot", i, lockedPCRs-1)
		}
		if len(v) != pcr.Size {
			return nil, fmt.Errorf("nsmsim: PCR%d is %d bytes, want %d", i, len(v), pcr.Size)
		}
		s.pcrs[i] = bytes.Clone(v)
	}
	if opts.DebugMode {
		for _, i := range []int{0, 1, 2, 8} {
			s.pcrs[i] = pcr.Zero()
		}
	}
	for i := lockedPCRs; i < maxPCRs; i++ {
		s.pcrs[i] = pcr.Zero()
	}
	for i := range lockedPCRs {
		s.locked[i] = true
	}
	return s, nil
}

// ModuleID returns the simulated enclave's module id.
func (s *Simulator) ModuleID() string { return s.moduleID }

// PCR returns the current value of PCR index.
func (s *Simulator) PCR(index int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.pcrs[index])
}

// Close does nothing; it exists so the simulator can stand where an
// *nsm.Session is closed.
func (s *Simulator) Close() error { return nil }

// Read fills p with random bytes, as nsm.Session.Read does with GetRandom.
func (s *Simulator) Read(p []byte) (int, error) { return rand.Read(p) }

// Send answers one request. Like the device, it sees the request only as
// the CBOR that hf/nsm encodes, and its answer goes through hf/nsm's own
// response decoder.
func (s *Simulator) Send(req request.Request) (response.Response, error) {
	reqCBOR, err := cbor.Marshal(req.Encoded())
	if err != nil {
		return response.Response{}, err
	}
	answer := s.handle(reqCBOR)
	out, err := cbor.Marshal(answer)
	if err != nil {
		return response.Response{}, err
	}
	var res response.Response
	if err := cbor.Unmarshal(out, &res); err != nil {
		return response.Response{}, fmt.Errorf("nsmsim: decode own response: %w", err)
	}
	return res, nil
}

func nsmError(code response.ErrorCode) map[string]any {
	return map[string]any{"Error": string(code)}
}

// handle decodes a request as the NSM does (a bare string for requests
// without arguments, else a one-entry map) and returns the response value.
func (s *Simulator) handle(reqCBOR []byte) any {
	if len(reqCBOR) > maxRequestLen {
		return nsmError(response.ECInputTooLarge)
	}
	var name string
	if err := cbor.Unmarshal(reqCBOR, &name); err == nil {
		switch name {
		case "DescribeNSM":
			locked := make([]uint16, 0, lockedPCRs)
			s.mu.Lock()
			for i := range maxPCRs {
				if s.locked[i] {
					locked = append(locked, uint16(i))
				}
			}
			s.mu.Unlock()
			return map[string]any{"DescribeNSM": map[string]any{
				"version_major": 1, "version_minor": 0, "version_patch": 0,
				"module_id": s.moduleID, "max_pcrs": maxPCRs, "locked_pcrs": locked, "digest": "SHA384",
			}}
		case "GetRandom":
			return map[string]any{"GetRandom": map[string]any{"random": randomBytes(256)}}
		}
		return nsmError(response.ECInvalidOperation)
	}
	var m map[string]cbor.RawMessage
	if err := cbor.Unmarshal(reqCBOR, &m); err != nil || len(m) != 1 {
		return nsmError(response.ECInvalidArgument)
	}
	for name, body := range m {
		switch name {
		case "Attestation":
			var a struct {
				UserData  []byte `cbor:"user_data"`
				Nonce     []byte `cbor:"nonce"`
				PublicKey []byte `cbor:"public_key"`
			}
			if err := cbor.Unmarshal(body, &a); err != nil {
				return nsmError(response.ECInvalidArgument)
			}
			if len(a.UserData) > maxUserField || len(a.Nonce) > maxUserField || len(a.PublicKey) > maxUserField {
				return nsmError(response.ECInputTooLarge)
			}
			doc, err := s.attest(a.PublicKey, a.UserData, a.Nonce)
			if err != nil {
				return nsmError(response.ECInternalError)
			}
			return map[string]any{"Attestation": map[string]any{"document": doc}}
		case "DescribePCR", "ExtendPCR", "LockPCR":
			var p struct {
				Index uint16 `cbor:"index"`
				Data  []byte `cbor:"data"`
			}
			if err := cbor.Unmarshal(body, &p); err != nil {
				return nsmError(response.ECInvalidArgument)
			}
			if p.Index >= maxPCRs {
				return nsmError("InvalidIndex")
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			switch name {
			case "DescribePCR":
				return map[string]any{"DescribePCR": map[string]any{"lock": s.locked[p.Index], "data": bytes.Clone(s.pcrs[p.Index])}}
			case "ExtendPCR":
				if s.locked[p.Index] {
					return nsmError(response.ECReadOnlyIndex)
				}
				s.pcrs[p.Index] = pcr.Extend(s.pcrs[p.Index], p.Data)
				return map[string]any{"ExtendPCR": map[string]any{"data": bytes.Clone(s.pcrs[p.Index])}}
			default:
				s.locked[p.Index] = true
				return "LockPCR"
			}
		}
	}
	return nsmError(response.ECInvalidOperation)
}

// payload is the attestation document's payload. Field order is the wire
// order of real documents (serde struct order): digest before timestamp,
// unlike the CDDL in AWS's documentation. Nil byte slices encode as null.
type payload struct {
	ModuleID    string          `cbor:"module_id"`
	Digest      string          `cbor:"digest"`
	Timestamp   uint64          `cbor:"timestamp"`
	PCRs        cbor.RawMessage `cbor:"pcrs"`
	Certificate []byte          `cbor:"certificate"`
	CABundle    [][]byte        `cbor:"cabundle"`
	PublicKey   []byte          `cbor:"public_key"`
	UserData    []byte          `cbor:"user_data"`
	Nonce       []byte          `cbor:"nonce"`
}

type coseSign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected map[int]any
	Payload     []byte
	Signature   []byte
}

var sortedMaps = func() cbor.EncMode {
	em, err := cbor.EncOptions{Sort: cbor.SortCanonical}.EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

func (s *Simulator) attest(publicKey, userData, nonce []byte) ([]byte, error) {
	now := s.now()
	leaf, key, bundle, err := s.currentLeaf(now)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	pcrs := make(map[uint64][]byte)
	for i := range maxPCRs {
		if s.locked[i] {
			pcrs[uint64(i)] = bytes.Clone(s.pcrs[i])
		}
	}
	s.mu.Unlock()
	// The PCR map goes out in index order, as the NSM writes it.
	pcrCBOR, err := sortedMaps.Marshal(pcrs)
	if err != nil {
		return nil, err
	}
	p := payload{
		ModuleID:    s.moduleID,
		Digest:      "SHA384",
		Timestamp:   uint64(now.UnixMilli()),
		PCRs:        pcrCBOR,
		Certificate: leaf.Raw,
		PublicKey:   publicKey,
		UserData:    userData,
		Nonce:       nonce,
	}
	for _, c := range bundle {
		p.CABundle = append(p.CABundle, c.Raw)
	}
	payloadCBOR, err := cbor.Marshal(p)
	if err != nil {
		return nil, err
	}
	protected := []byte{0xa1, 0x01, 0x38, 0x22} // {1: -35}: ES384
	toSign, err := cbor.Marshal([]any{"Signature1", protected, []byte{}, payloadCBOR})
	if err != nil {
		return nil, err
	}
	digest := sha512.Sum384(toSign)
	r, sv, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 96)
	r.FillBytes(sig[:48])
	sv.FillBytes(sig[48:])
	return cbor.Marshal(coseSign1{Protected: protected, Unprotected: map[int]any{}, Payload: payloadCBOR, Signature: sig})
}

// currentLeaf returns the enclave's signing certificate, issuing a new one
// when the last has less than a minute left. Like the hypervisor, the
// simulator reuses one leaf for every document while it is valid.
func (s *Simulator) currentLeaf(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leaf != nil && now.Add(time.Minute).Before(s.leaf.NotAfter) && !now.Before(s.leaf.NotBefore) {
		return s.leaf, s.leafKey, s.bundle, nil
	}
	bundle, issuerKey, err := s.ca.issuer(now, s.region, s.instance)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	// Serial: the 8-byte enclave id, four zero bytes, the issuance time in
	// Unix seconds, as in real leaves.
	serial := make([]byte, 16)
	copy(serial, s.enclave[:])
	binary.BigEndian.PutUint32(serial[12:], uint32(now.Unix()))
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(serial),
		Subject: pkix.Name{
			Country: []string{"US"}, Province: []string{"Washington"}, Locality: []string{"Seattle"},
			Organization: []string{"Amazon"}, OrganizationalUnit: []string{"AWS"},
			CommonName: fmt.Sprintf("%s.%s.aws", s.moduleID, s.region),
		},
		NotBefore:             now.Add(-leafBackdate),
		NotAfter:              now.Add(leafLifetime),
		BasicConstraintsValid: true,
		IsCA:                  false,
		// keyUsage digitalSignature + nonRepudiation, non-critical as in
		// real leaves (Go would mark its own KeyUsage extension critical).
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: false, Value: []byte{0x03, 0x02, 0x06, 0xc0}}},
	}
	issuer := bundle[len(bundle)-1]
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, issuerKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("nsmsim: issue leaf: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	s.leaf, s.leafKey, s.bundle = leaf, key, bundle
	return leaf, key, bundle, nil
}

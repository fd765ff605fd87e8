package policy

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/imagepins"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

// PolicyID is the Id of a rendered policy, as in the operator guide.
const PolicyID = "sign-service-enclave-key-policy"

// Sids of the rendered statements. Tools that update a policy find the
// enclave's statement by its Sid.
const (
	SidEnclaveDecrypt      = "AllowEnclaveDecrypt"
	SidDebugEnclaveDecrypt = "AllowDebugEnclaveDecrypt"
	SidEncrypt             = "AllowEncrypt"
	SidKeyAdministration   = "AllowKeyAdministration"
	SidKeyUsageViaGrant    = "AllowKeyUsageViaGrant"
)

// ZeroPCR is the value of PCR0, 1, 2 and 8 in a debug-mode enclave's
// attestation document: 48 zero bytes, 96 hex digits.
var ZeroPCR = strings.Repeat("0", 2*pcr.Size)

// adminActions is the guide's list for the key administrator.
var adminActions = []string{
	"kms:Create*",
	"kms:Describe*",
	"kms:Enable*",
	"kms:List*",
	"kms:Put*",
	"kms:Update*",
	"kms:Revoke*",
	"kms:Disable*",
	"kms:Get*",
	"kms:Delete*",
	"kms:TagResource",
	"kms:UntagResource",
	"kms:ScheduleKeyDeletion",
	"kms:CancelKeyDeletion",
}

// RenderOptions are the inputs of Render. Role ARNs are IAM role ARNs
// (arn:aws:iam::ACCOUNT:role/NAME).
type RenderOptions struct {
	// ImageSha384 lists the PCR0 values allowed to decrypt (96 hex digits,
	// either case), one per enclave image: several during a blue-green
	// rollout. At least one is required.
	ImageSha384 []string
	// EnclaveRole is the parent instance's role, the caller of kms:Decrypt.
	EnclaveRole string
	// EncryptRole may call kms:Encrypt (sealing identities).
	EncryptRole string
	// AdminRole administers the key and manages grants for AWS resources.
	AdminRole string
	// PCRs pins further registers (kms:RecipientAttestation:PCRn), n in
	// 1..31; PCR0 comes from ImageSha384 only. Values are 96 hex digits.
	PCRs map[int]string
	// PCR3RoleARN pins PCR3 to this IAM role ARN (computed as the Nitro
	// hypervisor does, see pcr.RoleARN).
	PCR3RoleARN string
	// PCR4InstanceID pins PCR4 to this EC2 instance id (pcr.InstanceID).
	PCR4InstanceID string
	// Debug adds the AllowDebugEnclaveDecrypt statement, which admits
	// debug-mode enclaves (all-zero PCR0): for development only.
	Debug bool
}

// Render builds the operator guide's key policy: AllowEnclaveDecrypt
// (kms:Decrypt to EnclaveRole only for the attested images and pins),
// optionally AllowDebugEnclaveDecrypt, AllowEncrypt, AllowKeyAdministration
// and AllowKeyUsageViaGrant. warnings are for the operator (stderr).
//
// The debug statement pins ImageSha384 to zeros and keeps the PCR3, PCR4
// and PCR16–31 pins, which debug mode does not zero; it drops the PCR1, 2
// and 8 pins, which debug mode zeroes.
func Render(o RenderOptions) (p *Policy, warnings []string, err error) {
	for _, r := range []struct{ flag, arn string }{
		{"enclave role", o.EnclaveRole}, {"encrypt role", o.EncryptRole}, {"admin role", o.AdminRole},
	} {
		if r.arn == "" {
			return nil, nil, fmt.Errorf("render policy: no %s ARN", r.flag)
		}
		if err := pcr.ValidateRoleARN(r.arn); err != nil {
			return nil, nil, fmt.Errorf("render policy: %s: %w", r.flag, err)
		}
	}
	if len(o.ImageSha384) == 0 {
		return nil, nil, errors.New("render policy: no PCR0 (image measurement) given")
	}
	var images []string
	for i, v := range o.ImageSha384 {
		h, err := normalizeHex(v)
		if err != nil {
			return nil, nil, fmt.Errorf("render policy: PCR0 #%d: %w", i+1, err)
		}
		if h == ZeroPCR {
			return nil, nil, errors.New("render policy: PCR0 is all zeros, the value of every debug-mode enclave: use Debug for that, never a measured image")
		}
		if slices.Contains(images, h) {
			warnings = append(warnings, fmt.Sprintf("PCR0 %s given twice; listed once", h))
			continue
		}
		images = append(images, h)
	}
	pins := map[int]string{}
	for n, v := range o.PCRs {
		if n == 0 {
			return nil, nil, errors.New("render policy: PCR0 is pinned through the measurements (kms:RecipientAttestation:ImageSha384), not as an extra PCR")
		}
		if n < 0 || n > 31 {
			return nil, nil, fmt.Errorf("render policy: PCR%d: want a PCR index from 1 to 31", n)
		}
		h, err := normalizeHex(v)
		if err != nil {
			return nil, nil, fmt.Errorf("render policy: PCR%d: %w", n, err)
		}
		if h == ZeroPCR && (n == 1 || n == 2 || n == 8) {
			warnings = append(warnings, fmt.Sprintf("PCR%d pinned to all zeros: that is a debug-mode enclave's value", n))
		}
		pins[n] = h
	}
	if o.PCR3RoleARN != "" {
		if _, dup := pins[3]; dup {
			return nil, nil, errors.New("render policy: PCR3 given both as a value and as a role ARN: want one")
		}
		if err := pcr.ValidateRoleARN(o.PCR3RoleARN); err != nil {
			return nil, nil, fmt.Errorf("render policy: PCR3 role: %w", err)
		}
		pins[3] = hex.EncodeToString(pcr.RoleARN(o.PCR3RoleARN))
		if o.PCR3RoleARN != o.EnclaveRole {
			warnings = append(warnings, fmt.Sprintf("PCR3 role %s differs from the enclave role %s: PCR3 hashes the parent instance's role", o.PCR3RoleARN, o.EnclaveRole))
		}
	}
	if o.PCR4InstanceID != "" {
		if _, dup := pins[4]; dup {
			return nil, nil, errors.New("render policy: PCR4 given both as a value and as an instance id: want one")
		}
		if err := pcr.ValidateInstanceID(o.PCR4InstanceID); err != nil {
			return nil, nil, fmt.Errorf("render policy: PCR4: %w", err)
		}
		pins[4] = hex.EncodeToString(pcr.InstanceID(o.PCR4InstanceID))
	}
	pinNums := make([]int, 0, len(pins))
	for n := range pins {
		pinNums = append(pinNums, n)
	}
	slices.Sort(pinNums)

	decrypt := func(sid string, image Values, keep func(int) bool) *Statement {
		c := Condition{Operator: "StringEqualsIgnoreCase", Keys: []ConditionKey{{Key: KeyImageSha384, Values: image}}}
		for _, n := range pinNums {
			if keep(n) {
				c.Keys = append(c.Keys, ConditionKey{Key: KeyPCR(n), Values: One(pins[n])})
			}
		}
		return &Statement{
			Sid:       sid,
			Effect:    Allow,
			Principal: awsPrincipal(o.EnclaveRole),
			Action:    One("kms:Decrypt"),
			Resource:  One("*"),
			Condition: []Condition{c},
		}
	}
	image := List(images...)
	if len(images) == 1 {
		image = One(images[0])
	}
	p = &Policy{Version: Version2012, ID: PolicyID}
	p.Statements = append(p.Statements, decrypt(SidEnclaveDecrypt, image, func(int) bool { return true }))
	if o.Debug {
		p.Statements = append(p.Statements, decrypt(SidDebugEnclaveDecrypt, One(ZeroPCR), func(n int) bool { return n != 1 && n != 2 && n != 8 }))
		warnings = append(warnings, "DEVELOPMENT ONLY: statement "+SidDebugEnclaveDecrypt+" lets any debug-mode enclave (all-zero PCR0) on the enclave role's instances decrypt; a debug enclave's memory and console are open to the parent. Never apply this policy to a production key.")
	}
	p.Statements = append(p.Statements,
		&Statement{
			Sid:       SidEncrypt,
			Effect:    Allow,
			Principal: awsPrincipal(o.EncryptRole),
			Action:    One("kms:Encrypt"),
			Resource:  One("*"),
		},
		&Statement{
			Sid:       SidKeyAdministration,
			Effect:    Allow,
			Principal: awsPrincipal(o.AdminRole),
			Action:    List(adminActions...),
			Resource:  One("*"),
		},
		&Statement{
			Sid:       SidKeyUsageViaGrant,
			Effect:    Allow,
			Principal: awsPrincipal(o.AdminRole),
			Action:    List("kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"),
			Resource:  One("*"),
			Condition: []Condition{{Operator: "Bool", Keys: []ConditionKey{{Key: "kms:GrantIsForAWSResource", Values: One("true")}}}},
		},
	)
	return p, warnings, nil
}

func awsPrincipal(arn string) *Principal {
	return &Principal{Entries: []PrincipalEntry{{Type: "AWS", Values: One(arn)}}}
}

// normalizeHex checks a PCR value (96 hex digits, either case) and returns
// it in lowercase, the form KMS compares.
func normalizeHex(v string) (string, error) {
	if _, err := pcr.ParseHex(v); err != nil {
		return "", err
	}
	return strings.ToLower(v), nil
}

// Measurements are the PCRs nitro-cli prints for an enclave image
// (build-enclave, describe-eif).
type Measurements struct {
	HashAlgorithm string
	// PCRs maps register numbers to lowercase hex values; PCR0 is always
	// present.
	PCRs map[int]string
	// ImageID and Pins are what make eif adds beside nitro-cli's output
	// (signer image pins --measurements): the enclave image's id and its
	// pins. Pins is nil when the file records none (nitro-cli's own
	// output), so whether the image pins its KMS key is unknown.
	ImageID string
	Pins    *imagepins.Pins
}

// ParseMeasurements reads the JSON that `nitro-cli build-enclave` prints on
// stdout ({"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": …}})
// or `nitro-cli describe-eif` (the same object among more fields). Lines
// before the JSON object, such as build-enclave's progress messages when
// stderr was captured too, are skipped. name labels errors (the file name).
func ParseMeasurements(name string, data []byte) (*Measurements, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("measurements %s: %s", name, fmt.Sprintf(format, a...))
	}
	if len(data) > 1<<20 {
		return nil, fail("%d bytes, more than nitro-cli prints (1 MiB at most)", len(data))
	}
	// Skip leading non-JSON lines.
	for len(data) > 0 {
		trimmed := bytes.TrimLeft(data, " \t\r")
		if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
			data = trimmed
			break
		}
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			data = nil
			break
		}
		data = data[i+1:]
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fail("no JSON object: want the output of nitro-cli build-enclave or describe-eif")
	}
	root, err := readJSON(data)
	if err != nil {
		return nil, fail("%v", err)
	}
	if root.kind == jArray {
		return nil, fail("a list (nitro-cli describe-enclaves output?): want the output of nitro-cli build-enclave or describe-eif; a running enclave's PCRs are not the attested ones in debug mode")
	}
	if root.kind != jObject {
		return nil, fail("%v, want a JSON object with a \"Measurements\" field", root.kind)
	}
	var meas *jnode
	for _, m := range root.members {
		if m.key == "Measurements" {
			meas = m.val
		}
	}
	if meas == nil {
		return nil, fail("no \"Measurements\" field")
	}
	if meas.kind != jObject {
		return nil, fail("field \"Measurements\" is %v, want an object", meas.kind)
	}
	out := &Measurements{PCRs: map[int]string{}}
	for _, m := range meas.members {
		field := "\"Measurements\".\"" + m.key + "\""
		if m.key == "HashAlgorithm" {
			if m.val.kind != jString {
				return nil, fail("field %s is %v, want a string", field, m.val.kind)
			}
			if !strings.HasPrefix(m.val.s, "Sha384") {
				return nil, fail("field %s is %q, want Sha384 (Nitro PCRs are SHA-384)", field, m.val.s)
			}
			out.HashAlgorithm = m.val.s
			continue
		}
		numStr, ok := strings.CutPrefix(m.key, "PCR")
		n, err := strconv.Atoi(numStr)
		if !ok || err != nil || n < 0 || n > 31 || numStr != strconv.Itoa(n) {
			continue // fields a later nitro-cli may add
		}
		if m.val.kind != jString {
			return nil, fail("field %s is %v, want 96 hex characters", field, m.val.kind)
		}
		h, err := normalizeHex(m.val.s)
		if err != nil {
			return nil, fail("field %s: %v", field, err)
		}
		out.PCRs[n] = h
	}
	if _, ok := out.PCRs[0]; !ok {
		return nil, fail("no field \"Measurements\".\"PCR0\"")
	}
	var extra struct {
		ImageID string          `json:"ImageID"`
		Pins    *imagepins.Pins `json:"Pins"`
	}
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&extra); err != nil {
		return nil, fail("field \"Pins\" or \"ImageID\": %v (make eif writes them: signer image pins --measurements)", err)
	}
	out.ImageID, out.Pins = extra.ImageID, extra.Pins
	if p := out.Pins; p != nil && (p.KMSKeys == nil || p.KeyringSigners == nil) {
		out.Pins = &imagepins.Pins{KMSKeys: nonNil(p.KMSKeys), KeyringSigners: nonNil(p.KeyringSigners), KeyringThreshold: p.KeyringThreshold}
	}
	return out, nil
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

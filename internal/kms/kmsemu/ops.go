package kmsemu

import (
	"errors"
	"sort"

	"fmt"
	"github.com/enclave-signer/enclave-signer/internal/policy"
	"io"
	"regexp"
	"strconv"
	"time"
)

// handler runs one operation for an authenticated call. It returns the
// response object, or an error (an *APIError is sent as is; anything else
// is a 500).
type handler func(s *Server, c *call) (any, error)

// operations are the KMS operations the emulator models. Every other
// X-Amz-Target gets UnknownOperationException.
var operations = map[string]handler{
	"CreateKey":       (*Server).createKey,
	"DescribeKey":     (*Server).describeKey,
	"ListKeys":        (*Server).listKeys,
	"CreateAlias":     (*Server).createAlias,
	"ListAliases":     (*Server).listAliases,
	"Encrypt":         (*Server).encrypt,
	"Decrypt":         (*Server).decrypt,
	"GenerateDataKey": (*Server).generateDataKey,
	"GenerateRandom":  (*Server).generateRandom,
	"GetKeyPolicy":    (*Server).getKeyPolicy,
	"PutKeyPolicy":    (*Server).putKeyPolicy,
	"Sign":            (*Server).sign,
	"Verify":          (*Server).verify,
	"GetPublicKey":    (*Server).getPublicKey,
}

// Operations returns the names of the operations the emulator models.
func Operations() []string {
	out := make([]string, 0, len(operations))
	for op := range operations {
		out = append(out, op)
	}
	return out
}

const symmetricDefault = "SYMMETRIC_DEFAULT"

// epoch is how awsJson1_1 encodes timestamps: seconds since the epoch.
func epoch(t time.Time) float64 {
	return float64(t.UnixMilli()) / 1000
}

type keyMetadata struct {
	AWSAccountId          string
	KeyId                 string
	Arn                   string
	CreationDate          float64
	Enabled               bool
	Description           string
	KeyUsage              string
	KeyState              string
	Origin                string
	KeyManager            string
	CustomerMasterKeySpec string
	KeySpec               string
	EncryptionAlgorithms  []string `json:",omitempty"`
	SigningAlgorithms     []string `json:",omitempty"`
	MultiRegion           bool
}

func metadata(k *keyRecord) keyMetadata {
	encryption, signing := k.algorithms()
	return keyMetadata{
		AWSAccountId:          k.Account,
		KeyId:                 k.ID,
		Arn:                   k.arn(),
		CreationDate:          epoch(k.CreationDate),
		Enabled:               true,
		Description:           k.Description,
		KeyUsage:              k.usage(),
		KeyState:              "Enabled",
		Origin:                "AWS_KMS",
		KeyManager:            "CUSTOMER",
		CustomerMasterKeySpec: k.spec(),
		KeySpec:               k.spec(),
		EncryptionAlgorithms:  encryption,
		SigningAlgorithms:     signing,
	}
}

// checkUnmodelled refuses request members the emulator accepts
// syntactically but does not implement.
func checkUnmodelled(grantTokens []string, dryRun *bool, alg string) error {
	if len(grantTokens) > 0 {
		return notModelled("grants (GrantTokens)")
	}
	if dryRun != nil && *dryRun {
		return notModelled("DryRun")
	}
	if alg != "" && alg != symmetricDefault {
		return apiErr(CodeInvalidKeyUsage, "The encryption algorithm %s is not compatible with the type of key (kmsemu encrypts only under %s keys)", alg, symmetricDefault)
	}
	return nil
}

func checkContext(ec map[string]string) error {
	for k := range ec {
		if k == "" {
			return validationError("Value at 'encryptionContext' failed to satisfy constraint: keys must not be empty")
		}
	}
	return nil
}

type createKeyRequest struct {
	Policy                         *string
	Description                    string
	KeyUsage                       string
	KeySpec                        string
	CustomerMasterKeySpec          string
	Origin                         string
	Tags                           []Tag
	BypassPolicyLockoutSafetyCheck bool
	MultiRegion                    *bool
}

func (s *Server) createKey(c *call) (any, error) {
	var req createKeyRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	spec, usage, err := keyType(req.KeySpec, req.CustomerMasterKeySpec, req.KeyUsage)
	if err != nil {
		return nil, err
	}
	switch {
	case req.Origin != "" && req.Origin != "AWS_KMS":
		return nil, notModelled("Origin " + req.Origin + " (only AWS_KMS)")
	case req.MultiRegion != nil && *req.MultiRegion:
		return nil, notModelled("multi-Region keys")
	case len(req.Description) > 8192:
		return nil, validationError("Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192")
	}
	for i, t := range req.Tags {
		if t.TagKey == "" || len(t.TagKey) > 128 || len(t.TagValue) > 256 {
			return nil, apiErr("TagException", "Tags[%d]: TagKey must be 1 to 128 characters and TagValue at most 256", i)
		}
	}
	k := &keyRecord{
		ID:           s.newUUID(),
		Account:      c.account,
		Region:       c.region,
		CreationDate: s.now().UTC(),
		Description:  req.Description,
		Tags:         req.Tags,
		KeySpec:      spec,
		KeyUsage:     usage,
	}
	if err := k.newMaterial(s.rand()); err != nil {
		return nil, err
	}
	if req.Policy == nil {
		k.Policy = DefaultKeyPolicy(c.account)
	} else {
		if *req.Policy == "" {
			return nil, validationError("Value at 'policy' failed to satisfy constraint: Member must have length greater than or equal to 1")
		}
		k.Policy = *req.Policy
	}
	p, err := parsePolicy(k.Policy)
	if err != nil {
		return nil, err
	}
	k.parsed = p
	if req.Policy != nil && !req.BypassPolicyLockoutSafetyCheck {
		if err := s.lockoutCheck(c, k, p); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.update(func(st *state) error {
		st.Keys = append(st.Keys, k)
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.log.Info("key created", "key_id", k.ID, "key_spec", spec, "key_usage", usage, "default_policy", req.Policy == nil)
	return map[string]any{"KeyMetadata": metadata(k)}, nil
}

// lockoutCheck is KMS's policy lockout safety check: the new policy p
// must let the caller change the policy again.
func (s *Server) lockoutCheck(c *call, k *keyRecord, p *policy.Policy) error {
	if err := s.authorize(c, "kms:PutKeyPolicy", resolved{key: k}, p, nil); err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == CodeAccessDenied {
			c.log.Warn("policy lockout safety check failed", "key_id", k.ID)
			return apiErr(CodeMalformedPolicyDocument, "The new key policy will not allow you to update the key policy in the future.")
		}
		return err
	}
	return nil
}

type keyIDRequest struct {
	KeyId       string
	GrantTokens []string
}

func (s *Server) describeKey(c *call) (any, error) {
	var req keyIDRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if err := checkUnmodelled(req.GrantTokens, nil, ""); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resolveKey(c, "keyId", req.KeyId, true)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(c, "kms:DescribeKey", r, nil, nil); err != nil {
		return nil, err
	}
	return map[string]any{"KeyMetadata": metadata(r.key)}, nil
}

type listRequest struct {
	KeyId  string
	Limit  *int
	Marker string
}

// page returns the slice [start, end) of n items for Limit and Marker, and
// the next marker ("" when done).
func page(req listRequest, n int) (start, end int, next string, err error) {
	limit := 100
	if req.Limit != nil {
		if *req.Limit < 1 || *req.Limit > 1000 {
			return 0, 0, "", validationError("Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000", *req.Limit)
		}
		limit = *req.Limit
	}
	if req.Marker != "" {
		start, err = strconv.Atoi(req.Marker)
		if err != nil || start < 0 || start > n {
			return 0, 0, "", apiErr(CodeInvalidMarker, "Marker %q is not one this server returned", req.Marker)
		}
	}
	end = min(start+limit, n)
	if end < n {
		next = strconv.Itoa(end)
	}
	return start, end, next, nil
}

func listResponse(member string, items any, next string) map[string]any {
	out := map[string]any{member: items, "Truncated": next != ""}
	if next != "" {
		out["NextMarker"] = next
	}
	return out
}

type keyListEntry struct {
	KeyId  string
	KeyArn string
}

func (s *Server) listKeys(c *call) (any, error) {
	var req struct {
		Limit  *int
		Marker string
	}
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []keyListEntry
	for _, k := range s.st.Keys {
		if k.Account == c.account && k.Region == c.region {
			keys = append(keys, keyListEntry{KeyId: k.ID, KeyArn: k.arn()})
		}
	}
	start, end, next, err := page(listRequest{Limit: req.Limit, Marker: req.Marker}, len(keys))
	if err != nil {
		return nil, err
	}
	return listResponse("Keys", append([]keyListEntry{}, keys[start:end]...), next), nil
}

var aliasNameRE = regexp.MustCompile(`^alias/[a-zA-Z0-9:/_-]+$`)

func (s *Server) createAlias(c *call) (any, error) {
	var req struct {
		AliasName   string
		TargetKeyId string
	}
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	switch {
	case req.AliasName == "":
		return nil, required("aliasName")
	case len(req.AliasName) > 256:
		return nil, validationError("Value at 'aliasName' failed to satisfy constraint: Member must have length less than or equal to 256")
	case !aliasNameRE.MatchString(req.AliasName):
		return nil, apiErr(CodeInvalidAliasName, "Alias must start with the prefix \"alias/\" followed by letters, digits, '/', '_', '-' or ':', got %q", req.AliasName)
	case len(req.AliasName) >= len("alias/aws/") && req.AliasName[:len("alias/aws/")] == "alias/aws/":
		return nil, apiErr(CodeInvalidAliasName, "Cannot create alias with prefix 'alias/aws/'")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resolveKey(c, "targetKeyId", req.TargetKeyId, false)
	if err != nil {
		return nil, err
	}
	if r.key.Account != c.account {
		return nil, apiErr(CodeNotFound, "Key '%s' does not exist in your account", r.key.arn())
	}
	if err := s.authorize(c, "kms:CreateAlias", r, nil, nil); err != nil {
		return nil, err
	}
	if a := s.aliasByName(c.account, c.region, req.AliasName); a != nil {
		return nil, apiErr(CodeAlreadyExists, "An alias with the name %s already exists", a.arn())
	}
	now := s.now().UTC()
	err = s.update(func(st *state) error {
		st.Aliases = append(st.Aliases, &aliasRecord{
			Name: req.AliasName, Account: c.account, Region: c.region,
			TargetKeyID: r.key.ID, CreationDate: now, LastUpdatedDate: now,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.log.Info("alias created", "alias", req.AliasName, "key_id", r.key.ID)
	return nil, nil
}

type aliasListEntry struct {
	AliasName       string
	AliasArn        string
	TargetKeyId     string
	CreationDate    float64
	LastUpdatedDate float64
}

func (s *Server) listAliases(c *call) (any, error) {
	var req listRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	target := ""
	if req.KeyId != "" {
		r, err := s.resolveKey(c, "keyId", req.KeyId, false)
		if err != nil {
			return nil, err
		}
		target = r.key.ID
	}
	var out []aliasListEntry
	for _, a := range s.st.Aliases {
		if a.Account == c.account && a.Region == c.region && (target == "" || a.TargetKeyID == target) {
			out = append(out, aliasListEntry{
				AliasName: a.Name, AliasArn: a.arn(), TargetKeyId: a.TargetKeyID,
				CreationDate: epoch(a.CreationDate), LastUpdatedDate: epoch(a.LastUpdatedDate),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AliasName < out[j].AliasName })
	start, end, next, err := page(req, len(out))
	if err != nil {
		return nil, err
	}
	return listResponse("Aliases", append([]aliasListEntry{}, out[start:end]...), next), nil
}

func (s *Server) encrypt(c *call) (any, error) {
	var req struct {
		KeyId               string
		Plaintext           []byte
		EncryptionContext   map[string]string
		GrantTokens         []string
		EncryptionAlgorithm string
		DryRun              *bool
	}
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if err := checkBlob("plaintext", req.Plaintext, 4096); err != nil {
		return nil, err
	}
	if err := checkUnmodelled(req.GrantTokens, req.DryRun, req.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkContext(req.EncryptionContext); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resolveKey(c, "keyId", req.KeyId, true)
	if err != nil {
		return nil, err
	}
	extra := encryptionContextKeys(req.EncryptionContext)
	if extra == nil {
		extra = map[string][]string{}
	}
	extra["kms:EncryptionAlgorithm"] = []string{symmetricDefault}
	if err := s.authorize(c, "kms:Encrypt", r, nil, extra); err != nil {
		return nil, err
	}
	if err := requireUsage(c, r.key, usageEncryptDecrypt); err != nil {
		return nil, err
	}
	blob, err := sealBlob(s.rand(), r.key, req.Plaintext, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return map[string]any{"CiphertextBlob": blob, "KeyId": r.key.arn(), "EncryptionAlgorithm": symmetricDefault}, nil
}

// openRecipient validates a Recipient parameter and hands it to the
// OpenRecipient hook. It returns nil when the request has no Recipient.
func (s *Server) openRecipient(c *call, r *RecipientInfo) (*AttestedRecipient, error) {
	if r == nil {
		return nil, nil
	}
	if s.OpenRecipient == nil {
		c.log.Error("request carries Recipient, which this kmsemu build does not support (Server.OpenRecipient is nil)")
		return nil, apiErr(CodeValidation, "Recipient is not supported by this emulator build yet")
	}
	if len(r.AttestationDocument) == 0 {
		return nil, required("recipient.attestationDocument")
	}
	if len(r.AttestationDocument) > 262144 {
		return nil, validationError("Value at 'recipient.attestationDocument' failed to satisfy constraint: Member must have length less than or equal to 262144")
	}
	if r.KeyEncryptionAlgorithm != "RSAES_OAEP_SHA_256" {
		return nil, validationError("Value '%s' at 'recipient.keyEncryptionAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [RSAES_OAEP_SHA_256]", r.KeyEncryptionAlgorithm)
	}
	ar, err := s.OpenRecipient(c.ctx, *r)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			c.log.Warn("recipient refused", "code", ae.Code, "why", ae.Message)
			return nil, ae
		}
		return nil, fmt.Errorf("OpenRecipient: %w", err)
	}
	if ar == nil || ar.Seal == nil {
		return nil, errors.New("OpenRecipient returned no Seal function")
	}
	return ar, nil
}

// withRecipient merges the attestation condition keys into extra.
func withRecipient(extra map[string][]string, ar *AttestedRecipient) map[string][]string {
	if ar == nil {
		return extra
	}
	if extra == nil {
		extra = map[string][]string{}
	}
	for k, v := range ar.ConditionKeys {
		extra[k] = v
	}
	return extra
}

func (s *Server) decrypt(c *call) (any, error) {
	var req struct {
		CiphertextBlob      []byte
		EncryptionContext   map[string]string
		GrantTokens         []string
		KeyId               string
		EncryptionAlgorithm string
		Recipient           *RecipientInfo
		DryRun              *bool
	}
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if err := checkBlob("ciphertextBlob", req.CiphertextBlob, 6144); err != nil {
		return nil, err
	}
	if err := checkUnmodelled(req.GrantTokens, req.DryRun, req.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	ar, err := s.openRecipient(c, req.Recipient)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	blobID, err := blobKeyID(req.CiphertextBlob)
	if err != nil {
		c.log.Info("invalid ciphertext", "why", err)
		return nil, apiErr(CodeInvalidCiphertext, "The ciphertext is not a valid kmsemu ciphertext blob")
	}
	var r resolved
	if req.KeyId != "" {
		r, err = s.resolveKey(c, "keyId", req.KeyId, true)
		if err != nil {
			return nil, err
		}
		if r.key.ID != blobID {
			c.log.Info("ciphertext is for another key", "key_id", r.key.ID, "blob_key_id", blobID)
			return nil, apiErr(CodeIncorrectKey, "The key ID in the request does not identify a KMS key that can perform this operation.")
		}
	} else {
		for _, k := range s.st.Keys {
			if k.ID == blobID && k.Region == c.region {
				r.key = k
			}
		}
		if r.key == nil {
			c.log.Info("ciphertext names a key that does not exist here", "blob_key_id", blobID)
			return nil, apiErr(CodeInvalidCiphertext, "The ciphertext refers to a KMS key that does not exist in this region")
		}
	}
	extra := withRecipient(encryptionContextKeys(req.EncryptionContext), ar)
	if extra == nil {
		extra = map[string][]string{}
	}
	extra["kms:EncryptionAlgorithm"] = []string{symmetricDefault}
	if err := s.authorize(c, "kms:Decrypt", r, nil, extra); err != nil {
		return nil, err
	}
	if err := requireUsage(c, r.key, usageEncryptDecrypt); err != nil {
		return nil, err
	}
	pt, err := openBlob(r.key, req.CiphertextBlob, req.EncryptionContext)
	if err != nil {
		c.log.Info("invalid ciphertext", "key_id", r.key.ID, "why", err)
		return nil, apiErr(CodeInvalidCiphertext, "The ciphertext failed authentication: it was tampered with, or the encryption context differs from the one it was encrypted with")
	}
	out := map[string]any{"KeyId": r.key.arn(), "EncryptionAlgorithm": symmetricDefault}
	return withPlaintext(out, pt, ar)
}

// dataKeySize validates NumberOfBytes / KeySpec (exactly one) and returns
// the size.
func dataKeySize(numberOfBytes *int, keySpec string) (int, error) {
	switch {
	case numberOfBytes != nil && keySpec != "":
		return 0, apiErr(CodeValidation, "Please specify either number of bytes or key spec, not both.")
	case numberOfBytes == nil && keySpec == "":
		return 0, apiErr(CodeValidation, "Please specify either number of bytes or key spec.")
	case numberOfBytes != nil:
		if *numberOfBytes < 1 || *numberOfBytes > 1024 {
			return 0, validationError("Value '%d' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024", *numberOfBytes)
		}
		return *numberOfBytes, nil
	case keySpec == "AES_256":
		return 32, nil
	case keySpec == "AES_128":
		return 16, nil
	}
	return 0, validationError("Value '%s' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]", keySpec)
}

func (s *Server) random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand(), b); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	return b, nil
}

func (s *Server) generateDataKey(c *call) (any, error) {
	var req struct {
		KeyId             string
		EncryptionContext map[string]string
		NumberOfBytes     *int
		KeySpec           string
		GrantTokens       []string
		Recipient         *RecipientInfo
		DryRun            *bool
	}
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	n, err := dataKeySize(req.NumberOfBytes, req.KeySpec)
	if err != nil {
		return nil, err
	}
	if err := checkUnmodelled(req.GrantTokens, req.DryRun, ""); err != nil {
		return nil, err
	}
	if err := checkContext(req.EncryptionContext); err != nil {
		return nil, err
	}
	ar, err := s.openRecipient(c, req.Recipient)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resolveKey(c, "keyId", req.KeyId, true)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(c, "kms:GenerateDataKey", r, nil, withRecipient(encryptionContextKeys(req.EncryptionContext), ar)); err != nil {
		return nil, err
	}
	if err := requireUsage(c, r.key, usageEncryptDecrypt); err != nil {
		return nil, err
	}
	pt, err := s.random(n)
	if err != nil {
		return nil, err
	}
	blob, err := sealBlob(s.rand(), r.key, pt, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"CiphertextBlob": blob, "KeyId": r.key.arn()}
	return withPlaintext(out, pt, ar)
}

func (s *Server) generateRandom(c *call) (any, error) {
	var req struct {
		NumberOfBytes *int
		Recipient     *RecipientInfo
	}
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if req.NumberOfBytes == nil {
		return nil, required("numberOfBytes")
	}
	if n := *req.NumberOfBytes; n < 1 || n > 1024 {
		return nil, validationError("Value '%d' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024", n)
	}
	// GenerateRandom is bound to no key, so no key policy applies.
	ar, err := s.openRecipient(c, req.Recipient)
	if err != nil {
		return nil, err
	}
	pt, err := s.random(*req.NumberOfBytes)
	if err != nil {
		return nil, err
	}
	return withPlaintext(map[string]any{}, pt, ar)
}

func checkPolicyName(name *string) error {
	if name != nil && *name != "default" {
		return apiErr(CodeValidation, "PolicyName %q: the only valid key policy name is \"default\"", *name)
	}
	return nil
}

func (s *Server) getKeyPolicy(c *call) (any, error) {
	var req struct {
		KeyId      string
		PolicyName *string
	}
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if err := checkPolicyName(req.PolicyName); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resolveKey(c, "keyId", req.KeyId, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(c, "kms:GetKeyPolicy", r, nil, nil); err != nil {
		return nil, err
	}
	return map[string]any{"Policy": r.key.Policy, "PolicyName": "default"}, nil
}

func (s *Server) putKeyPolicy(c *call) (any, error) {
	var req struct {
		KeyId                          string
		PolicyName                     *string
		Policy                         *string
		BypassPolicyLockoutSafetyCheck bool
	}
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if err := checkPolicyName(req.PolicyName); err != nil {
		return nil, err
	}
	if req.Policy == nil {
		return nil, required("policy")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resolveKey(c, "keyId", req.KeyId, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(c, "kms:PutKeyPolicy", r, nil, map[string][]string{
		"kms:BypassPolicyLockoutSafetyCheck": {strconv.FormatBool(req.BypassPolicyLockoutSafetyCheck)},
	}); err != nil {
		return nil, err
	}
	p, err := parsePolicy(*req.Policy)
	if err != nil {
		c.log.Info("malformed key policy refused", "key_id", r.key.ID, "why", err)
		return nil, err
	}
	if !req.BypassPolicyLockoutSafetyCheck {
		if err := s.lockoutCheck(c, r.key, p); err != nil {
			return nil, err
		}
	}
	err = s.update(func(st *state) error {
		for _, k := range st.Keys {
			if k.ID == r.key.ID {
				k.Policy = *req.Policy
				k.parsed = p
				return nil
			}
		}
		return fmt.Errorf("key %s vanished", r.key.ID)
	})
	if err != nil {
		return nil, err
	}
	c.log.Info("key policy replaced", "key_id", r.key.ID)
	return nil, nil
}

// withPlaintext puts pt in the answer: sealed to the attested recipient as
// CiphertextForRecipient (and Plaintext absent), or as Plaintext when the
// request carried no Recipient.
func withPlaintext(out map[string]any, pt []byte, ar *AttestedRecipient) (map[string]any, error) {
	if ar == nil {
		out["Plaintext"] = pt
		return out, nil
	}
	sealed, err := ar.Seal(pt)
	clear(pt)
	if err != nil {
		return nil, fmt.Errorf("sealing for recipient: %w", err)
	}
	out["CiphertextForRecipient"] = sealed
	return out, nil
}

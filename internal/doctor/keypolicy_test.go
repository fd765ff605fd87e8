package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/policy"
)

func status(t *testing.T, name string) *ShimStatus {
	t.Helper()
	var st ShimStatus
	if err := json.Unmarshal(fixture(t, "shim/"+name), &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func enclave(t *testing.T, name string) *Enclave {
	t.Helper()
	list, err := ParseDescribeEnclaves(fixture(t, "nitro-cli/"+name))
	if err != nil {
		t.Fatal(err)
	}
	return &list[0]
}

var imdsFacts = instanceFacts{role: "NitroEnclaveInstanceRole", account: "123456789012", partition: "aws", instanceID: "i-1234567890abcdef0", region: "us-east-1"}

func TestCheckKeyPolicy(t *testing.T) {
	prod := renderPolicy(t, false, pcr0v1)
	withDebug := renderPolicy(t, true, pcr0v1)
	pcr3Pinned := func(role string) string {
		p, _, err := policy.Render(policy.RenderOptions{ImageSha384: []string{pcr0v1}, EnclaveRole: enclaveRole,
			EncryptRole: enclaveRole, AdminRole: enclaveRole, PCR3RoleARN: role})
		if err != nil {
			t.Fatal(err)
		}
		return string(p.Marshal())
	}
	rootOnly := `{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}`

	tests := []struct {
		name    string
		doc     string
		getErr  error
		cfg     Config // KeyID, Measurements, EnclaveRole
		enclave string // describe-enclaves fixture
		status  string // shim status fixture
		inst    *instanceFacts
		wants   []want
	}{
		{name: "production, all allowed", doc: prod, cfg: Config{Measurements: measurements(t, pcr0v1)},
			enclave: "describe-running.json", status: "status-ready.json",
			wants: []want{
				{OK, "key " + keyID + " lets " + sessionARN + " call kms:Decrypt with PCR0 287b24930a9f0fe1… (AllowEnclaveDecrypt)", ""},
				{OK, "EIF eif.json: PCR0 287b24930a9f0fe1… is allowed (statement AllowEnclaveDecrypt)", ""},
				{OK, "the running enclave's attested PCR0 287b24930a9f0fe1… is allowed (statement AllowEnclaveDecrypt)", ""},
			}},
		{name: "debug enclave, production policy", doc: prod, cfg: Config{Measurements: measurements(t, pcr0v1)},
			enclave: "describe-debug.json", status: "status-ready-debug.json",
			wants: []want{
				{OK, "with PCR0 287b24930a9f0fe1… (AllowEnclaveDecrypt)", ""},
				{OK, "EIF eif.json: PCR0 287b24930a9f0fe1… is allowed", ""},
				{Error, "the running enclave is in debug mode: it presents an all-zero PCR0, which the policy does not allow", "signer policy render --debug"},
				{OK, "describe-enclaves shows the image's PCR0 287b24930a9f0fe1…, but a debug-mode enclave attests all zeros", ""},
			}},
		{name: "debug enclave, debug policy", doc: withDebug,
			enclave: "describe-debug.json", status: "status-ready-debug.json",
			wants: []want{
				{OK, "287b24930a9f0fe1… (AllowEnclaveDecrypt), 0000000000000000… (AllowDebugEnclaveDecrypt)", ""},
				{Skipped, "no --measurements", ""},
				{Warning, "in debug mode and the policy lets its all-zero PCR0 decrypt (statement AllowDebugEnclaveDecrypt)", "without --debug"},
				{OK, "describe-enclaves shows the image's PCR0", ""},
			}},
		{name: "production enclave, debug policy", doc: withDebug,
			enclave: "describe-running.json", status: "status-ready.json",
			wants: []want{
				{OK, "AllowDebugEnclaveDecrypt", ""},
				{Skipped, "no --measurements", ""},
				{OK, "attested PCR0 287b24930a9f0fe1… is allowed", ""},
				{Warning, "lets any debug-mode enclave decrypt (all-zero PCR0, statement AllowDebugEnclaveDecrypt)", "remove statement AllowDebugEnclaveDecrypt"},
			}},
		{name: "new EIF not in the policy", doc: prod, cfg: Config{Measurements: measurements(t, pcr0v2), MeasurementsName: "v2.json"},
			enclave: "describe-running.json", status: "status-ready.json",
			wants: []want{
				{OK, "AllowEnclaveDecrypt", ""},
				{Error, "EIF v2.json: PCR0 d980c72546e1ef1b… may not decrypt: no statement allows kms:Decrypt", "signer policy update --key-id " + keyID + " --measurements v2.json"},
				{Warning, "the running enclave's image (describe-enclaves PCR0 287b24930a9f0fe1…) is not the EIF v2.json (PCR0 d980c72546e1ef1b…)", "nitro-cli describe-eif"},
				{OK, "attested PCR0 287b24930a9f0fe1… is allowed", ""},
			}},
		{name: "attested PCR0 not in the policy", doc: renderPolicy(t, false, pcr0v2),
			enclave: "describe-running.json", status: "status-failed-accessdenied.json",
			wants: []want{
				{OK, "with PCR0 d980c72546e1ef1b… (AllowEnclaveDecrypt)", ""},
				{Skipped, "no --measurements", ""},
				{Error, "the running enclave's attested PCR0 287b24930a9f0fe1… may not decrypt", "signer policy update --key-id " + keyID},
			}},
		{name: "no shim: expected from describe-enclaves", doc: prod,
			enclave: "describe-running.json",
			wants: []want{
				{OK, "AllowEnclaveDecrypt", ""},
				{Skipped, "no --measurements", ""},
				{OK, "the running enclave's expected (from describe-enclaves; the shim reported no PCRs) PCR0 287b24930a9f0fe1… is allowed", ""},
			}},
		{name: "no shim, debug enclave", doc: prod, enclave: "describe-debug.json",
			wants: []want{
				{OK, "AllowEnclaveDecrypt", ""},
				{Skipped, "no --measurements", ""},
				{Error, "debug mode: it presents an all-zero PCR0", "signer policy render --debug"},
			}},
		{name: "no enclave known", doc: prod,
			wants: []want{
				{OK, "AllowEnclaveDecrypt", ""},
				{Skipped, "no --measurements", ""},
				{Skipped, "no running enclave's PCR0 known", ""},
			}},
		{name: "shim and nitro-cli disagree", doc: renderPolicy(t, false, pcr0v1, pcr0v2),
			enclave: "describe-running.json", status: "status-ready.json",
			cfg: Config{Measurements: measurements(t, pcr0v2)},
			wants: []want{
				{OK, "287b24930a9f0fe1… (AllowEnclaveDecrypt), d980c72546e1ef1b… (AllowEnclaveDecrypt)", ""},
				{OK, "EIF eif.json: PCR0 d980c72546e1ef1b… is allowed", ""},
				{Warning, "is not the EIF eif.json", "describe-eif"},
				{OK, "attested PCR0 287b24930a9f0fe1… is allowed", ""},
			}},
		{name: "PCR3 pinned to the instance role", doc: pcr3Pinned(enclaveRole), cfg: Config{Measurements: measurements(t, pcr0v1)},
			enclave: "describe-running.json",
			wants: []want{
				{OK, "AllowEnclaveDecrypt", ""},
				{OK, "EIF eif.json: PCR0 287b24930a9f0fe1… is allowed", ""},
				{OK, "expected (from describe-enclaves; the shim reported no PCRs) PCR0 287b24930a9f0fe1… is allowed", ""},
			}},
		{name: "PCR3 pinned to another role", doc: pcr3Pinned("arn:aws:iam::123456789012:role/Other"), cfg: Config{Measurements: measurements(t, pcr0v1)},
			enclave: "describe-running.json", status: "status-ready.json",
			wants: []want{
				{OK, "AllowEnclaveDecrypt", ""},
				{Error, "EIF eif.json: PCR0 287b24930a9f0fe1… may not decrypt: ", "signer policy update"},
				{Error, "attested PCR0 287b24930a9f0fe1… may not decrypt: ", "signer policy update"},
			}},
		{name: "another principal", doc: prod, cfg: Config{EnclaveRole: "arn:aws:iam::123456789012:role/SomeoneElse"},
			wants: []want{
				{Error, "no statement lets arn:aws:iam::123456789012:role/SomeoneElse (--enclave-role) call kms:Decrypt with an attested PCR0", "signer policy render"},
				{Skipped, "no --measurements", ""},
				{Skipped, "no running enclave's PCR0 known", ""},
			}},
		{name: "--enclave-role as the role", doc: prod, cfg: Config{EnclaveRole: enclaveRole, Measurements: measurements(t, pcr0v1)}, inst: &instanceFacts{},
			wants: []want{
				{OK, "lets " + enclaveRole + " call kms:Decrypt", ""},
				{OK, "EIF eif.json: PCR0 287b24930a9f0fe1… is allowed", ""},
				{Skipped, "no running enclave's PCR0 known", ""},
			}},
		{name: "default key policy", doc: rootOnly,
			wants: []want{
				{Error, sessionARN + " may call kms:Decrypt without any attestation document (statement Enable IAM User Permissions)", "signer policy check --production"},
				{Skipped, "no --measurements", ""},
				{Skipped, "no running enclave's PCR0 known", ""},
			}},
		{name: "principal unknown", doc: prod, inst: &instanceFacts{},
			wants: []want{{Warning, "no principal to evaluate it for", "--enclave-role arn:aws:iam::ACCOUNT:role/NAME"}}},
		{name: "GetKeyPolicy denied", getErr: errors.New("operation error KMS: GetKeyPolicy, https response error StatusCode: 400, api error AccessDeniedException: User: x is not authorized to perform: kms:GetKeyPolicy"),
			wants: []want{{Error, "GetKeyPolicy " + keyID + ": operation error KMS", "key administrator's credentials"}}},
		{name: "GetKeyPolicy not found", getErr: errors.New("api error NotFoundException: Key 'x' does not exist"),
			wants: []want{{Error, "NotFoundException", "--region"}}},
		{name: "policy unreadable", doc: `{"Statement": [`,
			wants: []want{{Error, "key " + keyID + ": policy:", "signer policy check"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getter := &fakePolicy{doc: tt.doc, err: tt.getErr}
			cfg := tt.cfg
			cfg.KeyID = keyID
			if cfg.MeasurementsName == "" {
				cfg.MeasurementsName = "eif.json"
			}
			var gotRegion string
			cfg.NewPolicyGetter = func(_ context.Context, region string) (PolicyGetter, error) {
				gotRegion = region
				return getter, nil
			}
			f := keyPolicyFacts{region: "us-east-1", inst: imdsFacts}
			if tt.inst != nil {
				f.inst = *tt.inst
			}
			if tt.enclave != "" {
				f.enclave = enclave(t, tt.enclave)
			}
			if tt.status != "" {
				f.status = status(t, tt.status)
			}
			got := checkKeyPolicy(context.Background(), &cfg, f)
			checkResults(t, got, tt.wants)
			if getter.keyID != keyID || gotRegion != "us-east-1" {
				t.Errorf("GetKeyPolicy(%q) in %q, want %q in us-east-1", getter.keyID, gotRegion, keyID)
			}
		})
	}

	t.Run("skipped without --key-id", func(t *testing.T) {
		called := false
		cfg := &Config{NewPolicyGetter: func(context.Context, string) (PolicyGetter, error) { called = true; return nil, nil }}
		checkResults(t, checkKeyPolicy(context.Background(), cfg, keyPolicyFacts{}), []want{{Skipped, "no --key-id", ""}})
		if called {
			t.Error("a KMS client was made without --key-id")
		}
	})
	t.Run("client error", func(t *testing.T) {
		cfg := &Config{KeyID: keyID, NewPolicyGetter: func(context.Context, string) (PolicyGetter, error) {
			return nil, errors.New("no AWS region configured")
		}}
		checkResults(t, checkKeyPolicy(context.Background(), cfg, keyPolicyFacts{}), []want{{Error, "cannot make a KMS client: no AWS region configured", "--region"}})
	})
}

func TestAllowedImagesUsesEvaluate(t *testing.T) {
	// A Deny with the same PCR0 is not a grant, a statement for another
	// principal neither, and a negated operator never lists its values.
	doc := `{"Version":"2012-10-17","Statement":[
	 {"Sid":"A","Effect":"Allow","Principal":{"AWS":"` + enclaveRole + `"},"Action":"kms:Decrypt","Resource":"*",
	  "Condition":{"StringEqualsIgnoreCase":{"kms:RecipientAttestation:ImageSha384":["` + strings.ToUpper(pcr0v1) + `","` + pcr0v2 + `"]}}},
	 {"Sid":"Other","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/Other"},"Action":"kms:Decrypt","Resource":"*",
	  "Condition":{"StringEquals":{"kms:RecipientAttestation:PCR0":"` + policy.ZeroPCR + `"}}},
	 {"Sid":"Not","Effect":"Allow","Principal":{"AWS":"` + enclaveRole + `"},"Action":"kms:Decrypt","Resource":"*",
	  "Condition":{"StringNotEquals":{"kms:RecipientAttestation:ImageSha384":"` + policy.ZeroPCR + `"}}},
	 {"Sid":"NoV2","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*",
	  "Condition":{"StringEquals":{"kms:RecipientAttestation:ImageSha384":"` + pcr0v2 + `"}}}]}`
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got := allowedImages(p, sessionARN, "", nil)
	// Per statement, A grants both (the Deny is another statement); the
	// full-policy verdict below sees the Deny.
	if len(got) != 2 || got[0] != (allowedImage{pcr0v1, "A"}) || got[1] != (allowedImage{pcr0v2, "A"}) {
		t.Errorf("allowedImages = %v", got)
	}
	if d := p.Evaluate(policy.Request{Principal: sessionARN, Action: "kms:Decrypt", Context: attestContext(map[int]string{0: pcr0v2})}); d.Allowed || !d.ExplicitDeny {
		t.Errorf("full policy on v2: %+v, want the explicit deny", d)
	}
}

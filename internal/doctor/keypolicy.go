package doctor

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/policy"
	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

type keyPolicyFacts struct {
	region  string
	enclave *Enclave // the running enclave nitro-cli described, or nil
	inst    instanceFacts
	status  *ShimStatus // the shim's status, or nil
}

// principal is who KMS sees call kms:Decrypt, and the role ARN PCR3 is
// computed from ("" when unknown).
type principal struct {
	arn     string
	roleARN string
	source  string
}

func resolvePrincipal(cfg *Config, inst instanceFacts) (principal, bool) {
	if cfg.EnclaveRole != "" {
		p := principal{arn: cfg.EnclaveRole, source: "--enclave-role"}
		if a, ok := splitARN(cfg.EnclaveRole); ok {
			switch {
			case a.service == "iam" && strings.HasPrefix(a.resource, "role/"):
				p.roleARN = cfg.EnclaveRole
			case a.service == "sts" && strings.HasPrefix(a.resource, "assumed-role/"):
				name, _, _ := strings.Cut(strings.TrimPrefix(a.resource, "assumed-role/"), "/")
				p.roleARN = fmt.Sprintf("arn:%s:iam::%s:role/%s", a.partition, a.account, name)
			}
		}
		return p, true
	}
	if inst.role == "" || inst.account == "" {
		return principal{}, false
	}
	part := inst.partition
	if part == "" {
		part = "aws"
	}
	p := principal{
		roleARN: fmt.Sprintf("arn:%s:iam::%s:role/%s", part, inst.account, inst.role),
		source:  "the instance role from IMDS",
	}
	p.arn = p.roleARN
	if inst.instanceID != "" {
		p.arn = fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", part, inst.account, inst.role, inst.instanceID)
	}
	return p, true
}

// attestContext is the request context KMS builds from an attestation
// document with these PCRs (index → lowercase hex).
func attestContext(pcrs map[int]string) map[string][]string {
	ctx := map[string][]string{}
	for n, v := range pcrs {
		if v == "" {
			continue
		}
		ctx[policy.KeyPCR(n)] = []string{v}
		if n == 0 {
			ctx[policy.KeyImageSha384] = []string{v}
		}
	}
	return ctx
}

func merge(ms ...map[int]string) map[int]string {
	out := map[int]string{}
	for _, m := range ms {
		for k, v := range m {
			if v != "" {
				out[k] = v
			}
		}
	}
	return out
}

// debugPCRs are the registers a debug-mode enclave presents as zeros.
func debugPCRs() map[int]string {
	return map[int]string{0: policy.ZeroPCR, 1: policy.ZeroPCR, 2: policy.ZeroPCR, 8: policy.ZeroPCR}
}

func isZero(v string) bool { return v != "" && strings.Trim(v, "0") == "" }

// allowedImage is a PCR0 a statement lets the principal decrypt with.
type allowedImage struct{ value, statement string }

// allowedImages lists, per Allow statement, the ImageSha384 (or PCR0)
// values it names that Evaluate confirms it grants kms:Decrypt for, the
// statement's other attestation pins assumed met (or, where the
// statement does not pin them, the instance's own PCR3 and PCR4).
func allowedImages(p *policy.Policy, who, resource string, inst map[int]string) []allowedImage {
	var out []allowedImage
	for i, s := range p.Statements {
		if s.Effect != policy.Allow {
			continue
		}
		var values []string
		pins := map[string][]string{}
		for k, v := range attestContext(inst) {
			pins[strings.ToLower(k)] = v
		}
		for _, c := range s.Condition {
			op := strings.TrimSuffix(strings.ToLower(c.Operator), "ifexists")
			for _, k := range c.Keys {
				key := strings.ToLower(k.Key)
				if key == strings.ToLower(policy.KeyImageSha384) || key == strings.ToLower(policy.KeyPCR(0)) {
					for _, v := range k.Values.List {
						values = append(values, strings.ToLower(v))
					}
					continue
				}
				if (op == "stringequals" || op == "stringequalsignorecase") && strings.HasPrefix(key, "kms:recipientattestation:") && len(k.Values.List) > 0 {
					pins[key] = []string{k.Values.List[0]}
				}
			}
		}
		one := &policy.Policy{Version: p.Version, Statements: []*policy.Statement{s}}
		seen := map[string]bool{}
		for _, v := range values {
			if seen[v] {
				continue
			}
			seen[v] = true
			ctx := map[string][]string{}
			for k, vv := range pins {
				ctx[k] = vv
			}
			ctx[strings.ToLower(policy.KeyImageSha384)] = []string{v}
			ctx[strings.ToLower(policy.KeyPCR(0))] = []string{v}
			d := one.Evaluate(policy.Request{Principal: who, Action: "kms:Decrypt", Resource: resource, Context: ctx})
			if d.Allowed {
				out = append(out, allowedImage{value: v, statement: p.Label(i)})
			}
		}
	}
	return out
}

var pcrHexRE = regexp.MustCompile(`[0-9a-fA-F]{96}`)

// reason is a decision's reason on one line, PCR values abbreviated.
func reason(d policy.Decision) string {
	return oneLine(pcrHexRE.ReplaceAllStringFunc(d.Reason, short), 500)
}

func keyResource(keyID string) string {
	if a, ok := splitARN(keyID); ok && a.service == "kms" && strings.HasPrefix(a.resource, "key/") {
		return keyID
	}
	return "" // matches "Resource": "*", as key policies write it
}

func checkKeyPolicy(ctx context.Context, cfg *Config, f keyPolicyFacts) []Result {
	res := func(s Status, fix, format string, a ...any) Result {
		return Result{Check: CheckKeyPolicy, Status: s, Message: fmt.Sprintf(format, a...), Fix: fix}
	}
	if cfg.KeyID == "" {
		return []Result{res(Skipped, "", "no --key-id: the key policy was not checked")}
	}
	if cfg.NewPolicyGetter == nil {
		return []Result{res(Skipped, "", "no KMS client configured")}
	}
	getter, err := cfg.NewPolicyGetter(ctx, f.region)
	if err != nil {
		return []Result{res(Error, "pass --region (the key's region) and check the AWS configuration (AWS_PROFILE, --endpoint-url)",
			"cannot make a KMS client: %s", oneLine(err.Error(), 400))}
	}
	gctx, cancel := context.WithTimeout(ctx, 3*cfg.timeout())
	doc, err := getter.GetKeyPolicy(gctx, cfg.KeyID)
	cancel()
	if err != nil {
		fix := "check --key-id, --region and --endpoint-url"
		if strings.Contains(err.Error(), "AccessDenied") {
			fix = "doctor reads the policy with kms:GetKeyPolicy as whoever its AWS credentials name (the instance role, unless AWS_PROFILE or AWS_ACCESS_KEY_ID say otherwise); run it with the key administrator's credentials (the AllowKeyAdministration role), or without --key-id"
		}
		return []Result{res(Error, fix, "GetKeyPolicy %s: %s", cfg.KeyID, oneLine(err.Error(), 400))}
	}
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		return []Result{res(Error, "signer policy check FILE explains what is wrong with it", "key %s: %v", cfg.KeyID, err)}
	}
	who, ok := resolvePrincipal(cfg, f.inst)
	if !ok {
		return []Result{res(Warning,
			"pass --enclave-role arn:aws:iam::ACCOUNT:role/NAME, the instance role the key policy names",
			"key %s: policy read, but no principal to evaluate it for: no --enclave-role, and IMDS gave no role and account", cfg.KeyID)}
	}
	resource := keyResource(cfg.KeyID)

	// The instance's own PCR3 and PCR4: from the enclave's attestation
	// when the shim reports it, else computed as the hypervisor does.
	inst := map[int]string{}
	if f.status != nil {
		inst[3], inst[4] = f.status.PCR(3), f.status.PCR(4)
	}
	if inst[3] == "" && who.roleARN != "" {
		inst[3] = hex.EncodeToString(pcr.RoleARN(who.roleARN))
	}
	instanceID := f.inst.instanceID
	if instanceID == "" && f.enclave != nil {
		if id, _, ok := strings.Cut(f.enclave.EnclaveID, "-enc"); ok {
			instanceID = id
		}
	}
	if inst[4] == "" && instanceID != "" {
		inst[4] = hex.EncodeToString(pcr.InstanceID(instanceID))
	}
	decide := func(pcrs map[int]string) policy.Decision {
		return p.Evaluate(policy.Request{Principal: who.arn, Action: "kms:Decrypt", Resource: resource, Context: attestContext(pcrs)})
	}
	updateFix := func(file string) string {
		return fmt.Sprintf("signer policy update --key-id %s --measurements %s (adds its PCR0 to AllowEnclaveDecrypt), then restart the enclave", cfg.KeyID, file)
	}

	var out []Result
	// An unattested decrypt makes attestation optional, and every other
	// verdict moot.
	unattested := p.Evaluate(policy.Request{Principal: who.arn, Action: "kms:Decrypt", Resource: resource})
	// What the policy allows, statement by statement.
	allowed := allowedImages(p, who.arn, resource, inst)
	switch {
	case len(allowed) > 0:
		var list []string
		for _, a := range allowed {
			list = append(list, fmt.Sprintf("%s (%s)", short(a.value), a.statement))
		}
		out = append(out, res(OK, "", "key %s lets %s call kms:Decrypt with PCR0 %s", cfg.KeyID, who.arn, strings.Join(list, ", ")))
	case !unattested.Allowed:
		d := decide(merge(inst, map[int]string{0: strings.Repeat("f", 96)}))
		out = append(out, res(Error,
			"render the policy with signer policy render --enclave-role ROLE --measurements FILE …, or add the EIF's PCR0 with signer policy update; the principal must be the instance role",
			"no statement lets %s (%s) call kms:Decrypt with an attested PCR0: %s", who.arn, who.source, reason(d)))
	}
	if unattested.Allowed {
		out = append(out, res(Error,
			fmt.Sprintf("give statement %s a kms:RecipientAttestation:ImageSha384 condition or remove it; signer policy check --production FILE lists such statements", unattested.Statement),
			"%s may call kms:Decrypt without any attestation document (statement %s): attestation is optional, anyone with the role's credentials can decrypt", who.arn, unattested.Statement))
	}

	// The EIF's measurements.
	var eifPCR0 string
	if cfg.Measurements == nil {
		out = append(out, res(Skipped, "", "no --measurements: the EIF's PCR0 was not checked"))
	} else {
		eif := map[int]string{}
		for n, v := range cfg.Measurements.PCRs {
			eif[n] = strings.ToLower(v)
		}
		eifPCR0 = eif[0]
		if d := decide(merge(inst, eif)); d.Allowed {
			out = append(out, res(OK, "", "EIF %s: PCR0 %s is allowed (statement %s)", cfg.MeasurementsName, short(eifPCR0), d.Statement))
		} else {
			out = append(out, res(Error, updateFix(cfg.MeasurementsName),
				"EIF %s: PCR0 %s may not decrypt: %s", cfg.MeasurementsName, short(eifPCR0), reason(d)))
		}
		if f.enclave != nil && f.enclave.ImagePCR0() != "" && f.enclave.ImagePCR0() != eifPCR0 {
			out = append(out, res(Warning,
				"run the EIF you checked, or pass the running image's measurements (nitro-cli describe-eif --eif-path FILE > measurements.json)",
				"the running enclave's image (describe-enclaves PCR0 %s) is not the EIF %s (PCR0 %s)", short(f.enclave.ImagePCR0()), cfg.MeasurementsName, short(eifPCR0)))
		}
	}

	// The running enclave: its attested PCRs from the shim, else what
	// describe-enclaves implies (zeros for a debug enclave).
	var attested map[int]string
	source := ""
	debug := false
	if f.status != nil && f.status.PCR(0) != "" {
		attested = map[int]string{}
		for k := range f.status.PCRs {
			var n int
			if _, err := fmt.Sscan(k, &n); err == nil && n >= 0 && n < 32 {
				attested[n] = f.status.PCR(n)
			}
		}
		source = "attested"
		debug = f.status.DebugMode || isZero(attested[0])
	} else if f.enclave != nil && f.enclave.ImagePCR0() != "" {
		debug = f.enclave.Debug()
		attested = map[int]string{}
		if debug {
			attested = debugPCRs()
		} else {
			for _, n := range []int{0, 1, 2, 8} {
				attested[n] = strings.ToLower(f.enclave.Measurements[fmt.Sprintf("PCR%d", n)])
			}
		}
		source = "expected (from describe-enclaves; the shim reported no PCRs)"
	}
	if attested == nil {
		out = append(out, res(Skipped, "", "no running enclave's PCR0 known: the shim reported none and nitro-cli described no running enclave"))
	} else {
		d := decide(merge(inst, attested))
		a0 := attested[0]
		switch {
		case debug && d.Allowed:
			out = append(out, res(Warning,
				"development only: for production run the enclave without --debug-mode and drop the debug statement (signer policy render without --debug, then signer policy update)",
				"the running enclave is in debug mode and the policy lets its all-zero PCR0 decrypt (statement %s)", d.Statement))
		case debug:
			out = append(out, res(Error,
				"for development: signer policy render --debug … adds AllowDebugEnclaveDecrypt (the all-zero PCR0), then put that policy; for production: run the enclave without --debug-mode",
				"the running enclave is in debug mode: it presents an all-zero PCR0, which the policy does not allow (%s)", reason(d)))
		case d.Allowed:
			out = append(out, res(OK, "", "the running enclave's %s PCR0 %s is allowed (statement %s)", source, short(a0), d.Statement))
		default:
			fix := "signer policy update --key-id " + cfg.KeyID + " --measurements FILE with the running EIF's measurements (nitro-cli describe-eif --eif-path EIF), or run the EIF the policy names"
			out = append(out, res(Error, fix, "the running enclave's %s PCR0 %s may not decrypt: %s", source, short(a0), reason(d)))
		}
		// describe-enclaves against the attestation.
		if source == "attested" && f.enclave != nil && f.enclave.ImagePCR0() != "" {
			img := f.enclave.ImagePCR0()
			switch {
			case debug && img != a0:
				out = append(out, res(OK, "",
					"describe-enclaves shows the image's PCR0 %s, but a debug-mode enclave attests all zeros: KMS sees the zeros (nitro-cli prints image PCRs even in debug mode)", short(img)))
			case !debug && img != a0:
				out = append(out, res(Warning,
					"check which enclave the shim talks to (its enclave address and CID) against nitro-cli describe-enclaves",
					"the shim's enclave attests PCR0 %s, but describe-enclaves shows %s: two different enclaves?", short(a0), short(img)))
			}
		}
	}

	// The debug PCR0 in a production setting.
	if !debug && !unattested.Allowed {
		if d := decide(merge(inst, debugPCRs())); d.Allowed {
			out = append(out, res(Warning,
				fmt.Sprintf("remove statement %s for production (signer policy render without --debug, then signer policy update); signer policy check --production flags it", d.Statement),
				"the policy lets any debug-mode enclave decrypt (all-zero PCR0, statement %s): whoever can start a debug enclave of their own image on an instance with this role gets the key", d.Statement))
		}
	}
	return out
}

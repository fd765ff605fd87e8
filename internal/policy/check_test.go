package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func findings(fs []Finding, rule string) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Rule == rule {
			out = append(out, f)
		}
	}
	return out
}

func dump(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  [%s] %s\n", f.Rule, f)
	}
	return b.String()
}

func TestCheckRenderedPolicies(t *testing.T) {
	for _, name := range []string{"guide-policy.json", "guide-policy-multi.json", "guide-policy-pcr3.json"} {
		p := mustParse(t, string(readFile(t, name)))
		fs := Check(p, true)
		if HasErrors(fs) {
			t.Errorf("%s has errors in production:\n%s", name, dump(fs))
		}
		// The admin statements keep the expected warnings: kms:Create*
		// and kms:Put* reach CreateGrant and PutKeyPolicy.
		ind := findings(fs, RuleIndirectDecrypt)
		if len(ind) != 2 || ind[0].Sid != SidKeyAdministration || ind[0].What != "allows kms:CreateGrant (through kms:Create*); kms:PutKeyPolicy (through kms:Put*)" || ind[1].Sid != SidKeyUsageViaGrant || !strings.Contains(ind[1].Why, "GrantIsForAWSResource") {
			t.Errorf("%s: indirect-decrypt findings:\n%s", name, dump(ind))
		}
		if len(fs) != 2 {
			t.Errorf("%s: want only the two indirect-decrypt warnings, got:\n%s", name, dump(fs))
		}
	}
}

func TestCheckDebugStatement(t *testing.T) {
	p := withStatements(t, guide(t, "debug-statement.json"))
	fs := findings(Check(p, true), RuleZeroPCR)
	if len(fs) != 1 || fs[0].Severity != SeverityError || fs[0].Sid != SidDebugEnclaveDecrypt {
		t.Fatalf("production findings:\n%s", dump(fs))
	}
	if got := fs[0].String(); !strings.HasPrefix(got, "error   AllowDebugEnclaveDecrypt: allows the all-zero kms:RecipientAttestation:ImageSha384 (a debug-mode enclave) (") {
		t.Errorf("String() = %q", got)
	}
	fs = Check(p, false)
	if HasErrors(fs) {
		t.Errorf("debug policy has errors outside production:\n%s", dump(fs))
	}
	if z := findings(fs, RuleZeroPCR); len(z) != 1 || z[0].Severity != SeverityWarning {
		t.Errorf("development findings:\n%s", dump(fs))
	}
	// The rendered debug policy likewise.
	rendered := mustParse(t, string(readFile(t, "guide-policy-debug.json")))
	if !HasErrors(Check(rendered, true)) || HasErrors(Check(rendered, false)) {
		t.Error("rendered debug policy: want errors in production only")
	}
}

func TestCheckDefaultKeyPolicy(t *testing.T) {
	p := mustParse(t, `{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}`)
	fs := Check(p, false)
	d := findings(fs, RuleDecryptNoAttestation)
	if len(d) != 1 || d[0].Severity != SeverityError || d[0].Sid != "Enable IAM User Permissions" || !strings.Contains(d[0].What, "allows kms:Decrypt, kms:GenerateDataKey, kms:GenerateDataKeyPair, kms:GenerateRandom, kms:DeriveSharedSecret, kms:ReEncryptFrom (through kms:*) without") {
		t.Errorf("findings:\n%s", dump(fs))
	}
}

// stmtPolicy is a policy of the guide's admin statement (so that the
// lock-out rule stays quiet) and the given statements.
func stmtPolicy(t *testing.T, stmts ...string) *Policy {
	t.Helper()
	admin := `{"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"` + adminRole + `"},"Action":"kms:PutKeyPolicy","Resource":"*"}`
	return mustParse(t, `{"Version":"2012-10-17","Statement":[`+strings.Join(append(stmts, admin), ",")+`]}`)
}

// decryptStmt is an Allow of action to the enclave role with a condition.
func decryptStmt(action, condition string) string {
	s := `{"Sid":"S","Effect":"Allow","Principal":{"AWS":"` + enclaveRole + `"},"Action":` + action + `,"Resource":"*"`
	if condition != "" {
		s += `,"Condition":` + condition
	}
	return s + "}"
}

// attestedDecrypt is the enclave's decrypt statement, Sid D.
var attestedDecrypt = `{"Sid":"D","Effect":"Allow","Principal":{"AWS":"` + enclaveRole + `"},"Action":"kms:Decrypt","Resource":"*","Condition":` +
	pinned("StringEqualsIgnoreCase", KeyImageSha384, guidePCR0) + `}`

// encryptStmt is an Allow of action to principal (JSON), Sid S.
func encryptStmt(action, principal string) string {
	return `{"Sid":"S","Effect":"Allow","Principal":` + principal + `,"Action":` + action + `,"Resource":"*"}`
}

func pinned(op, key, value string) string {
	return `{"` + op + `":{"` + key + `":"` + value + `"}}`
}

func TestCheckRules(t *testing.T) {
	goodCond := pinned("StringEqualsIgnoreCase", KeyImageSha384, guidePCR0)
	tests := []struct {
		name       string
		stmts      []string
		production bool
		rule       string
		severity   Severity // "" means the rule must not fire
		what       string   // substring of What, when checked
	}{
		// decrypt-without-attestation
		{"decrypt to the instance role without attestation", []string{decryptStmt(`"kms:Decrypt"`, "")}, false, RuleDecryptNoAttestation, SeverityError, "allows kms:Decrypt without"},
		{"decrypt with attestation", []string{decryptStmt(`"kms:Decrypt"`, goodCond)}, true, RuleDecryptNoAttestation, "", ""},
		{"kms:* wildcard", []string{decryptStmt(`"kms:*"`, "")}, false, RuleDecryptNoAttestation, SeverityError, "kms:Decrypt"},
		{"* wildcard", []string{decryptStmt(`"*"`, "")}, false, RuleDecryptNoAttestation, SeverityError, "kms:Decrypt"},
		{"kms:Decrypt* wildcard", []string{decryptStmt(`"kms:Decrypt*"`, "")}, false, RuleDecryptNoAttestation, SeverityError, "kms:Decrypt"},
		{"kms:Re* wildcard", []string{decryptStmt(`"kms:Re*"`, "")}, false, RuleDecryptNoAttestation, SeverityError, "kms:ReEncryptFrom"},
		{"kms:GenerateDataKey* wildcard", []string{decryptStmt(`["kms:Encrypt","kms:GenerateDataKey*"]`, "")}, false, RuleDecryptNoAttestation, SeverityError, "kms:GenerateDataKey, kms:GenerateDataKeyPair (through kms:GenerateDataKey*)"},
		{"lowercase action", []string{decryptStmt(`"KMS:decrypt"`, "")}, false, RuleDecryptNoAttestation, SeverityError, "kms:Decrypt"},
		{"GenerateRandom", []string{decryptStmt(`"kms:GenerateRandom"`, "")}, false, RuleDecryptNoAttestation, SeverityError, "kms:GenerateRandom"},
		{"DeriveSharedSecret", []string{decryptStmt(`"kms:DeriveSharedSecret"`, "")}, false, RuleDecryptNoAttestation, SeverityError, "kms:DeriveSharedSecret"},
		{"NotAction reaching decrypt", []string{decryptStmt(`"kms:Encrypt"`, "")[:0] + `{"Sid":"S","Effect":"Allow","Principal":{"AWS":"` + enclaveRole + `"},"NotAction":"kms:Encrypt","Resource":"*"}`}, false, RuleDecryptNoAttestation, SeverityError, "kms:Decrypt"},
		{"NotAction excluding decrypt-like actions", []string{`{"Sid":"S","Effect":"Allow","Principal":{"AWS":"` + enclaveRole + `"},"NotAction":["kms:Decrypt","kms:Generate*","kms:DeriveSharedSecret","kms:ReEncrypt*","kms:CreateGrant","kms:PutKeyPolicy"],"Resource":"*"}`}, false, RuleDecryptNoAttestation, "", ""},
		{"encrypt only", []string{decryptStmt(`"kms:Encrypt"`, "")}, false, RuleDecryptNoAttestation, "", ""},
		{"deny statement", []string{`{"Sid":"S","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}`}, false, RuleDecryptNoAttestation, "", ""},
		{"IfExists makes attestation optional", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCaseIfExists", KeyImageSha384, guidePCR0))}, false, RuleDecryptNoAttestation, SeverityError, ""},
		{"negated operator makes attestation optional", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringNotEqualsIgnoreCase", KeyImageSha384, ZeroPCR))}, false, RuleDecryptNoAttestation, SeverityError, ""},
		{"ForAllValues makes attestation optional", []string{decryptStmt(`"kms:Decrypt"`, pinned("ForAllValues:StringEqualsIgnoreCase", KeyImageSha384, guidePCR0))}, false, RuleDecryptNoAttestation, SeverityError, ""},
		{"other condition only", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEquals", "kms:EncryptionContext:purpose", "x"))}, false, RuleDecryptNoAttestation, SeverityError, ""},
		{"typo key is not attestation", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", "kms:RecipientAtestation:PCR0", guidePCR0))}, false, RuleDecryptNoAttestation, SeverityError, ""},
		{"guarded by a deny", []string{decryptStmt(`"kms:*"`, ""), `{"Sid":"G","Effect":"Deny","Principal":"*","Action":["kms:Decrypt","kms:GenerateDataKey*","kms:GenerateRandom","kms:DeriveSharedSecret","kms:ReEncrypt*"],"Resource":"*","Condition":` + pinned("StringNotEqualsIgnoreCase", KeyImageSha384, guidePCR0) + `}`}, false, RuleDecryptNoAttestation, "", ""},
		{"deny guard that ANDs a second key does not count", []string{decryptStmt(`"kms:Decrypt"`, ""), `{"Sid":"G","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringNotEqualsIgnoreCase":{"` + KeyImageSha384 + `":"` + guidePCR0 + `","` + KeyPCR(3) + `":"` + guidePCR1 + `"}}}`}, false, RuleDecryptNoAttestation, SeverityError, ""},
		{"guarded by a deny for every IAM principal", []string{decryptStmt(`"kms:Decrypt"`, ""), `{"Sid":"G","Effect":"Deny","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*","Condition":` + pinned("StringNotEqualsIgnoreCase", KeyImageSha384, guidePCR0) + `}`}, false, RuleDecryptNoAttestation, "", ""},
		{"a deny for every service does not guard the instance role", []string{decryptStmt(`"kms:Decrypt"`, ""), `{"Sid":"G","Effect":"Deny","Principal":{"Service":"*"},"Action":"kms:Decrypt","Resource":"*","Condition":` + pinned("StringNotEqualsIgnoreCase", KeyImageSha384, guidePCR0) + `}`}, false, RuleDecryptNoAttestation, SeverityError, ""},
		{"deny guard covering only Decrypt", []string{decryptStmt(`"kms:*"`, ""), `{"Sid":"G","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":` + pinned("StringNotEqualsIgnoreCase", KeyImageSha384, guidePCR0) + `}`}, false, RuleDecryptNoAttestation, SeverityError, ""},

		// attestation-not-image-pinned
		{"PCR3 only", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", KeyPCR(3), guidePCR1))}, false, RuleAttestationNotImage, SeverityWarning, "does not pin the enclave image"},
		{"Null false only", []string{decryptStmt(`"kms:Decrypt"`, `{"Null":{"`+KeyImageSha384+`":"false"}}`)}, false, RuleAttestationNotImage, SeverityWarning, ""},
		{"StringLike wildcard", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringLike", KeyImageSha384, "287b*"))}, false, RuleAttestationNotImage, SeverityWarning, ""},
		{"PCR8 pins the image", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", KeyPCR(8), guidePCR1))}, false, RuleAttestationNotImage, "", ""},
		{"PCR0 pins the image", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", KeyPCR(0), guidePCR0))}, false, RuleAttestationNotImage, "", ""},

		// zero-pcr
		{"zero ImageSha384 in production", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", KeyImageSha384, ZeroPCR))}, true, RuleZeroPCR, SeverityError, "all-zero kms:RecipientAttestation:ImageSha384"},
		{"zero PCR0 in production", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEquals", KeyPCR(0), ZeroPCR))}, true, RuleZeroPCR, SeverityError, "all-zero kms:RecipientAttestation:PCR0"},
		{"zero PCR0 in a list", []string{decryptStmt(`"kms:Decrypt"`, `{"StringEqualsIgnoreCase":{"`+KeyImageSha384+`":["`+guidePCR0+`","`+ZeroPCR+`"]}}`)}, true, RuleZeroPCR, SeverityError, ""},
		{"zero PCR0 outside production", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", KeyImageSha384, ZeroPCR))}, false, RuleZeroPCR, SeverityWarning, ""},
		{"StringLike * admits zeros", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringLike", KeyImageSha384, "*"))}, true, RuleZeroPCR, SeverityError, ""},
		{"zero PCR1", []string{decryptStmt(`"kms:Decrypt"`, `{"StringEqualsIgnoreCase":{"`+KeyImageSha384+`":"`+guidePCR0+`","`+KeyPCR(1)+`":"`+ZeroPCR+`"}}`)}, true, RuleZeroPCR, SeverityError, "PCR1"},
		{"zero PCR3 is not debug", []string{decryptStmt(`"kms:Decrypt"`, `{"StringEqualsIgnoreCase":{"`+KeyImageSha384+`":"`+guidePCR0+`","`+KeyPCR(3)+`":"`+ZeroPCR+`"}}`)}, true, RuleZeroPCR, "", ""},
		{"zero in a deny", []string{`{"Sid":"S","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":` + pinned("StringEqualsIgnoreCase", KeyImageSha384, ZeroPCR) + `}`}, true, RuleZeroPCR, "", ""},
		{"zero in a negated operator", []string{decryptStmt(`"kms:Decrypt"`, `{"StringEqualsIgnoreCase":{"`+KeyImageSha384+`":"`+guidePCR0+`"},"StringNotEqualsIgnoreCase":{"`+KeyPCR(0)+`":"`+ZeroPCR+`"}}`)}, true, RuleZeroPCR, "", ""},

		// pcr-value
		{"short PCR", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", KeyImageSha384, guidePCR0[:95]))}, false, RulePCRValue, SeverityError, "is not a PCR value"},
		{"0x prefix, 128 hex (KMS docs' example)", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", KeyPCR(1), "0x"+strings.Repeat("1d", 64)))}, false, RulePCRValue, SeverityError, ""},
		{"uppercase hex is a PCR", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", KeyImageSha384, strings.ToUpper(guidePCR0)))}, false, RulePCRValue, "", ""},
		{"wildcard pattern is not judged", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringLike", KeyImageSha384, "287b*"))}, false, RulePCRValue, "", ""},
		{"non-attestation key", []string{decryptStmt(`"kms:Decrypt"`, goodCond[:len(goodCond)-1]+`,"StringEquals":{"kms:EncryptionContext:a":"short"}}`)}, false, RulePCRValue, "", ""},

		// case-sensitive-operator
		{"StringEquals on ImageSha384", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEquals", KeyImageSha384, guidePCR0))}, false, RuleCaseSensitiveOperator, SeverityWarning, "StringEquals compares kms:RecipientAttestation:ImageSha384 case-sensitively"},
		{"StringLike on PCR3", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringLike", KeyPCR(3), guidePCR0))}, false, RuleCaseSensitiveOperator, SeverityWarning, ""},
		{"StringEqualsIgnoreCase", []string{decryptStmt(`"kms:Decrypt"`, goodCond)}, false, RuleCaseSensitiveOperator, "", ""},
		{"StringEquals elsewhere", []string{decryptStmt(`"kms:Decrypt"`, goodCond[:len(goodCond)-1]+`,"StringEquals":{"kms:EncryptionContext:a":"b"}}`)}, false, RuleCaseSensitiveOperator, "", ""},

		// wildcard-principal
		{"* with decrypt", []string{`{"Sid":"S","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":` + goodCond + `}`}, false, RuleWildcardPrincipal, SeverityError, "allows kms:Decrypt to every principal"},
		{"AWS * with decrypt", []string{`{"Sid":"S","Effect":"Allow","Principal":{"AWS":["*"]},"Action":"kms:Decrypt","Resource":"*","Condition":` + goodCond + `}`}, false, RuleWildcardPrincipal, SeverityError, ""},
		{"NotPrincipal allow", []string{`{"Sid":"S","Effect":"Allow","NotPrincipal":{"AWS":"` + adminRole + `"},"Action":"kms:Decrypt","Resource":"*","Condition":` + goodCond + `}`}, false, RuleWildcardPrincipal, SeverityError, ""},
		{"* with describe", []string{`{"Sid":"S","Effect":"Allow","Principal":"*","Action":"kms:DescribeKey","Resource":"*"}`}, false, RuleWildcardPrincipal, SeverityWarning, "allows every principal"},
		{"* in a deny", []string{`{"Sid":"S","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}`}, false, RuleWildcardPrincipal, "", ""},
		{"named role", []string{decryptStmt(`"kms:Decrypt"`, goodCond)}, false, RuleWildcardPrincipal, "", ""},

		// indirect-decrypt
		{"kms:Create* reaches CreateGrant", []string{`{"Sid":"S","Effect":"Allow","Principal":{"AWS":"` + adminRole + `"},"Action":"kms:Create*","Resource":"*"}`}, false, RuleIndirectDecrypt, SeverityWarning, "allows kms:CreateGrant"},
		{"kms:Put* reaches PutKeyPolicy", []string{`{"Sid":"S","Effect":"Allow","Principal":{"AWS":"` + adminRole + `"},"Action":"kms:Put*","Resource":"*"}`}, false, RuleIndirectDecrypt, SeverityWarning, "allows kms:PutKeyPolicy"},
		{"describe only", []string{`{"Sid":"S","Effect":"Allow","Principal":{"AWS":"` + adminRole + `"},"Action":["kms:Describe*","kms:List*"],"Resource":"*"}`}, false, RuleIndirectDecrypt, "", ""},

		// unknown-condition-key
		{"ImageSHA384x", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", "kms:RecipientAttestation:ImageSHA384x", guidePCR0))}, false, RuleUnknownConditionKey, SeverityError, `did you mean "kms:RecipientAttestation:ImageSha384"?`},
		{"RecipientAtestation:PCR0", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", "kms:RecipientAtestation:PCR0", guidePCR0))}, false, RuleUnknownConditionKey, SeverityError, `did you mean "kms:RecipientAttestation:PCR0"?`},
		{"PCR32", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", "kms:RecipientAttestation:PCR32", guidePCR0))}, false, RuleUnknownConditionKey, SeverityError, ""},
		{"PCR01", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCase", "kms:RecipientAttestation:PCR01", guidePCR0))}, false, RuleUnknownConditionKey, SeverityError, ""},
		{"other service key", []string{decryptStmt(`"kms:Decrypt"`, goodCond[:len(goodCond)-1]+`,"StringEquals":{"ec2:InstanceType":"m5.xlarge"}}`)}, false, RuleUnknownConditionKey, SeverityError, `"ec2:InstanceType" is not a key KMS sets`},
		{"unknown global key", []string{decryptStmt(`"kms:Decrypt"`, goodCond[:len(goodCond)-1]+`,"Bool":{"aws:SecureTransprt":"true"}}`)}, false, RuleUnknownConditionKey, SeverityWarning, `did you mean "aws:SecureTransport"?`},
		{"known keys in any case", []string{decryptStmt(`"kms:Decrypt"`, `{"StringEqualsIgnoreCase":{"KMS:RECIPIENTATTESTATION:IMAGESHA384":"`+guidePCR0+`","kms:recipientattestation:pcr31":"`+guidePCR1+`"},"StringEquals":{"kms:EncryptionContext:Purpose":"x","kms:CallerAccount":"1","aws:PrincipalTag/team":"a","kms:ViaService":"s","kms:EncryptionContextKeys":"k"},"Bool":{"kms:GrantIsForAWSResource":"true","aws:SecureTransport":"true"}}`)}, false, RuleUnknownConditionKey, "", ""},
		{"bare EncryptionContext: prefix", []string{decryptStmt(`"kms:Decrypt"`, goodCond[:len(goodCond)-1]+`,"StringEquals":{"kms:EncryptionContext:":"x"}}`)}, false, RuleUnknownConditionKey, SeverityError, ""},

		// unknown-operator and operator-case
		{"unknown operator", []string{decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCas", KeyImageSha384, guidePCR0))}, false, RuleUnknownOperator, SeverityError, `unknown condition operator "StringEqualsIgnoreCas"`},
		{"Null with IfExists", []string{decryptStmt(`"kms:Decrypt"`, goodCond[:len(goodCond)-1]+`,"NullIfExists":{"aws:username":"true"}}`)}, false, RuleUnknownOperator, SeverityError, ""},
		{"known operators", []string{decryptStmt(`"kms:Decrypt"`, goodCond[:len(goodCond)-1]+`,"ForAnyValue:StringLikeIfExists":{"kms:EncryptionContextKeys":"a*"},"NumericLessThanEquals":{"aws:MultiFactorAuthAge":"3600"},"DateGreaterThan":{"aws:CurrentTime":"2025-01-01"},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/x"}}`)}, false, RuleUnknownOperator, "", ""},
		{"operator case", []string{decryptStmt(`"kms:Decrypt"`, pinned("stringequalsignorecase", KeyImageSha384, guidePCR0))}, false, RuleOperatorCase, SeverityWarning, `is written "StringEqualsIgnoreCase"`},

		// unknown-action
		{"misspelt action", []string{decryptStmt(`["kms:Decrpyt"]`, "")}, false, RuleUnknownAction, SeverityWarning, `action "kms:Decrpyt" matches no KMS action`},
		{"other service action", []string{decryptStmt(`"s3:GetObject"`, "")}, false, RuleUnknownAction, SeverityWarning, "is not a KMS action"},
		{"wildcard action", []string{decryptStmt(`["kms:Describe*","kms:get*","*"]`, goodCond)}, false, RuleUnknownAction, "", ""},

		// encrypt-by-enclave-role: the enclave's decrypt statement is "D"
		// here, the statement under test "S".
		{"encrypt to the enclave role", []string{attestedDecrypt, encryptStmt(`"kms:Encrypt"`, `{"AWS":"`+enclaveRole+`"}`)}, true, RuleEncryptByEnclave, SeverityError, "allows kms:Encrypt to " + enclaveRole + ", the role that decrypts with an attestation document (the enclave's, in D)"},
		{"encrypt to the enclave role, development", []string{attestedDecrypt, encryptStmt(`"kms:Encrypt"`, `{"AWS":"`+enclaveRole+`"}`)}, false, RuleEncryptByEnclave, SeverityWarning, "allows kms:Encrypt to"},
		{"ReEncrypt into the key", []string{attestedDecrypt, encryptStmt(`"kms:ReEncrypt*"`, `{"AWS":"`+enclaveRole+`"}`)}, true, RuleEncryptByEnclave, SeverityError, "kms:ReEncryptTo (through kms:ReEncrypt*)"},
		{"encrypt through kms:*", []string{attestedDecrypt, encryptStmt(`"kms:*"`, `{"AWS":"`+enclaveRole+`"}`)}, true, RuleEncryptByEnclave, SeverityError, "kms:Encrypt, kms:ReEncryptTo (through kms:*)"},
		{"encrypt to the role's session", []string{attestedDecrypt, encryptStmt(`"kms:Encrypt"`, `{"AWS":"arn:aws:sts::123456789012:assumed-role/NitroEnclaveInstanceRole/i-0123456789abcdef0"}`)}, true, RuleEncryptByEnclave, SeverityError, "allows kms:Encrypt to " + enclaveRole},
		{"encrypt to the account", []string{attestedDecrypt, encryptStmt(`"kms:Encrypt"`, `{"AWS":"arn:aws:iam::123456789012:root"}`)}, true, RuleEncryptByEnclave, SeverityError, "allows kms:Encrypt to " + enclaveRole},
		{"encrypt to everyone", []string{attestedDecrypt, encryptStmt(`"kms:Encrypt"`, `"*"`)}, true, RuleEncryptByEnclave, SeverityError, "allows kms:Encrypt to " + enclaveRole},
		{"encrypt to the sealing role", []string{attestedDecrypt, encryptStmt(`"kms:Encrypt"`, `{"AWS":"`+encryptRole+`"}`)}, true, RuleEncryptByEnclave, "", ""},
		{"encrypt to a role of that name in another account", []string{attestedDecrypt, encryptStmt(`"kms:Encrypt"`, `{"AWS":"arn:aws:iam::999999999999:role/NitroEnclaveInstanceRole"}`)}, true, RuleEncryptByEnclave, "", ""},
		{"encrypt under the attestation condition (KMS never grants it)", []string{attestedDecrypt, decryptStmt(`["kms:Decrypt","kms:Encrypt"]`, goodCond)}, true, RuleEncryptByEnclave, "", ""},
		{"no attested decrypt: no enclave role", []string{encryptStmt(`"kms:Encrypt"`, `{"AWS":"`+enclaveRole+`"}`)}, true, RuleEncryptByEnclave, "", ""},

		// duplicate-sid
		{"duplicate Sid", []string{decryptStmt(`"kms:Decrypt"`, goodCond), decryptStmt(`"kms:Encrypt"`, "")}, false, RuleDuplicateSid, SeverityWarning, `Sid "S" is used by more than one statement`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := Check(stmtPolicy(t, tt.stmts...), tt.production)
			var got []Finding // the statement under test's, not the admin helper's
			for _, f := range findings(all, tt.rule) {
				if f.Sid == "S" {
					got = append(got, f)
				}
			}
			if tt.severity == "" {
				if len(got) > 0 {
					t.Fatalf("rule %s fired:\n%s", tt.rule, dump(got))
				}
				return
			}
			if len(got) == 0 {
				t.Fatalf("rule %s did not fire; findings:\n%s", tt.rule, dump(all))
			}
			if got[0].Severity != tt.severity || got[0].Sid != "S" || !strings.Contains(got[0].What, tt.what) || got[0].Why == "" {
				t.Errorf("finding %+v\nwant severity %s, Sid S, What containing %q", got[0], tt.severity, tt.what)
			}
		})
	}
}

func TestCheckLockout(t *testing.T) {
	p := mustParse(t, `{"Statement":[{"Sid":"S","Effect":"Allow","Principal":{"AWS":"`+encryptRole+`"},"Action":"kms:Encrypt","Resource":"*"},
		{"Sid":"D","Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"*"}]}`)
	fs := findings(Check(p, true), RuleLockout)
	if len(fs) != 1 || fs[0].Severity != SeverityWarning || fs[0].Sid != "" {
		t.Fatalf("lockout findings:\n%s", dump(fs))
	}
	if got := fs[0].String(); !strings.HasPrefix(got, "warning no statement allows kms:PutKeyPolicy") {
		t.Errorf("String() = %q", got)
	}
	for _, action := range []string{`"kms:*"`, `"*"`, `"kms:Put*"`, `"kms:PutKeyPolicy"`} {
		p := mustParse(t, `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"`+adminRole+`"},"Action":`+action+`,"Resource":"*"}]}`)
		if fs := findings(Check(p, true), RuleLockout); len(fs) != 0 {
			t.Errorf("action %s: lockout reported", action)
		}
	}
}

func TestCheckUnlabelled(t *testing.T) {
	p := mustParse(t, `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"`+enclaveRole+`"},"Action":"kms:Decrypt","Resource":"*"}]}`)
	fs := findings(Check(p, true), RuleDecryptNoAttestation)
	if len(fs) != 1 || fs[0].Sid != "Statement[0]" {
		t.Errorf("findings:\n%s", dump(fs))
	}
	if !slices.ContainsFunc(Check(p, true), func(f Finding) bool { return f.Rule == RuleLockout }) {
		t.Error("no lockout finding")
	}
}

func TestValidate(t *testing.T) {
	if err := mustParse(t, string(readFile(t, "guide-policy-debug.json"))).Validate(); err != nil {
		t.Errorf("guide policy: %v", err)
	}
	p := stmtPolicy(t, decryptStmt(`"kms:Decrypt"`, pinned("StringEqualsIgnoreCas", KeyImageSha384, guidePCR0)))
	if err := p.Validate(); err == nil || err.Error() != `policy: Statement[0] (Sid "S"): Condition: unknown condition operator "StringEqualsIgnoreCas"` {
		t.Errorf("Validate = %v", err)
	}
}

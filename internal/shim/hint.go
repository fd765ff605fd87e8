package shim

import (
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// credentialsSource says where the shim's AWS credentials come from, for
// errors and hints about them.
const credentialsSource = "the shim's AWS SDK default chain: on EC2 the instance role through IMDS; AWS_PROFILE or AWS_ACCESS_KEY_ID in the shim's environment override it"

// keyringName finds the keyring an enclave keyring-step message names
// (keyring "NAME": …); the shim names keyrings by their configured source.
var keyringName = regexp.MustCompile(`keyring "((?:[^"\\]|\\.)*)"`)

// resourceARN finds the key ARN in KMS's access-denied message ("… on
// resource: ARN because …").
var resourceARN = regexp.MustCompile(`on resource: (arn:\S+)`)

// hint says what to do about the enclave's failed provisioning step e,
// naming the configured files: /v1/status's error.hint, the reason of a
// not-ready /readyz, and signer dev's NOT READY line. It follows
// docs/signerd.md's table "Failures and what to do". "" if there is no
// error.
func hint(e *wire.StatusError, cfg *Config) string {
	if e == nil {
		return ""
	}
	const then = "; then signer provision (POST /v1/provision)"
	identity, region := "the sealed identity", "the configured region"
	if cfg != nil {
		identity, region = "the sealed identity "+cfg.Identity+" (config field identity)", cfg.Region
	}
	msg := strings.ToLower(e.Message + " " + e.KMSMessage)
	switch e.Step {
	case "recipient_key", "attest":
		return "the enclave's NSM or random number generator failed: restart the enclave; if it persists, the NSM is unhealthy"
	case "kms_client":
		return "the enclave could not set up its KMS client: check the region the shim sends (config field region, " + region + ")" + then
	case "identity":
		return identity + " decrypts, but to something that is not an age identity: seal a new one with signer seal and re-encrypt the keyrings to its recipient (docs/operations.md, Rotating the age identity)" + then
	case "keyring":
		file := "a keyring"
		if m := keyringName.FindStringSubmatch(e.Message); m != nil {
			file = "the keyring " + m[1]
		}
		switch {
		case strings.Contains(msg, "duplicate key id"):
			return "key ids must be unique across all the keyrings loaded together: remove the duplicate from one keyring, or drop one keyring from the config field keyrings" + then
		case strings.Contains(msg, "no identity matched"):
			return file + " is not encrypted to the recipient of " + identity + ": re-encrypt it to that age1… recipient (the recipient.txt signer seal printed; the offline backup identity can decrypt it), or make a new one with signer keyring new" + then
		}
		return file + " is damaged or malformed (the message says where): restore a good copy or make a new one with signer keyring new --recipient-file recipient.txt" + then
	case "keyring_signature", "keyring_expired", "keyring_version":
		return keyringSigHint(e, msg, then)
	case "kms_decrypt":
		return kmsHint(e, msg, identity, region, then)
	case "require_auth":
		return "the enclave's image pins --require-auth, and a configured keyring declares no clients (the message names it), so anyone reaching the enclave could sign with its keys: make it declare clients and key policies (signer keyring new --client …; docs/keyring.md), or drop it from the config field keyrings" + then
	case "kms_key":
		return identity + " is not sealed under a KMS key the enclave's image pins (the message names the key and the pins). If you sealed it, seal it again under a pinned key (signer seal --key-id ARN), or build an image that pins its key (make image KMS_KEYS=ARN,…; docs/operations.md, Rotating the KMS key); if nobody on your side did, someone who can reach the enclave tried to load keys of their own: the enclave refused them and keeps its keys" + then
	}
	return "see docs/signerd.md, Failures and what to do"
}

// keyringSigHint is hint for the signed-keyring steps; msg is the
// lower-case message.
func keyringSigHint(e *wire.StatusError, msg, then string) string {
	file, sig := "the keyring", "its signature file KEYRING.sig"
	if m := keyringName.FindStringSubmatch(e.Message); m != nil {
		file, sig = "the keyring "+m[1], m[1]+sigSuffix
	}
	const check = " (signer keyring verify --keyring-signer VALUE checks it as the enclave does)"
	switch e.Step {
	case "keyring_expired":
		return file + " is outside the validity window of its signed statement, by the enclave's NSM clock: sign it again with a window that holds now (signer keyring sign --force … --not-after), replacing " + sig + then
	case "keyring_version":
		if strings.Contains(msg, "are both keyring") {
			return "two configured keyrings are versions of the same keyring id: keep one of them in the config field keyrings" + then
		}
		return file + " is an older version than the enclave has accepted since it started, or the same version changed: configure the newest version, or give a changed keyring a new version (in its plaintext and its statement)" + then
	}
	switch {
	case strings.Contains(msg, "no signature"):
		return file + " is not signed, and the enclave pins keyring signers: sign it with signer keyring sign and put " + sig + " next to it" + check + then
	case strings.Contains(msg, "not a pinned keyring signer"), strings.Contains(msg, "of distinct pinned keyring signers"):
		return sig + " is not signed by enough of the keyring signers the enclave pins: have them sign it (signer keyring sign --sign-with …)" + check + "; if none of your operators signed it, someone on the host tried to load keys of their own" + then
	case strings.Contains(msg, "about another file"):
		return sig + " does not belong to " + file + " as it is now (it changed after it was signed?): sign the keyring again" + then
	case strings.Contains(msg, "another identity"):
		return sig + " names other recipients than the enclave's identity: sign the keyring naming the recipient it is encrypted to (recipient.txt)" + then
	case strings.Contains(msg, "plaintext"):
		return file + "'s plaintext names another keyring id or version than its signed statement, or is not format 2: sign it with the --id and --version its plaintext names (docs/keyring.md)" + then
	}
	return sig + " does not parse or does not verify: sign " + file + " again with signer keyring sign --force" + then
}

// kmsHint is hint for the step kms_decrypt; msg is the lower-case message.
func kmsHint(e *wire.StatusError, msg, identity, region, then string) string {
	switch e.KMSCode {
	case "AccessDeniedException":
		// The enclave cannot see the key policy, so nothing here knows
		// which condition failed (PCR0 is only one of six PCRs a policy
		// may pin, and the role is another): signer doctor evaluates the
		// live policy against what the enclave presented.
		pcr0 := ""
		if len(e.PCR0) > 0 {
			pcr0 = ", PCR0 " + hex.EncodeToString(e.PCR0)
		}
		key := "KEY"
		if m := resourceARN.FindStringSubmatch(e.KMSMessage); m != nil {
			key = strings.TrimRight(m[1], ".,;")
		}
		return "the key policy does not admit this enclave, or the role the shim's credentials come from may not call kms:Decrypt; the enclave cannot tell which condition failed. Run signer doctor --key-id " + key + " on the parent: it evaluates the live key policy against the PCRs the enclave presented (error.message lists PCR0, 1, 2, 3, 4 and 8" + pcr0 + "), then fix the policy (signer policy update; a debug-mode enclave's all-zero PCRs belong only in a development policy)" + then
	case "InvalidCiphertextException", "IncorrectKeyException":
		return identity + " is damaged, not the raw ciphertext, or was sealed under another KMS key or encryption context: set encryption_context to the pairs it was sealed with, or seal a new identity with signer seal and re-encrypt the keyrings to its recipient" + then
	case "ExpiredTokenException", "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken":
		return "KMS refused the credentials the shim sent. They come from " + credentialsSource + "; check them (signer doctor) and the host's clock" + then
	case "KMSInvalidStateException", "DisabledException", "NotFoundException":
		return "the KMS key is disabled, pending deletion or not in " + region + ": check it with aws kms describe-key" + then
	case "ThrottlingException":
		return "KMS throttled the request: the shim retries by itself"
	case "":
	case "HTTP 500", "HTTP 502", "HTTP 503", "HTTP 504":
		return "something between the enclave and KMS answered instead of KMS: check that vsock-proxy runs for kms." + region + ".amazonaws.com on the port signerd's --kms-proxy names (signer doctor checks it); the shim retries by itself"
	default:
		return "KMS refused the request (error.kms_code, error.kms_message): see docs/signerd.md, Failures and what to do"
	}
	switch {
	case strings.Contains(msg, "credentials"):
		return "the credentials the shim sent are expired or missing. They come from " + credentialsSource + "; check them (signer doctor)" + then
	case strings.Contains(msg, "proxy"):
		return "the enclave could not reach KMS: start vsock-proxy for kms." + region + ".amazonaws.com on the port signerd's --kms-proxy names, and allow that host in its configuration"
	case strings.Contains(msg, "certificate") || strings.Contains(msg, "tls"):
		return "the server behind the enclave's KMS proxy is not KMS for " + region + ": check the proxy's target host and the region the shim sends"
	}
	return "see docs/signerd.md, Failures and what to do"
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/enclave-signer/enclave-signer/internal/policy"
)

// runPolicyUpdate is `signer policy update --key-id ID --measurements
// FILE... [--add] [--yes] [--endpoint-url URL] [--region R]`: the key
// policy's enclave statements get the new images' PCR0 values under
// kms:RecipientAttestation:ImageSha384; the diff is shown, the result
// linted, and PutKeyPolicy called only with --yes or after the operator
// answers y. It replaces the guide's get-key-policy, vim, put-key-policy.
func runPolicyUpdate(e *env) error {
	fs := newFlagSet(e, "policy update")
	keyID := fs.String("key-id", "", "the KMS key whose policy to update: key `ID`, key ARN, alias/NAME or alias ARN (required)")
	var measurements multiFlag
	fs.Var(&measurements, "measurements", "`FILE` with nitro-cli build-enclave or describe-eif JSON; several files (blue-green) allow each image's PCR0")
	add := fs.Bool("add", false, "add the new PCR0 values to those the policy allows instead of replacing them (the first half of a blue-green rollout)")
	yes := fs.Bool("yes", false, "apply without asking")
	awsf := addAWSFlags(fs)
	args, err := parseFlags(fs, e.args)
	if err != nil {
		return err
	}
	// "--measurements a.json b.json": files after the flag are measurements too.
	if len(args) > 0 && len(measurements) == 0 {
		return unexpectedArg("policy update", args[0], "measurement files follow --measurements")
	}
	measurements = append(measurements, args...)
	if *keyID == "" {
		return usageErrorf("policy update: --key-id is required: the KMS key id, key ARN or alias/NAME whose policy to update")
	}
	if len(measurements) == 0 {
		return usageErrorf("policy update: --measurements FILE is required (the JSON nitro-cli build-enclave or describe-eif prints)")
	}
	if err := awsf.validate("policy update"); err != nil {
		return err
	}
	var images []*policy.Measurements
	var pcr0s []string
	for _, f := range measurements {
		b, err := measurementsFile("policy update", f).read(e, 1<<20)
		if err != nil {
			return err
		}
		m, err := policy.ParseMeasurements(f, b)
		if err != nil {
			return fmt.Errorf("policy update: %w", err)
		}
		images = append(images, m)
		if !containsFold(pcr0s, m.PCRs[0]) {
			pcr0s = append(pcr0s, m.PCRs[0])
		}
	}
	if containsFold(pcr0s, policy.ZeroPCR) {
		return usageErrorf("policy update: --measurements: a PCR0 of all zeros is what debug-mode enclaves present, not an image measurement; the debug statement (signer policy render --debug) covers it")
	}

	conn, err := newKMSConn(e, awsf)
	if err != nil {
		return fmt.Errorf("policy update: %w", err)
	}
	key := *keyID
	// GetKeyPolicy and PutKeyPolicy take a key id or key ARN, not an alias.
	if strings.HasPrefix(key, "alias/") || strings.Contains(key, ":alias/") {
		d, err := kmsCall(e, conn, "DescribeKey", func(ctx context.Context, c *kms.Client) (*kms.DescribeKeyOutput, error) {
			return c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(key)})
		})
		if err != nil {
			return fmt.Errorf("policy update: resolving %s: %w", key, err)
		}
		if d.KeyMetadata == nil || aws.ToString(d.KeyMetadata.Arn) == "" {
			return fmt.Errorf("policy update: kms DescribeKey of %s answered no key ARN", key)
		}
		key = aws.ToString(d.KeyMetadata.Arn)
	}
	got, err := kmsCall(e, conn, "GetKeyPolicy", func(ctx context.Context, c *kms.Client) (*kms.GetKeyPolicyOutput, error) {
		return c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(key), PolicyName: aws.String("default")})
	})
	if err != nil {
		return fmt.Errorf("policy update: %w", err)
	}
	cur, err := policy.Parse([]byte(aws.ToString(got.Policy)))
	if err != nil {
		return fmt.Errorf("policy update: the key policy of %s: %w", key, err)
	}
	upd, res, err := updateImageSha384(cur, pcr0s, *add)
	if err != nil {
		return &hintError{err: fmt.Errorf("policy update: key %s: %w", key, err), hints: []string{
			"render a policy with an enclave statement: signer policy render --measurements FILE --enclave-role ARN --encrypt-role ARN --admin-role ARN"}}
	}
	for _, n := range res.skipped {
		fmt.Fprintf(e.stderr, "signer: warning: %s\n", n)
	}
	for _, w := range pinWarnings(upd, res.updated, images) {
		fmt.Fprintf(e.stderr, "signer: warning: %s\n", w)
	}
	for _, w := range unpinnedImageWarnings(key, measurements, images, imageValues(upd, res.updated)) {
		fmt.Fprintf(e.stderr, "signer: warning: %s\n", w)
	}

	before, after := cur.Marshal(), upd.Marshal()
	if bytes.Equal(before, after) {
		fmt.Fprintf(e.stderr, "signer: the key policy of %s already allows exactly PCR0 %s: nothing to change\n", key, strings.Join(pcr0s, ", "))
		return nil
	}
	diff := unifiedDiff("key policy of "+key+" (current)", "key policy of "+key+" (updated)", splitLines(before), splitLines(after), 3)
	if _, err := io.WriteString(e.stdout, diff); err != nil {
		return err
	}

	// Lint the result; refuse only what this update makes worse.
	oldFindings, newFindings := policy.Check(cur, false), policy.Check(upd, false)
	var introduced []policy.Finding
	for _, f := range newFindings {
		fmt.Fprintf(e.stderr, "signer: policy check: %s\n", f)
		if f.Severity == policy.SeverityError && !slices.Contains(oldFindings, f) {
			introduced = append(introduced, f)
		}
	}
	if len(introduced) > 0 {
		return fmt.Errorf("policy update: the updated policy has %s the current one lacks: nothing was changed", plural(len(introduced), "error"))
	}
	if policy.HasErrors(newFindings) {
		fmt.Fprintf(e.stderr, "signer: warning: the current key policy already has the errors above; this update does not fix them\n")
	}

	if !*yes {
		fmt.Fprintf(e.stderr, "signer: put this key policy on %s? [y/N] ", key)
		if !confirmed(e.stdin) {
			fmt.Fprintln(e.stderr)
			return errors.New("policy update: not confirmed: nothing was changed (answer y, or pass --yes)")
		}
	}
	if _, err := kmsCall(e, conn, "PutKeyPolicy", func(ctx context.Context, c *kms.Client) (*kms.PutKeyPolicyOutput, error) {
		return c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(key), PolicyName: aws.String("default"), Policy: aws.String(string(after))})
	}); err != nil {
		return fmt.Errorf("policy update: nothing was changed: %w", err)
	}
	fmt.Fprintf(e.stderr, "signer: updated the key policy of %s: %s now allow PCR0 %s\n", key, strings.Join(res.updated, ", "), strings.Join(res.values, ", "))
	return nil
}

// confirmed reads one answer line; only y or yes (any case) agree.
func confirmed(r io.Reader) bool {
	if r == nil {
		return false
	}
	line, err := bufio.NewReader(io.LimitReader(r, 1024)).ReadString('\n')
	if err != nil && line == "" {
		return false
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}

// updateResult says what updateImageSha384 did.
type updateResult struct {
	updated []string // labels of the statements changed
	values  []string // the ImageSha384 values they now allow (the last one's)
	skipped []string // warnings about ImageSha384 conditions left alone
}

// updateImageSha384 returns a copy of p whose image-pinning statements
// allow pcr0s: every condition on kms:RecipientAttestation:ImageSha384 in
// an Allow statement with StringEquals[IgnoreCase] (or a Deny with
// StringNotEquals[IgnoreCase]) whose values are not all the debug value
// (96 zeros). Those values are replaced, or with add extended; an all-zero
// value mixed in is kept. p is not modified.
func updateImageSha384(p *policy.Policy, pcr0s []string, add bool) (*policy.Policy, updateResult, error) {
	var res updateResult
	upd, err := policy.Parse(p.Marshal()) // a deep copy
	if err != nil {
		return nil, res, fmt.Errorf("copying the policy: %v", err)
	}
	for i, s := range upd.Statements {
		changed := false
		for j := range s.Condition {
			c := &s.Condition[j]
			for k := range c.Keys {
				ck := &c.Keys[k]
				if !strings.EqualFold(ck.Key, policy.KeyImageSha384) {
					continue
				}
				var zeros, images []string
				for _, v := range ck.Values.List {
					if strings.EqualFold(v, policy.ZeroPCR) {
						zeros = append(zeros, v)
					} else {
						images = append(images, v)
					}
				}
				if len(images) == 0 {
					continue // the debug statement: left untouched
				}
				if !pinsAllowedImages(s.Effect, c.Operator) {
					res.skipped = append(res.skipped, fmt.Sprintf("%s: left its %s condition on %s alone: only Allow with StringEquals[IgnoreCase] or Deny with StringNotEquals[IgnoreCase] is updated", upd.Label(i), c.Operator, ck.Key))
					continue
				}
				vals := zeros
				if add {
					vals = append(vals, images...)
				}
				for _, v := range pcr0s {
					if !containsFold(vals, v) {
						vals = append(vals, v)
					}
				}
				// One value is written as a string, as the guide and policy render write it.
				if len(vals) == 1 {
					ck.Values = policy.One(vals[0])
				} else {
					ck.Values = policy.List(vals...)
				}
				res.values = vals
				changed = true
			}
		}
		if changed {
			res.updated = append(res.updated, upd.Label(i))
		}
	}
	if len(res.updated) == 0 {
		return nil, res, fmt.Errorf("no statement of the key policy pins %s to an image (only the all-zero debug value, or none): nothing to update", policy.KeyImageSha384)
	}
	return upd, res, nil
}

// pinsAllowedImages reports whether a condition operator in a statement of
// this effect lists the images allowed to decrypt.
func pinsAllowedImages(effect, operator string) bool {
	op := strings.TrimSuffix(operator, "IfExists")
	switch effect {
	case policy.Allow:
		return op == "StringEquals" || op == "StringEqualsIgnoreCase"
	case policy.Deny:
		return op == "StringNotEquals" || op == "StringNotEqualsIgnoreCase"
	}
	return false
}

// pinWarnings finds, in the updated statements, pins of other image
// registers (PCR1, PCR2, PCR8) that a new image's measurements don't
// satisfy: KMS would refuse that image whatever its PCR0.
func pinWarnings(p *policy.Policy, updated []string, images []*policy.Measurements) []string {
	var out []string
	for i, s := range p.Statements {
		if !slices.Contains(updated, p.Label(i)) {
			continue
		}
		for _, c := range s.Condition {
			for _, ck := range c.Keys {
				for _, n := range []int{1, 2, 8} {
					if !strings.EqualFold(ck.Key, policy.KeyPCR(n)) {
						continue
					}
					for _, m := range images {
						v, ok := m.PCRs[n]
						if ok && !containsFold(ck.Values.List, v) {
							out = append(out, fmt.Sprintf("%s also pins PCR%d to %s, but the image with PCR0 %s has PCR%d %s: KMS will refuse it until that pin is updated too",
								p.Label(i), n, strings.Join(ck.Values.List, ", "), m.PCRs[0], n, v))
						}
					}
				}
			}
		}
	}
	return out
}

// imageValues returns the ImageSha384 values of the updated statements,
// debug (all-zero) values left out.
func imageValues(p *policy.Policy, updated []string) []string {
	var out []string
	for i, s := range p.Statements {
		if !slices.Contains(updated, p.Label(i)) {
			continue
		}
		for _, c := range s.Condition {
			for _, ck := range c.Keys {
				if !strings.EqualFold(ck.Key, policy.KeyImageSha384) {
					continue
				}
				for _, v := range ck.Values.List {
					if !strings.EqualFold(v, policy.ZeroPCR) && !containsFold(out, v) {
						out = append(out, strings.ToLower(v))
					}
				}
			}
		}
	}
	return out
}

// unpinnedImageWarnings warns about the images the updated policy lets
// unseal that may not pin their KMS key. A signerd that pins no key
// accepts an identity sealed under any key, so whoever provisions it
// (root on the parent) can have an image the policy trusts sign with keys
// of its own choosing. The new images' pins come from their measurements
// (make eif records them: signer image pins --measurements); an image
// whose measurements record none, and every PCR0 the policy keeps from
// before (--add), are of unknown pins. key is the key whose policy this is
// (its ARN, or the id given): a pinned image must pin it.
func unpinnedImageWarnings(key string, files []string, images []*policy.Measurements, allowed []string) []string {
	var out []string
	const risk = "an unpinned image accepts an identity sealed under any KMS key, so it can unseal and sign with keys of the host's choosing"
	var fresh []string
	for i, m := range images {
		fresh = append(fresh, m.PCRs[0])
		switch {
		case m.Pins == nil:
			out = append(out, fmt.Sprintf("%s (PCR0 %s) does not record the image's pins (nitro-cli's own output; make eif adds them with signer image pins --measurements), so whether that image pins its KMS key is unknown: %s", files[i], m.PCRs[0], risk))
		case !m.Pins.Pinned():
			out = append(out, fmt.Sprintf("the image with PCR0 %s (%s) pins no KMS key: %s; rebuild it with make image KMS_KEYS=<this key's ARN>", m.PCRs[0], files[i], risk))
		case !slices.ContainsFunc(m.Pins.KMSKeys, func(pin string) bool { return pin == key || strings.HasSuffix(pin, ":key/"+key) }):
			out = append(out, fmt.Sprintf("the image with PCR0 %s (%s) pins the KMS keys %s but not %s, whose policy this is: it will refuse an identity sealed under this key (step kms_key)", m.PCRs[0], files[i], strings.Join(m.Pins.KMSKeys, ", "), key))
		}
	}
	for _, v := range allowed {
		if !containsFold(fresh, v) {
			out = append(out, fmt.Sprintf("the policy keeps allowing PCR0 %s, an image whose pins signer does not know (not among --measurements): if it is unpinned (built before pinning, or without KMS_KEYS), %s; drop it (policy update without --add) once the new image runs", v, risk))
		}
	}
	return out
}

func containsFold(list []string, v string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.EqualFold(s, v) })
}

// splitLines splits text into lines without their newlines.
func splitLines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// unifiedDiff returns a unified diff (as diff -u prints it) of a and b
// with ctx lines of context, or "" when they are equal. Policies are at
// most 32 KiB, so a quadratic LCS over the lines between the common prefix
// and suffix is cheap.
func unifiedDiff(aName, bName string, a, b []string, ctx int) string {
	type op struct {
		kind byte // ' ', '-', '+'
		line string
	}
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	am, bm := a[pre:len(a)-suf], b[pre:len(b)-suf]
	// lcs[i][j]: length of the LCS of am[i:] and bm[j:].
	lcs := make([][]int32, len(am)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(bm)+1)
	}
	for i := len(am) - 1; i >= 0; i-- {
		for j := len(bm) - 1; j >= 0; j-- {
			if am[i] == bm[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []op
	for _, l := range a[:pre] {
		ops = append(ops, op{' ', l})
	}
	i, j := 0, 0
	for i < len(am) || j < len(bm) {
		switch {
		case i < len(am) && j < len(bm) && am[i] == bm[j]:
			ops = append(ops, op{' ', am[i]})
			i, j = i+1, j+1
		case j < len(bm) && (i == len(am) || lcs[i][j+1] > lcs[i+1][j]):
			ops = append(ops, op{'+', bm[j]})
			j++
		default:
			ops = append(ops, op{'-', am[i]})
			i++
		}
	}
	for _, l := range a[len(a)-suf:] {
		ops = append(ops, op{' ', l})
	}

	var changes []int
	for k, o := range ops {
		if o.kind != ' ' {
			changes = append(changes, k)
		}
	}
	if len(changes) == 0 {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", aName, bName)
	// aLine[k], bLine[k]: 1-based line numbers in a and b before ops[k].
	aLine, bLine := make([]int, len(ops)+1), make([]int, len(ops)+1)
	aLine[0], bLine[0] = 1, 1
	for k, o := range ops {
		aLine[k+1], bLine[k+1] = aLine[k], bLine[k]
		if o.kind != '+' {
			aLine[k+1]++
		}
		if o.kind != '-' {
			bLine[k+1]++
		}
	}
	for c := 0; c < len(changes); {
		start := max(0, changes[c]-ctx)
		end := changes[c]
		for c < len(changes) && changes[c] <= end+2*ctx {
			end = changes[c]
			c++
		}
		end = min(len(ops), end+ctx+1)
		aLen, bLen := aLine[end]-aLine[start], bLine[end]-bLine[start]
		aStart, bStart := aLine[start], bLine[start]
		if aLen == 0 {
			aStart--
		}
		if bLen == 0 {
			bStart--
		}
		fmt.Fprintf(&sb, "@@ -%d,%d +%d,%d @@\n", aStart, aLen, bStart, bLen)
		for _, o := range ops[start:end] {
			sb.WriteByte(o.kind)
			sb.WriteString(o.line)
			sb.WriteByte('\n')
		}
	}
	return sb.String()
}

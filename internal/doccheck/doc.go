// Package doccheck keeps the operator documents in docs/ honest: its tests
// extract the examples from them (key policies, nitro-cli measurements, PCR
// computations, `signer` command lines) and check each against the code that
// implements it, so a document that drifts from the code fails the build.
//
// The package has no API; everything is in doccheck_test.go.
//
// # Annotations
//
// Every ```json block of docs/key-policy.md and docs/key-policy.zh.md is
// preceded by an HTML comment that says what it is, for example
//
//	<!-- doccheck: production-policy -->
//	<!-- doccheck: statement expect=zero-pcr -->
//
// Kinds: production-policy (a whole key policy that policy.Check(p, true)
// finds no error in), key-policy (a whole key policy), statement (one key
// policy statement, checked inside a policy of its own), iam-policy (an
// identity-based policy: no Principal), measurements (nitro-cli output that
// policy.ParseMeasurements accepts) and json (valid JSON, nothing more).
// expect=RULE,… lists the policy.Check rules the block must trigger; any
// other error finding fails the test.
//
// # Shell examples
//
// In ```sh blocks, a line "$ COMMAND" followed by its output is checked
// when COMMAND is `signer pcr role-arn ARN`, `signer pcr instance-id ID`, the
// PCR3 one-liner `{ head -c 48 /dev/zero; printf %s "ARN"; } | sha384sum` or
// a bare `echo -n "ARN" | sha384sum`: the output shown must be what pkg/pcr
// (or plain SHA-384) computes, and the shell lines are also run when bash
// and sha384sum are installed.
//
// # Commands
//
// Every `signer COMMAND [SUBCOMMAND]` in a code span or code block of docs/
// and README.md must name a command of host/main.go's commands map (read
// with go/parser) or a subcommand dispatched by host's subcommand() calls;
// docs/reference.md must list every one of them.
//
// # Nothing outside the repository
//
// No tracked file may point outside the repository: neither at the
// material the project started from, which is not distributed with it,
// nor at a relative path that climbs above the repository's root; and
// every relative link of every Markdown file must name a file the
// repository holds. The documents in docs/ are the contract.
package doccheck

package main

import (
	"encoding/hex"
	"fmt"

	"github.com/enclave-signer/enclave-signer/pkg/pcr"
)

func runPCR(e *env) error {
	one := func(name string, validate func(string) error, compute func(string) []byte) func(*env) error {
		return func(e *env) error {
			fs := newFlagSet(e, "pcr "+name)
			args, err := parseFlags(fs, e.args)
			if err != nil {
				return err
			}
			if len(args) != 1 {
				return usageErrorf("pcr %s: want exactly one argument", name)
			}
			if err := validate(args[0]); err != nil {
				return usageErrorf("pcr %s: %v", name, err)
			}
			fmt.Fprintln(e.stdout, hex.EncodeToString(compute(args[0])))
			return nil
		}
	}
	return subcommand(e, "pcr", map[string]func(*env) error{
		"role-arn":    one("role-arn", pcr.ValidateRoleARN, pcr.RoleARN),
		"instance-id": one("instance-id", pcr.ValidateInstanceID, pcr.InstanceID),
	})
}

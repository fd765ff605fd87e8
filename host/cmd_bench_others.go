//go:build !unix

package main

import "errors"

func runBench(e *env) error {
	return errors.New("bench: signer bench runs on Linux (and other Unix systems) only")
}

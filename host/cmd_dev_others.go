//go:build !unix

package main

import (
	"errors"
)

func runDev(e *env) error {
	return errors.New("dev: signer dev runs on Linux (and other Unix systems) only")
}

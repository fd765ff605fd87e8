//go:build unix && !linux

package main

import "syscall"

// devChildAttr is how signer dev starts its children: each in a process
// group of its own (a Ctrl-C in the terminal reaches signer dev alone,
// which stops them in order). These systems have no parent-death signal:
// signer dev stops its children on SIGINT, SIGTERM and SIGHUP, but if it
// is killed outright (SIGKILL) they are left running (docs/development.md).
func devChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// socketOwner would return the pid of the process listening on the unix
// socket at path; these systems are not asked (0: unknown).
func socketOwner(path string) int { return 0 }

package main

import (
	"net"
	"syscall"
	"time"
)

// devChildAttr is how signer dev starts its children: each in a process
// group of its own (a Ctrl-C in the terminal reaches signer dev alone,
// which stops them in order), and killed by the kernel (SIGKILL) if signer
// dev dies first, however it dies, SIGKILL included, so no orphan keeps
// serving signatures with the keys unsealed.
//
// Linux sends the parent-death signal when the thread that forked the
// child exits. Go ends an OS thread only when a goroutine locked to it
// (runtime.LockOSThread) returns without unlocking, which signer dev
// never does around a fork: here the thread lives as long as the process.
func devChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// socketOwner returns the pid of the process listening on the unix socket
// at path (SO_PEERCRED), or 0 if nothing answers or it cannot tell.
func socketOwner(path string) int {
	conn, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err != nil {
		return 0
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	raw.Control(func(fd uintptr) {
		if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

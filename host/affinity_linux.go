package main

import "github.com/enclave-signer/enclave-signer/internal/bench"

// setAffinity pins a process to cpus, every thread of it, as taskset -a -p
// does. (sched_setaffinity on the pid alone would move only the main
// thread: a Go process has started others by then, and they would stay,
// and spawn more, where they were.)
func setAffinity(pid int, cpus []int) error {
	return bench.PinProcess(pid, cpus)
}

package main

import "golang.org/x/sys/unix"

// setAffinity pins a process to cpus, as taskset -p does.
func setAffinity(pid int, cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return unix.SchedSetaffinity(pid, &set)
}

// Package bench measures the signing path end to end: it runs a closed loop
// of concurrent operations for a bounded time and count, records each
// operation's latency in a fixed-size log-linear histogram, and provides
// the operations `signer bench` drives (a signature over the wire protocol,
// through the host shim's HTTP API, or in process on a key of its own) and
// the CPU placement it runs them under.
//
// # Method
//
// [Run] starts Options.Concurrency workers. Each sends one request, waits
// for its answer, and sends the next (a closed loop: the offered load
// adapts to the server, and the number of requests in flight is exactly
// the concurrency). After Options.Warmup, operations that complete within
// the next Options.Duration are counted and their latencies recorded; the
// throughput is that count over that duration. Errors are counted over
// the whole run, warm-up included.
//
// # CPU placement
//
// A Nitro enclave's vCPUs are its own. To measure the same shape on one
// machine, signerd and the in-process reference run pinned to one set of
// CPUs, and the load generator and host shim to the others. Linux applies
// sched_setaffinity per thread, and a Go process has several threads
// before main runs, so [PinProcess] pins every thread of a process
// (until a scan of /proc/PID/task finds them all pinned), and
// [StartPinned] starts a child process already pinned, from a thread with
// the wanted affinity, so that none of its threads ever runs elsewhere.
package bench

package main

import "sync/atomic"

// authCounters count the sign requests refused, by reason, since signerd
// started (status).
type authCounters struct {
	unauthenticated atomic.Uint64
	forbidden       atomic.Uint64
	rateLimited     atomic.Uint64
	authUnavailable atomic.Uint64
}

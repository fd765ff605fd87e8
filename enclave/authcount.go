package main

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// authCounters count the sign requests refused, by reason, since signerd
// started (status).
type authCounters struct {
	unauthenticated atomic.Uint64
	forbidden       atomic.Uint64
	rateLimited     atomic.Uint64
	authUnavailable atomic.Uint64
}

// count counts a refusal of the given outcome, if it is one of theirs.
func (c *authCounters) count(outcome string) {
	switch outcome {
	case outcomeUnauthenticated:
		c.unauthenticated.Add(1)
	case outcomeForbidden:
		c.forbidden.Add(1)
	case outcomeRateLimited:
		c.rateLimited.Add(1)
	case outcomeAuthUnavailable:
		c.authUnavailable.Add(1)
	}
}

// authStatus is status's auth part.
func (d *daemon) authStatus() *wire.AuthStatus {
	set := d.set.Load()
	c := d.clock.snapshot()
	a := &wire.AuthStatus{
		RequireAuth:     d.cfg.Pins.RequireAuth,
		Policed:         set.Policed(),
		ClockOK:         c.ok,
		ClockSkewMillis: c.skew.Milliseconds(),
		Unauthenticated: d.refusals.unauthenticated.Load(),
		Forbidden:       d.refusals.forbidden.Load(),
		RateLimited:     d.refusals.rateLimited.Load(),
		AuthUnavailable: d.refusals.authUnavailable.Load(),
	}
	if !c.checked.IsZero() {
		a.ClockChecked = c.checked.Unix()
	}
	now := time.Now
	if d.now != nil {
		now = d.now
	}
	a.NonceCacheSize, a.NonceCacheCapacity = d.nonces.stats(now().Unix())
	clients := set.Clients()
	a.Clients = len(clients)
	seen := map[string]bool{}
	for _, cl := range clients {
		if !seen[cl.Audience] {
			seen[cl.Audience] = true
			a.Audiences = append(a.Audiences, cl.Audience)
		}
	}
	slices.Sort(a.Audiences)
	return a
}

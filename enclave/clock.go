package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/nsm"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// authWindow is how far an authenticated request's timestamp may be from
// signerd's clock, and so how long its nonce is remembered; and how far
// signerd's clock may be from the NSM's before authenticated requests are
// refused.
const authWindow = 60 * time.Second

// Clock checks: signerd compares its clock with the NSM's (the timestamp
// of an attestation document) at start and every clockCheckEvery. When no
// check has succeeded for clockStaleAfter, the clock counts as unchecked
// and authenticated requests are refused, as when the clocks disagree.
const (
	clockCheckEvery = time.Minute
	clockStaleAfter = 5 * time.Minute
)

// clockState is the last comparison of signerd's clock with the NSM's. ok
// is read on every authenticated request; the rest only by status.
type clockState struct {
	ok atomic.Bool

	mu       sync.Mutex
	skew     time.Duration // signerd's clock minus the NSM's
	checked  time.Time     // when (signerd's clock, with its monotonic reading)
	lastGood time.Time     // the last successful check (monotonic)
	lastErr  error
}

// clockSnapshot is clockState for status.
type clockSnapshot struct {
	ok      bool
	skew    time.Duration
	checked time.Time
}

func (c *clockState) snapshot() clockSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return clockSnapshot{ok: c.ok.Load(), skew: c.skew, checked: c.checked}
}

// observe records a comparison: the NSM stamped nsm on a document asked
// for at before and received at after (signerd's clock). It returns
// whether the verdict changed (the first comparison always does).
func (c *clockState) observe(before, after, nsm time.Time) (changed, ok bool, skew time.Duration) {
	mid := before.Add(after.Sub(before) / 2)
	skew = mid.Round(0).Sub(nsm) // wall clocks, not the monotonic reading
	ok = skew <= authWindow && skew >= -authWindow
	c.mu.Lock()
	defer c.mu.Unlock()
	first := c.lastGood.IsZero()
	c.skew, c.checked, c.lastGood, c.lastErr = skew, after, after, nil
	return c.ok.Swap(ok) != ok || first, ok, skew
}

// failed records a check that could not be made at now. It returns whether
// the clock has just become unchecked.
func (c *clockState) failed(now time.Time, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err
	if !c.lastGood.IsZero() && now.Sub(c.lastGood) < clockStaleAfter {
		return false
	}
	return c.ok.Swap(false)
}

// checkClock compares signerd's clock with the NSM's once, and logs when
// the verdict changes.
func (d *daemon) checkClock() {
	before := d.now()
	raw, err := nsm.Attest(d.cfg.NSM, nsm.AttestRequest{})
	after := d.now()
	var doc *attestation.Document
	if err == nil {
		doc, err = attestation.Parse(raw)
	}
	if err != nil {
		if d.clock.failed(after, err) {
			d.log.Error("clock check failed for too long: authenticated sign requests are refused (auth_unavailable) until the NSM answers", "err", err, "stale_after", clockStaleAfter.String())
		} else {
			d.log.Warn("clock check failed", "err", err)
		}
		return
	}
	d.clockObserved(before, after, doc.Timestamp)
}

// clockObserved records a comparison and logs a change of verdict.
func (d *daemon) clockObserved(before, after, nsm time.Time) {
	changed, ok, skew := d.clock.observe(before, after, nsm)
	switch {
	case changed && !ok:
		d.log.Error(fmt.Sprintf("signerd's clock and the NSM's disagree by more than %s: authenticated sign requests are refused (auth_unavailable) until they agree", authWindow),
			"skew", skew.String(), "nsm_time", nsm.UTC().Format(time.RFC3339Nano))
	case changed && ok:
		d.log.Info("signerd's clock agrees with the NSM's", "skew", skew.String())
	default:
		d.log.Debug("clock checked", "skew", skew.String(), "ok", ok)
	}
}

// clockLoop checks the clock every interval until ctx ends.
func (d *daemon) clockLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.checkClock()
		}
	}
}

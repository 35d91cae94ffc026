// Package ratelimit limits a device's I/O with token buckets, one for
// bytes and one for operations, as Firecracker's rate limiter does.
//
// A bucket holds at most Burst tokens and gains PerSecond tokens a
// second; it starts full. Every request takes its tokens when the device
// starts it, even when the bucket holds fewer: the bucket then goes into
// debt, and the device starts nothing more until the debt is repaid.
// So a request larger than the bucket still runs (a guest's 4 MiB write
// under a 1 MiB burst is not stuck for ever), the long-run rate is
// exactly PerSecond, and after an idle spell the device may run Burst
// tokens' worth at full speed.
//
// A device that is in debt waits on a timer for exactly the time the
// debt takes to repay (Wait), on the goroutine of the queue it limits:
// the queue stops being served meanwhile, nothing else does, and nothing
// polls, so a guest cannot make the VMM spin by exceeding its limit.
// A device without limits has a nil *Limiter, whose methods cost a nil
// check.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Rate is one token bucket: its refill rate and its size.
type Rate struct {
	// PerSecond is the tokens the bucket gains each second; 0 means no
	// limit (the bucket is not used).
	PerSecond uint64
	// Burst is the bucket's size in tokens: what a device may use at
	// full speed after it was idle. 0 means DefaultBurst's worth of
	// PerSecond (at least one token).
	Burst uint64
}

// RateOver returns the bucket for perSecond tokens a second that holds
// burst's worth of them (at least one token); burst 0 means
// DefaultBurst.
func RateOver(perSecond uint64, burst time.Duration) Rate {
	if perSecond == 0 {
		return Rate{}
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	size := float64(perSecond) * burst.Seconds()
	switch {
	case size < 1:
		return Rate{PerSecond: perSecond, Burst: 1}
	case size >= math.MaxUint64:
		return Rate{PerSecond: perSecond, Burst: math.MaxUint64}
	}
	return Rate{PerSecond: perSecond, Burst: uint64(size)}
}

// DefaultBurst is the time's worth of tokens a bucket holds when its
// Burst is not set.
const DefaultBurst = 100 * time.Millisecond

// size is the bucket's size in tokens.
func (r Rate) size() float64 {
	if r.Burst > 0 {
		return float64(r.Burst)
	}
	return max(1, float64(r.PerSecond)*DefaultBurst.Seconds())
}

// Limits are a device's buckets. A device that moves data counts its
// bytes in Bytes and its requests (disk requests, network frames) in
// Ops.
type Limits struct {
	Bytes Rate
	Ops   Rate
}

// Unlimited reports whether neither bucket limits anything.
func (l Limits) Unlimited() bool { return l.Bytes.PerSecond == 0 && l.Ops.PerSecond == 0 }

// Clock is the time source of a Limiter; tests use a fake one.
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once d has passed, and
	// a function that releases the timer if it has not fired.
	NewTimer(d time.Duration) (<-chan time.Time, func())
}

// systemClock is the real time.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// bucket is one token bucket. tokens is below zero while in debt.
type bucket struct {
	rate   float64 // tokens a second; 0: unused
	size   float64
	tokens float64
}

// refill adds the tokens of elapsed time, up to the bucket's size.
func (b *bucket) refill(elapsed time.Duration) {
	if b.rate == 0 || elapsed <= 0 {
		return
	}
	b.tokens = min(b.size, b.tokens+elapsed.Seconds()*b.rate)
}

// debt returns how long the bucket takes to repay its debt: 0 when it
// has none.
func (b *bucket) debt() time.Duration {
	if b.rate == 0 || b.tokens >= -tolerance {
		return 0
	}
	// Round up, so that a device woken at the deadline finds no debt.
	// A huge debt (a big request on a tiny rate) waits maxWait at a
	// time: converted whole it could overflow into a negative duration,
	// a timer that fires at once, and a queue that spins.
	ns := math.Ceil(-b.tokens / b.rate * float64(time.Second))
	if ns >= float64(maxWait) {
		return maxWait
	}
	return time.Duration(ns)
}

// maxWait is the longest a device waits on its timer before looking at
// its buckets again.
const maxWait = time.Hour

// tolerance is the debt, in tokens, that counts as none: what float
// arithmetic leaves of a debt repaid exactly.
const tolerance = 1e-6

// Limiter is a device's pair of buckets. It is safe for concurrent use:
// the queues of a device share it. A nil *Limiter limits nothing.
type Limiter struct {
	clock Clock

	mu    sync.Mutex
	last  time.Time // when the buckets were last refilled
	bytes bucket
	ops   bucket
}

// New returns a limiter for l, on the system clock; nil when l limits
// nothing.
func New(l Limits) *Limiter { return NewWithClock(l, systemClock{}) }

// NewWithClock is New on the given clock.
func NewWithClock(l Limits, c Clock) *Limiter {
	if l.Unlimited() {
		return nil
	}
	lim := &Limiter{clock: c, last: c.Now()}
	for _, p := range []struct {
		b *bucket
		r Rate
	}{{&lim.bytes, l.Bytes}, {&lim.ops, l.Ops}} {
		if p.r.PerSecond > 0 {
			*p.b = bucket{rate: float64(p.r.PerSecond), size: p.r.size(), tokens: p.r.size()}
		}
	}
	return lim
}

// refill brings both buckets up to now. Precondition: l.mu is held.
func (l *Limiter) refill() {
	now := l.clock.Now()
	elapsed := now.Sub(l.last)
	l.last = now
	l.bytes.refill(elapsed)
	l.ops.refill(elapsed)
}

// Consume takes a request's bytes and ops from the buckets, going into
// debt if they hold fewer. Call it when the request starts, after Wait.
func (l *Limiter) Consume(bytes, ops uint64) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill()
	if l.bytes.rate > 0 {
		l.bytes.tokens -= float64(bytes)
	}
	if l.ops.rate > 0 {
		l.ops.tokens -= float64(ops)
	}
}

// Delay returns how long until neither bucket is in debt; 0 means a
// request may start now.
func (l *Limiter) Delay() time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill()
	return max(l.bytes.debt(), l.ops.debt())
}

// Wait returns true once neither bucket is in debt, at once when they
// are not. Before it first sleeps it calls idle (if not nil): the place
// for a device to interrupt the driver for the requests it completed,
// which would otherwise wait out the delay. It returns false, early,
// when stop is closed (the queue was stopped: a reset or a snapshot).
func (l *Limiter) Wait(stop <-chan struct{}, idle func()) bool {
	if l == nil {
		return true
	}
	for first := true; ; first = false {
		d := l.Delay()
		if d == 0 {
			return true
		}
		if first && idle != nil {
			idle()
		}
		fired, release := l.clock.NewTimer(d)
		select {
		case <-fired:
		case <-stop:
			release()
			return false
		}
	}
}
